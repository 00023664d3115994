/**
 * LoRA/DoRA merge from PEFT adapter folders (`peftc compile base.onnx --lora adapter/[:w]`).
 *
 * For each module an adapter names (e.g. model.layers.0.self_attn.q_proj), find the weight it
 * adapts in the ONNX graph and fold W' = W + sum_adapters(weight x scale x B·A) into it, in the
 * layout the graph stores W in (DoRA then rescales each output feature to its magnitude):
 *  1. an initializer named `<module>.weight` is the torch parameter itself: [out, in] for Linear,
 *     [in, out] with fan_in_fan_out (GPT-2 Conv1D), [num_embeddings, dim] for Embedding;
 *  2. otherwise the MatMul/Gemm (Gather for embeddings) that the exporter attributed to the module
 *     (TorchScript: node name /model/layers.0/self_attn/q_proj/MatMul; dynamo: the node's
 *     pkg.torch.onnx.name_scopes metadata) and its constant weight input, whose layout follows
 *     from the op: MatMul's right operand is [in, out], Gemm's by transB.
 * Module paths match as dotted suffixes, so wrapper modules around the exported model are fine.
 * A weight shared with nodes outside the module (for case 2) is copied for the module's nodes so
 * the others keep the original. Modules that match nothing are reported with the nearest names
 * the graph has, and nothing is written.
 */
import { PeftcError } from '../src/errors.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor, type DeferredJob } from '../src/ir/tensor.js';
import type { Adapter, LoraModule } from '../src/peft/adapter.js';
import { mergeDeferredJob, mergeJob, runMergeJob, type MergeInputs } from '../src/peft/merge-job.js';
import type { WeightLayout } from '../src/peft/merge-math.js';
import type { Pass, PassContext, PassResult } from './pass.js';

interface Target {
  value: Value;
  layout: WeightLayout;
  /** Nodes to repoint when the weight must be copied (case 2 with a shared weight). */
  nodes: Node[];
  how: string;
}

function constantInit(v: Value | null | undefined): Value | undefined {
  return v && v.initializer && !v.isGraphInput ? v : undefined;
}

/**
 * The module path a node belongs to, as the exporter recorded it: the dynamo exporter's
 * `pkg.torch.onnx.name_scopes` metadata (last module scope), or the TorchScript exporter's
 * node name (/model/layers.0/self_attn/q_proj/MatMul -> model.layers.0.self_attn.q_proj).
 */
export function nodeModulePath(node: Node): string | undefined {
  const scopes = node.metadataProps.find(([k]) => k === 'pkg.torch.onnx.name_scopes')?.[1];
  if (scopes) {
    const list = [...scopes.matchAll(/'([^']*)'/g)].map((m) => m[1]!);
    if (list.length >= 2) return list[list.length - 2];
  }
  if (node.name.startsWith('/')) return node.name.slice(1, node.name.lastIndexOf('/')).replaceAll('/', '.');
  return undefined;
}

/** `candidate` names module `path`, possibly under wrapper prefixes (model.model.layers.0... for model.layers.0...). */
const sameModule = (candidate: string | undefined, path: string) => candidate !== undefined && (candidate === path || candidate.endsWith(`.${path}`));

