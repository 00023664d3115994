/**
 * Tensor overrides (`--override FILE.safetensors[:replace|add]`): named tensors of a safetensors
 * file (PyTorch state-dict names: BitFit's trained biases, a re-trained classifier head) replace
 * the model's weights, or are added to them as deltas (`:add`).
 *
 * A name is matched to the ONNX graph the way adapter modules are (passes/lora-adapter-merge.ts):
 *  1. an initializer of exactly that name (the torch parameter itself, same layout);
 *  2. `<module>.weight` (2-D): the MatMul/Gemm/Gather weight the exporter attributed to the module,
 *     transposed to the graph's layout where the graph stores it [in, out];
 *  3. `<module>.bias` (1-D): the constant addend of the module's Add (or Gemm's C) of that length.
 * A weight the module shares with other nodes is copied for the module's nodes. Shape and dtype
 * must match; names that match nothing are listed with the nearest names the graph has; any
 * problem refuses the whole file (exit 2, nothing written).
 */
import { PeftcError } from '../src/errors.js';
import { DataType, dtypeName } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import type { LoraModule } from '../src/peft/adapter.js';
import { locate, nearestModules, nodeModulePath } from './lora-adapter-merge.js';
import type { Pass, PassContext, PassResult } from './pass.js';

export type OverrideMode = 'replace' | 'add';

export interface OverrideSource {
  path: string;
  mode: OverrideMode;
  tensors: Map<string, Tensor>;
}

/** Parses `FILE[:replace|:add]`. */
export function parseOverrideArg(arg: string): { path: string; mode: OverrideMode } {
  const m = /^(.*):(replace|add)$/.exec(arg);
  return m ? { path: m[1]!, mode: m[2] as OverrideMode } : { path: arg, mode: 'replace' };
}

interface Match {
  value: Value;
  /** The named value is an Identity of `value` (exporters share equal tensors that way): give the name its own tensor. */
  viaIdentity?: Value;
  /** Graph layout is the file tensor transposed. */
  transpose: boolean;
  /** Nodes to repoint when the value is shared outside them (copy-on-write). */
  nodes: Node[];
  how: string;
}

const sameModule = (candidate: string | undefined, path: string) => candidate !== undefined && (candidate === path || candidate.endsWith(`.${path}`));
const constant = (v: Value | null | undefined): v is Value => !!v && !!v.initializer && !v.isGraphInput;

function find(g: Graph, name: string, t: Tensor): Match | undefined {
  const exact = g.initializers.find((v) => v.name === name && !v.isGraphInput);
  if (exact) return { value: exact, transpose: false, nodes: [], how: `initializer '${name}'` };
  // The TorchScript exporter shares equal parameters: the name is then Identity(shared tensor).
  const named = g.lookup(name);
  const src = named?.producer?.opType === 'Identity' ? named.producer.inputs[0] : undefined;
  if (named && constant(src)) return { value: src, viaIdentity: named, transpose: false, nodes: [], how: `'${name}' (Identity of shared '${src.name}')` };
  const dot = name.lastIndexOf('.');
  const module = name.slice(0, dot);
  const param = name.slice(dot + 1);
  if (param === 'weight' && t.dims.length === 2) {
    const kind: LoraModule['kind'] = g.nodes.some((n) => n.opType === 'Gather' && sameModule(nodeModulePath(n), module)) ? 'embedding' : 'linear';
    const target = locate(g, { path: module, kind } as LoraModule, false);
    if (target) return { value: target.value, transpose: target.layout === 'in_out' && kind === 'linear', nodes: target.nodes, how: target.how };
  }
  if (param === 'bias' && t.dims.length === 1) {
    const hits: Array<{ node: Node; value: Value }> = [];
    for (const n of g.nodes) {
      if (!sameModule(nodeModulePath(n), module)) continue;
      const candidates = n.opType === 'Add' ? n.inputs : n.opType === 'Gemm' ? [n.inputs[2]] : [];
      for (const v of candidates) if (constant(v) && v.initializer!.elementCount === t.elementCount) hits.push({ node: n, value: v });
    }
    if (hits.length && hits.every((h) => h.value === hits[0]!.value)) return { value: hits[0]!.value, transpose: false, nodes: hits.map((h) => h.node), how: `${hits.map((h) => h.node.name).join(', ')} bias '${hits[0]!.value.name}'` };
  }
  return undefined;
}

