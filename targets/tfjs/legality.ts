/**
 * Legality for the tfjs target: which nodes the lowering cannot turn into TF ops that
 * tfjs-converter 4.22 executes. TF.js has no fallback runtime, so a graph with any such node is
 * refused as a whole (nothing written), naming every node and why:
 *
 *  - an op outside the table in ops.ts, or in another domain (com.microsoft fusions...);
 *  - a value of an element type TF.js graph models cannot hold (float16, float64, int8, uint8...:
 *    TF.js tensors are float32, int32 or bool);
 *  - a value without a static shape: this lowering writes shapes, slices and layouts as
 *    constants, so graph inputs with symbolic dimensions need `--shape NAME=1x128` first;
 *  - the op's own condition (a non-constant Conv filter, grouped convolution, MaxPool's indices
 *    output, a Cast to float16...), from the rule's `check`.
 */
import { PeftcError } from '../../src/errors.js';
import { dtypeName } from '../../src/ir/dtype.js';
import type { Node, Value } from '../../src/ir/graph.js';
import type { Model } from '../../src/ir/model.js';
import { shapeOf } from '../../src/ir/types.js';
import type { Fallback, LegalityReport } from '../target.js';
import { elemTypeOf, staticShape, tfDtypeOf } from './lower.js';
import { TFJS_OPS } from './ops.js';

export const TFJS_TABLE = 'TF.js 4.22 graph-model ops (tfjs-converter op mapper; lowering table targets/tfjs/ops.ts)';

const present = (v: Value | null): v is Value => !!v && v.name !== '';

/** Why `node` cannot be lowered, or undefined. `symbolicInputs`: skip shape reasons that follow from them. */
export function whyNotTfjs(model: Model, node: Node, symbolicInputs = false): string | undefined {
  if (node.domain !== '' && node.domain !== 'ai.onnx') return `no TF.js lowering for ${node.qualifiedOp} (another domain: compile without that target's fusions)`;
  const rule = TFJS_OPS[node.opType];
  if (!rule) return `no TF.js lowering for ${node.opType}`;
  if (node.subgraphs().length) return `${node.opType} with a subgraph has no TF.js lowering`;
  for (const [what, values] of [['input', node.inputs], ['output', node.outputs]] as const) {
    for (const v of values) {
      if (!present(v)) continue;
      const t = elemTypeOf(v);
      if (t === undefined) return `${what} '${v.name}' has no known element type`;
      if (!tfDtypeOf(t)) return `${what} '${v.name}' is ${dtypeName(t)}: TF.js graph models hold float32, int32 (int64 narrowed) and bool only`;
      if (!staticShape(v) && !symbolicInputs) {
        const s = shapeOf(v.type);
        return `${what} '${v.name}' has ${s ? `dimensions [${s.map((d) => d ?? '?').join(', ')}]` : 'no shape'}: the TF.js lowering needs static shapes`;
      }
    }
  }
  return rule.check?.(node, model);
}

/** The legality report: graph inputs with symbolic shapes first (one line each), then nodes. */
export function checkTfjs(model: Model): LegalityReport {
  const g = model.graph;
  const fallbacks: Fallback[] = [];
  for (const v of g.inputs) {
    if (v.initializer) continue;
    const t = elemTypeOf(v);
    if (t !== undefined && !tfDtypeOf(t)) fallbacks.push({ node: `(graph input) ${v.name}`, op: 'Placeholder', domain: '', reason: `${dtypeName(t)}: TF.js graph models take float32, int32/int64 and bool inputs` });
    if (!staticShape(v)) {
      const s = shapeOf(v.type);
      const example = s ? s.map((d, i) => (typeof d === 'number' ? d : i === 0 ? 1 : 128)).join('x') : '1x128';
      fallbacks.push({
        node: `(graph input) ${v.name}`,
        op: 'Placeholder',
        domain: '',
        reason: `dimensions [${(s ?? []).map((d) => d ?? '?').join(', ')}] are not static: compile with --shape ${v.name}=${example} (or the sizes you serve)`,
      });
    }
  }
  const symbolic = fallbacks.length > 0;
  for (const n of g.nodes) {
    const why = whyNotTfjs(model, n, symbolic);
    if (why) fallbacks.push({ node: n.name, op: n.opType, domain: n.domain, reason: why });
  }
  return { table: TFJS_TABLE, nodes: g.nodes.length, fallbacks, copies: 0 };
}

/** Throws the refusal (exit 2, nothing written) when the report lists anything. */
export function refuseIllegal(report: LegalityReport, source: string): void {
  if (!report.fallbacks.length) return;
  const shown = report.fallbacks.slice(0, 30).map((f) => `  ${f.node || '(unnamed)'} (${f.domain ? `${f.domain}::` : ''}${f.op}): ${f.reason}`);
  const more = report.fallbacks.length > 30 ? [`  ... and ${report.fallbacks.length - 30} more`] : [];
  throw new PeftcError(`${source}: --target tfjs: ${report.fallbacks.length} node(s) cannot be lowered to TF.js ops (TF.js has no fallback, so nothing was written):\n${[...shown, ...more].join('\n')}`);
}