export function locate(g: Graph, m: LoraModule, fanInFanOut: boolean): Target | undefined {
  // 1. The torch parameter itself, by name.
  const named = g.initializers.filter((v) => !v.isGraphInput && sameModule(v.name.endsWith('.weight') ? v.name.slice(0, -'.weight'.length) : undefined, m.path));
  if (named.length === 1) {
    const layout: WeightLayout = m.kind === 'embedding' || fanInFanOut ? 'in_out' : 'out_in';
    return { value: named[0]!, layout, nodes: [], how: `initializer '${named[0]!.name}'` };
  }
  // 2. The op the exporter attributed to the module, and its constant weight input.
  const hits: Array<{ node: Node; value: Value; layout: WeightLayout }> = [];
  for (const node of g.nodes) {
    if (!sameModule(nodeModulePath(node), m.path)) continue;
    if (m.kind === 'embedding') {
      const w = node.opType === 'Gather' ? constantInit(node.inputs[0]) : undefined;
      if (w) hits.push({ node, value: w, layout: 'in_out' });
    } else if (node.opType === 'MatMul') {
      const w = constantInit(node.inputs[1]);
      if (w) hits.push({ node, value: w, layout: 'in_out' });
    } else if (node.opType === 'Gemm') {
      const w = constantInit(node.inputs[1]);
      if (w && node.attrInt('transA', 0) === 0) hits.push({ node, value: w, layout: node.attrInt('transB', 0) ? 'out_in' : 'in_out' });
    }
  }
  if (hits.length === 0) return undefined;
  const first = hits[0]!;
  if (hits.some((h) => h.value !== first.value || h.layout !== first.layout)) {
    throw new PeftcError(`module '${m.path}' matches several different weights: ${hits.map((h) => `${h.node.name} (${h.value.name})`).join(', ')}`);
  }
  return { value: first.value, layout: first.layout, nodes: hits.map((h) => h.node), how: `${hits.map((h) => h.node.name).join(', ')} weight '${first.value.name}'` };
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

/** The module paths in the graph closest to `path` (edit distance), for suggestions. */
export function nearestModules(g: Graph, path: string): string[] {
  const candidates = new Set<string>();
  for (const v of g.initializers) if (v.name.endsWith('.weight')) candidates.add(v.name.slice(0, -'.weight'.length));
  for (const n of g.nodes) {
    if (!['MatMul', 'Gemm', 'Gather'].includes(n.opType)) continue;
    const p = nodeModulePath(n);
    if (p) candidates.add(p);
  }
  return [...candidates]
    .map((c) => [c, editDistance(c, path)] as const)
    .sort((x, y) => x[1] - y[1])
    .slice(0, 3)
    .map(([c]) => c);
}

export function mergeAdapters(adapters: readonly Adapter[]): Pass {
  return {
    name: 'lora-adapter-merge',
    description: 'fold PEFT LoRA/DoRA adapter deltas into the base weights they adapt',
    run(model: Model, ctx: PassContext): PassResult {
      const g = model.graph;
      const byPath = new Map<string, Array<{ adapter: Adapter; module: LoraModule }>>();
      for (const adapter of adapters) {
        for (const module of adapter.modules) {
          const list = byPath.get(module.path) ?? [];
          list.push({ adapter, module });
          byPath.set(module.path, list);
        }
      }
      const unmatched: string[] = [];
      const plans: Array<{ path: string; target: Target; entries: Array<{ adapter: Adapter; module: LoraModule }> }> = [];
      for (const [path, entries] of byPath) {
        const fanInFanOut = entries[0]!.adapter.config.fanInFanOut;
        const target = locate(g, entries[0]!.module, fanInFanOut);
        if (!target) {
          unmatched.push(`  ${path}: nothing in the graph; nearest: ${nearestModules(g, path).join(', ') || '(none)'}`);
          continue;
        }
        plans.push({ path, target, entries });
      }
      if (unmatched.length) {
        throw new PeftcError(`${unmatched.length} adapter module(s) match no weight in the model:\n${unmatched.join('\n')}`);
      }
      let merged = 0;
      let dora = 0;
      for (const { path, target, entries } of plans) {
        const w0 = target.value.initializer!;
        const m0 = entries[0]!.module;
        const inF = m0.a.dims[1]!;
        const outF = m0.b.dims[0]!;
        const want = target.layout === 'out_in' ? [outF, inF] : [inF, outF];
        if (w0.dims.length !== 2 || w0.dims[0] !== want[0] || w0.dims[1] !== want[1]) {
          throw new PeftcError(
            `module '${path}': adapter A[${m0.a.dims.join(',')}]·B[${m0.b.dims.join(',')}] needs a ${target.layout === 'out_in' ? '[out, in]' : '[in, out]'} weight of [${want.join(', ')}], but ${target.how} is [${w0.dims.join(', ')}]`,
          );
        }
        for (const { adapter, module } of entries) {
          if (module.a.dims[1] !== inF || module.b.dims[0] !== outF) {
            throw new PeftcError(`module '${path}': adapters ${entries[0]!.adapter.dir} and ${adapter.dir} disagree on its shape`);
          }
        }
        const withDora = entries.filter((e) => e.module.magnitude);
        if (withDora.length && entries.length > 1) {
          throw new PeftcError(`module '${path}': combining a DoRA adapter with other adapters is not defined; merge DoRA adapters alone`);
        }
        // The merged weight is computed when it is written (or read by a later pass), one tensor at
        // a time, so merging every layer of a large model never holds all merged weights at once.
        // The writer may run the same job on a worker thread ahead of writing (same bytes).
        const inputs: MergeInputs = {
          base: w0,
          layout: target.layout,
          inF,
          outF,
          deltas: entries.map(({ adapter, module }) => ({ a: module.a, b: module.b, rank: module.rank, factor: adapter.weight * module.scale })),
          ...(withDora.length ? { magnitude: withDora[0]!.module.magnitude! } : {}),
        };
        const compute = (): Uint8Array => runMergeJob(mergeJob(inputs));
        const job = (): DeferredJob => mergeDeferredJob(inputs);
        if (withDora.length) dora++;
        const tensor = Tensor.deferred(w0.name, w0.dtype, w0.dims, compute, w0.prefersExternal, job);
        const sharedOutside = target.nodes.length > 0 && target.value.uses.some((u) => !target.nodes.includes(u.node));
        if (sharedOutside) {
          const copy = g.addInitializer(tensor, g.uniqueName(`${target.value.name}.merged`));
          for (const node of target.nodes) node.inputs.forEach((v, i) => v === target.value && node.setInput(i, copy));
        } else {
          target.value.initializer = tensor.renamed(target.value.name);
        }
        merged++;
        ctx.log(`lora-adapter-merge: ${path} -> ${target.how} (${target.layout}, ${entries.length} adapter${entries.length > 1 ? 's' : ''})`);
      }
      return { changed: merged > 0, details: { merged, dora, adapters: adapters.length } };
    },
  };
}
