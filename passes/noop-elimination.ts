/**
 * Identity and no-op elimination.
 *
 * A node whose output always equals one of its inputs is removed and its users read the input
 * directly. No-ops recognized:
 *  - Identity;
 *  - Dropout at inference (no training_mode input, or a constant false one) whose mask output is unused;
 *  - Cast / CastLike to the type the input already has (input dtype known);
 *  - Reshape to the shape the input already has (input shape fully static, shape input constant);
 *  - Transpose with the identity permutation;
 *  - Expand to a shape the input already has (both static, no broadcasting growth).
 * When the no-op's output is a graph output, the graph's interface (output names) must not
 * change: the input value takes over the output's name if it is an ordinary intermediate value,
 * otherwise the node stays.
 */
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { shapeOf } from '../src/ir/types.js';
import type { Pass, PassResult } from './pass.js';
import { constantInts } from './constants.js';

const elemType = (v: Value | null): number | undefined => (v?.type?.kind === 'tensor' ? v.type.elemType : undefined);

function staticShape(v: Value | null): number[] | undefined {
  const s = shapeOf(v?.type ?? undefined);
  return s && s.every((d) => typeof d === 'number') ? (s as number[]) : undefined;
}

const sameList = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** The input index whose value the node passes through unchanged, or -1. */
function passThroughInput(node: Node): number {
  if (node.domain !== '' && node.domain !== 'ai.onnx') return -1;
  const x = node.inputs[0] ?? null;
  if (!x) return -1;
  const y = node.outputs[0] ?? null;
  switch (node.opType) {
    case 'Identity':
      return 0;
    case 'Dropout': {
      if (node.outputs[1] && (node.outputs[1].uses.length || node.outputs[1].isGraphOutput)) return -1;
      const training = node.inputs[2] ?? null;
      if (training === null) return 0;
      const t = constantInts(training);
      return t && t.length === 1 && t[0] === 0 ? 0 : -1;
    }
    case 'Cast': {
      const to = node.attrInt('to');
      return to !== undefined && elemType(x) === to ? 0 : -1;
    }
    case 'CastLike': {
      const t = elemType(x);
      return t !== undefined && t === elemType(node.inputs[1] ?? null) ? 0 : -1;
    }
    case 'Reshape': {
      const inShape = staticShape(x);
      const target = node.inputs[1] ? constantInts(node.inputs[1]) : undefined;
      if (!inShape || !target) return -1;
      // 0 copies the input dim (unless allowzero), -1 is inferred: equal when every entry matches
      // the input dim or is 0 (copy) at that position, with at most one -1.
      const allowZero = node.attrInt('allowzero', 0) === 1;
      if (target.length !== inShape.length) return -1;
      let minusOnes = 0;
      const ok = target.every((d, i) => {
        if (d === -1) return ++minusOnes === 1;
        if (d === 0 && !allowZero) return true;
        return d === inShape[i];
      });
      return ok ? 0 : -1;
    }
    case 'Transpose': {
      const perm = node.attrInts('perm');
      if (!perm) return -1; // default perm reverses the axes
      return perm.every((p, i) => p === i) ? 0 : -1;
    }
    case 'Expand': {
      const inShape = staticShape(x);
      const outShape = staticShape(y);
      return inShape && outShape && sameList(inShape, outShape) ? 0 : -1;
    }
    default:
      return -1;
  }
}

function eliminate(g: Graph): number {
  let removed = 0;
  for (const node of [...g.nodes]) {
    for (const sub of node.subgraphs()) removed += eliminate(sub);
    const k = passThroughInput(node);
    if (k < 0) continue;
    const input = node.inputs[k]!;
    const output = node.outputs[0];
    if (!output) continue;
    if (output.isGraphOutput) {
      // Keep the output's name: let the input value take it over, if the input is an ordinary
      // value of this graph (not an interface or constant value, not used elsewhere by name).
      const canRename =
        input.graph === g && input.producer !== null && !input.isGraphOutput && !input.isGraphInput && input.uses.length === 1;
      if (!canRename) continue;
      const name = output.name;
      const type = output.type ?? input.type;
      g.replaceAllUses(output, input);
      g.removeNode(node, true);
      if (g.localValue(name)) g.deleteValue(output);
      g.renameValue(input, name);
      input.type = type;
      removed++;
      continue;
    }
    if (!input.type && output.type) input.type = output.type;
    g.replaceAllUses(output, input);
    g.removeNode(node);
    removed++;
  }
  return removed;
}

export const noopElimination: Pass = {
  name: 'noop-elimination',
  description: 'remove Identity, inference Dropout and Cast/Reshape/Transpose/Expand that change nothing',
  run(model: Model): PassResult {
    let removed = eliminate(model.graph);
    for (const fn of model.functions) removed += eliminate(fn.body);
    return { changed: removed > 0, details: { removed } };
  },
};
