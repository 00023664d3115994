/**
 * Legality against an execution provider's kernel table (data generated from onnxruntime's
 * published operator-kernel list; see targets/cuda/README.md). A node is legal when a kernel is
 * registered for its domain and op at the model's opset for that domain, and every input and
 * output whose element type is known has a type that kernel's constraint admits. Everything else
 * would fall back to another provider (the CPU), at the price of device <-> host copies.
 */
import { dtypeName } from '../src/ir/dtype.js';
import type { Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import type { Fallback, LegalityReport } from './target.js';

export interface KernelEntry {
  domain: string;
  op: string;
  since: number;
  until: number | null;
  /** Constraint name -> element type names (float, float16, int64, seq(float)...). */
  types: Record<string, string[]>;
  /** Alternative signatures: [parameter name, constraint name or literal type] per input/output. */
  signatures: Array<{ inputs: Array<[string, string]>; outputs: Array<[string, string]> }>;
}

export interface KernelTable {
  source: { onnxruntime?: string; commit?: string; repository?: string; file?: string };
  provider: string;
  kernels: KernelEntry[];
}

export class KernelIndex {
  private readonly byOp = new Map<string, KernelEntry[]>();
  constructor(readonly table: KernelTable) {
    for (const k of table.kernels) {
      const key = `${k.domain === 'ai.onnx' ? '' : k.domain}::${k.op}`;
      (this.byOp.get(key) ?? this.byOp.set(key, []).get(key)!).push(k);
    }
  }

  /** The kernel registered for `op` at opset `version` of its domain, if any. */
  kernel(domain: string, op: string, version: number): KernelEntry | undefined {
    return this.byOp.get(`${domain === 'ai.onnx' ? '' : domain}::${op}`)?.find((k) => k.since <= version && (k.until === null || version <= k.until));
  }

  /** Why `node` has no kernel (undefined when it has one). `typeOf` may override value types (what-if checks). */
  whyNot(model: Model, node: Node, typeOf: (v: Value) => number | undefined = elemType): string | undefined {
    const version = model.opsetVersion(node.domain) ?? 1;
    const k = this.kernel(node.domain, node.opType, version);
    if (!k) {
      const any = this.byOp.get(`${node.domain === 'ai.onnx' ? '' : node.domain}::${node.opType}`);
      return any ? `no kernel at opset ${version} of ${node.domain || 'ai.onnx'} (kernels for ${any.map((x) => (x.until === null ? `${x.since}+` : `${x.since}-${x.until}`)).join(', ')})` : `no ${this.table.provider} kernel for ${node.qualifiedOp}`;
    }
    let best: string | undefined;
    for (const sig of k.signatures.length ? k.signatures : [{ inputs: [], outputs: [] }]) {
      const problem = checkSignature(k, sig, node, typeOf);
      if (!problem) return undefined;
      best ??= problem;
    }
    return best;
  }

  check(model: Model): LegalityReport {
    const g = model.graph;
    const fallbacks: Fallback[] = [];
    const fallen = new Set<Node>();
    for (const n of g.nodes) {
      const why = this.whyNot(model, n);
      if (why) {
        fallbacks.push({ node: n.name, op: n.opType, domain: n.domain, reason: why });
        fallen.add(n);
      }
    }
    // A value crossing between a fallback node and the rest is copied between device and host.
    let copies = 0;
    for (const n of g.nodes) {
      for (const o of n.outputs) {
        if (!o) continue;
        const crosses = o.uses.some((u) => fallen.has(u.node) !== fallen.has(n));
        if (crosses) copies++;
      }
    }
    for (const v of g.inputs) if (!v.initializer && v.uses.some((u) => fallen.has(u.node))) copies++;
    const src = this.table.source;
    return {
      table: `onnxruntime ${src.onnxruntime ?? '?'} ${this.table.provider} kernels (${src.repository ?? 'onnxruntime'} ${src.file ?? ''}${src.commit ? ` @ ${src.commit.slice(0, 12)}` : ''})`,
      nodes: g.nodes.length,
      fallbacks,
      copies,
    };
  }
}

/** Element type as the kernel list names it (float, double, float16...). */
export const onnxTypeName = (t: number) => ({ float32: 'float', float64: 'double' } as Record<string, string>)[dtypeName(t)] ?? dtypeName(t);

const elemType = (v: Value): number | undefined => (v.type?.kind === 'tensor' ? v.type.elemType : v.initializer?.dtype);

function admits(k: KernelEntry, constraint: string, type: string): boolean {
  if (constraint.startsWith('tensor(')) return constraint === `tensor(${type})`;
  const allowed = k.types[constraint];
  return allowed === undefined || allowed.includes(type);
}

function checkSignature(k: KernelEntry, sig: KernelEntry['signatures'][number], node: Node, typeOf: (v: Value) => number | undefined): string | undefined {
  const check = (values: ReadonlyArray<Value | null>, params: Array<[string, string]>, what: string): string | undefined => {
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!v) continue;
      // Variadic parameters (Concat's inputs) repeat the last one.
      const p = params[Math.min(i, params.length - 1)];
      if (!p) continue;
      const t = typeOf(v);
      if (t === undefined) continue;
      const name = onnxTypeName(t);
      if (!admits(k, p[1], name)) return `${what} '${p[0]}' is ${name}; the kernel (since ${k.since}) takes ${p[1].startsWith('tensor(') ? p[1] : `${p[1]} in ${(k.types[p[1]] ?? []).join(', ')}`}`;
    }
    return undefined;
  };
  return check(node.inputs, sig.inputs, 'input') ?? check(node.outputs, sig.outputs, 'output');
}