function transpose2d(t: Tensor): Tensor {
  const [r, c] = t.dims as [number, number];
  const src = t.toTypedArray() as unknown as ArrayLike<number> & { constructor: new (n: number) => { [i: number]: number } };
  const out = new src.constructor(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = src[i * c + j]!;
  return Tensor.fromTypedArray(t.name, t.dtype, [c, r], out as never);
}

function addInto(base: Tensor, delta: Tensor, name: string): Tensor {
  if (base.dtype !== DataType.FLOAT && base.dtype !== DataType.DOUBLE) throw new PeftcError(`override '${name}': ':add' needs a float32/float64 weight, '${base.name}' is ${dtypeName(base.dtype)}`);
  const a = base.toTypedArray<Float32Array>();
  const d = delta.toTypedArray<Float32Array>();
  const out = new (a.constructor as Float32ArrayConstructor)(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + d[i]!;
  return Tensor.fromTypedArray(base.name, base.dtype, base.dims, out);
}

export function tensorOverrides(sources: readonly OverrideSource[]): Pass & { applied: Array<{ file: string; tensor: string; how: string; mode: OverrideMode }> } {
  const applied: Array<{ file: string; tensor: string; how: string; mode: OverrideMode }> = [];
  return {
    name: 'tensor-override',
    description: 'replace or add named tensors from safetensors files (--override)',
    applied,
    run(model: Model, ctx: PassContext): PassResult {
      const g = model.graph;
      // Plan everything first: a file with any problem changes nothing.
      const plans: Array<{ src: OverrideSource; name: string; t: Tensor; match: Match }> = [];
      const problems: string[] = [];
      for (const src of sources) {
        for (const [name, t] of src.tensors) {
          const match = find(g, name, t);
          if (!match) {
            problems.push(`  ${name}: nothing in the graph; nearest: ${nearestNames(g, name).join(', ') || '(none)'}`);
            continue;
          }
          const w = match.value.initializer!;
          const want = match.transpose ? [...t.dims].reverse() : t.dims;
          if (w.dims.join() !== want.join()) problems.push(`  ${name}: shape [${t.dims.join(', ')}]${match.transpose ? ' (transposed to the graph\'s [in, out])' : ''} does not fit ${match.how} [${w.dims.join(', ')}]`);
          else if (w.dtype !== t.dtype) problems.push(`  ${name}: ${dtypeName(t.dtype)}, but ${match.how} is ${dtypeName(w.dtype)}`);
          else plans.push({ src, name, t, match });
        }
      }
      if (problems.length) throw new PeftcError(`${sources.map((s) => s.path).join(', ')}: ${problems.length} override(s) cannot be applied:\n${problems.join('\n')}`);
      for (const { src, name, t, match } of plans) {
        const old = match.value.initializer!;
        const given = match.transpose ? transpose2d(t) : t;
        const next = src.mode === 'add' ? addInto(old, given, name) : Tensor.fromBytes(old.name, old.dtype, old.dims, given.bytes());
        const shared = match.nodes.length > 0 && match.value.uses.some((u) => !match.nodes.includes(u.node));
        if (match.viaIdentity) {
          // The name gets a tensor of its own; the Identity that shared the other one goes.
          const identity = match.viaIdentity.producer!;
          const own = g.addInitializer(next, g.uniqueName(`${name}.override`));
          g.replaceAllUses(match.viaIdentity, own);
          if (!match.viaIdentity.isGraphOutput) {
            g.removeNode(identity);
            g.renameValue(own, name);
          }
        } else if (shared) {
          const copy = g.addInitializer(next, g.uniqueName(`${match.value.name}.override`));
          for (const node of match.nodes) node.inputs.forEach((v, i) => v === match.value && node.setInput(i, copy));
        } else {
          match.value.initializer = next;
        }
        applied.push({ file: src.path, tensor: name, how: match.how, mode: src.mode });
        ctx.log(`tensor-override: ${name} -> ${match.how}${match.transpose ? ' (transposed)' : ''}${src.mode === 'add' ? ' (added)' : ''}${shared ? ' (copied: shared with other nodes)' : ''}`);
      }
      return { changed: plans.length > 0, details: { overridden: plans.length } };
    },
  };
}

function nearestNames(g: Graph, name: string): string[] {
  const dot = name.lastIndexOf('.');
  const module = nearestModules(g, name.slice(0, dot)).map((m) => `${m}${name.slice(dot)}`);
  const inits = g.initializers.map((v) => v.name).filter((n) => !n.startsWith('onnx::'));
  const score = (c: string) => {
    let common = 0;
    while (common < c.length && common < name.length && c[common] === name[common]) common++;
    return -common;
  };
  return [...new Set([...inits.sort((a, b) => score(a) - score(b)).slice(0, 2), ...module])].slice(0, 3);
}
