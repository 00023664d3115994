/**
 * LoRA merge of unmerged branches in an exported graph (input form 1).
 *
 * A PEFT LoRA layer exported to ONNX computes base(x) + scale * B(A(drop(x))). The pass finds
 *
 *     y = Add(base, branch)            (either operand order)
 *     base   = MatMul(x, W) | Add(MatMul(x, W), bias) | Gemm(x, W[, bias])      W constant
 *              (optionally inside the Reshapes exporters put around a 2-D Gemm)
 *     branch = Mul(MatMul(MatMul(x', At), Bt), s) | Mul(s, ...) | MatMul(MatMul(x', At), Bt)
 *     x'     = x | Identity(x) | Dropout(x) (inference)                         At, Bt, s constant
 *
 * with At [in, r] and Bt [r, out] (the exporter stores A and B transposed for MatMul), folds
 * W' = W + s * At·Bt in W's own layout (MatMul: [in, out]; Gemm: by transB), and points y's users
 * at the base output; the Add and the branch nodes are removed.
 *
 * DoRA's unmerged export computes m / ||W + sBA|| in the graph from constants; once constant
 * folding has turned that into vectors, the layer reads y = base + (K1 * base + K2 * s * B(A(x)))
 * and is merged exactly as W' = W·diag(1 + K1) + (At·Bt)·diag(K2 s). (In a fixpoint pipeline the
 * first round folds, the second merges.)
 * A weight shared with other nodes is copied first. Matching is structural, so it does not depend
 * on the exporter's node names (TorchScript's /.../lora_A/default/MatMul or dynamo's).
 */
import { PeftcError } from '../src/errors.js';
import { DataType } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { addDeltas, fromFloat32, toFloat32, type WeightLayout } from '../src/peft/merge-math.js';
import { constantInts, constantTensor } from './constants.js';
import type { Pass, PassContext, PassResult } from './pass.js';

const isDefault = (n: Node) => n.domain === '' || n.domain === 'ai.onnx';
const producer = (v: Value | null | undefined, op: string): Node | undefined =>
  v && v.producer && v.producer.opType === op && isDefault(v.producer) ? v.producer : undefined;

/** A constant initializer value (not a graph input), or undefined. */
function constInit(v: Value | null | undefined): Value | undefined {
  return v && v.initializer && !v.isGraphInput ? v : undefined;
}

function scalarValue(v: Value | null | undefined): number | undefined {
  const t = constantTensor(v);
  if (!t || t.elementCount !== 1) return undefined;
  if (t.dtype === DataType.FLOAT || t.dtype === DataType.FLOAT16 || t.dtype === DataType.BFLOAT16 || t.dtype === DataType.DOUBLE) return toFloat32(t)[0];
  return undefined;
}

/** The value a branch input passes through unchanged: x, Identity(x), or inference Dropout(x). */
function throughNoop(v: Value): Value {
  const id = producer(v, 'Identity');
  if (id) return id.inputs[0]!;
  const drop = producer(v, 'Dropout');
  if (drop && !drop.inputs[2] && !(drop.outputs[1] && drop.outputs[1].uses.length)) return drop.inputs[0]!;
  return v;
}

interface Base {
  x: Value;
  weight: Value;
  layout: WeightLayout;
  /** The node that reads the weight as this layer's weight. */
  node: Node;
}

const onlyUse = (v: Value | null | undefined, node: Node) => !!v && v.uses.length === 1 && v.uses[0]!.node === node && !v.isGraphOutput;
/** Every reader of `v` is one of `nodes` (and `v` is not a graph output). */
const usesOnly = (v: Value | null | undefined, nodes: readonly Node[]) => !!v && !v.isGraphOutput && v.uses.length === nodes.length && v.uses.every((u) => nodes.includes(u.node));
const lastDim = (v: Value | null | undefined) => constantInts(v)?.at(-1);

/**
 * The base layer: MatMul(x, W) or Gemm(x, W[, bias]), optionally + bias (any value), optionally
 * wrapped in the Reshapes exporters put around a 2-D Gemm (flatten leading dims, then restore them;
 * both keep the feature dim last, so the product is unchanged). Every intermediate value must
 * feed only the next step, since merging changes what the base computes for every reader.
 */
export function matchBase(v: Value, consumers: readonly Node[]): Base | undefined {
  let out = v;
  let reader = consumers[0]!;
  // The base output may be read by several nodes of the same layer (DoRA reads it twice); below
  // that, every value must feed only the next step.
  const first = (x: Value, r: Node) => (x === v ? usesOnly(x, consumers) : onlyUse(x, r));
  const outer = producer(out, 'Reshape');
  if (outer && first(out, reader)) {
    reader = outer;
    out = outer.inputs[0]!;
  }
  const add = producer(out, 'Add');
  if (add && first(out, reader)) {
    for (const [p, q] of [[0, 1], [1, 0]] as const) {
      const cand = producer(add.inputs[p], 'MatMul') ?? producer(add.inputs[p], 'Gemm');
      if (cand && add.inputs[q] !== add.inputs[p]) {
        reader = add;
        out = add.inputs[p]!;
        break;
      }
    }
  }
  if (!first(out, reader)) return undefined;
  const mm = producer(out, 'MatMul');
  const gemm = mm ? undefined : producer(out, 'Gemm');
  const node = mm ?? gemm;
  if (!node) return undefined;
  if (gemm && (gemm.attrInt('transA', 0) !== 0 || gemm.attrFloat('alpha', 1) !== 1)) return undefined;
  const w = constInit(node.inputs[1]);
  if (!w || w.initializer!.dims.length !== 2) return undefined;
  const layout: WeightLayout = gemm && gemm.attrInt('transB', 0) ? 'out_in' : 'in_out';
  const [d0, d1] = w.initializer!.dims as [number, number];
  const [inF, outF] = layout === 'in_out' ? [d0, d1] : [d1, d0];
  let x = node.inputs[0]!;
  const inner = producer(x, 'Reshape');
  if (outer) {
    // The reshapes must only regroup leading dims around the [*, in] x [in, out] product.
    if (!inner || !onlyUse(x, node) || lastDim(inner.inputs[1]) !== inF || lastDim(outer.inputs[1]) !== outF) return undefined;
    x = inner.inputs[0]!;
  }
  return { x, weight: w, layout, node };
}

interface Branch {
  x: Value;
  at: Value; // [in, r]
  bt: Value; // [r, out]
  /** Per-output-feature factor on B·A (LoRA: the scale everywhere; DoRA: magnitude/norm x scale). */
  factor: Float32Array | number;
  nodes: Node[];
}

/** A constant that scales the last axis: a scalar, or a tensor whose only non-1 dim is the last. */
function featureConstant(v: Value | null | undefined): Float32Array | number | undefined {
  const t = constantTensor(v);
  if (!t || !(t.dtype === DataType.FLOAT || t.dtype === DataType.FLOAT16 || t.dtype === DataType.BFLOAT16 || t.dtype === DataType.DOUBLE)) return undefined;
  if (t.elementCount === 1) return toFloat32(t)[0]!;
  if (t.dims.slice(0, -1).some((d) => d !== 1)) return undefined;
  return toFloat32(t);
}

function multiply(a: Float32Array | number, b: Float32Array | number): Float32Array | number | undefined {
  if (typeof a === 'number' && typeof b === 'number') return a * b;
  if (typeof a === 'number') return (b as Float32Array).map((x) => x * a);
  if (typeof b === 'number') return a.map((x) => x * b);
  return a.length === b.length ? a.map((x, i) => x * b[i]!) : undefined;
}

/** Peels Mul-by-constant nodes off `v`: v = factor * inner. Values between the Muls must be single-use. */
export function peelConstantMuls(v: Value): { inner: Value; factor: Float32Array | number; nodes: Node[] } | undefined {
  let inner = v;
  let factor: Float32Array | number = 1;
  const nodes: Node[] = [];
  for (let mul = producer(inner, 'Mul'); mul; mul = producer(inner, 'Mul')) {
    if (nodes.length && !onlyUse(inner, nodes.at(-1)!)) return undefined;
    const c0 = featureConstant(mul.inputs[0]);
    const c1 = featureConstant(mul.inputs[1]);
    const c = c1 ?? c0;
    if (c === undefined) break;
    const next = multiply(factor, c);
    if (next === undefined) return undefined;
    factor = next;
    inner = c1 !== undefined ? mul.inputs[0]! : mul.inputs[1]!;
    nodes.push(mul);
  }
  // The innermost value's readers are the caller's business (DoRA's base output has two).
  return { inner, factor, nodes };
}

export function matchBranch(v: Value): Branch | undefined {
  const peeled = peelConstantMuls(v);
  if (!peeled) return undefined;
  const { inner, factor } = peeled;
  const nodes = [...peeled.nodes];
  const mmB = producer(inner, 'MatMul');
  const bt = constInit(mmB?.inputs[1]);
  const mmA = producer(mmB?.inputs[0], 'MatMul');
  const at = constInit(mmA?.inputs[1]);
  if (!mmB || !bt || !mmA || !at) return undefined;
  const [inF, r] = at.initializer!.dims;
  const [r2, outF] = bt.initializer!.dims;
  if (at.initializer!.dims.length !== 2 || bt.initializer!.dims.length !== 2 || r !== r2 || inF === undefined) return undefined;
  if (typeof factor !== 'number' && factor.length !== outF) return undefined;
  // The intermediate values must belong to the branch alone.
  if (mmA.outputs[0]!.uses.length !== 1 || (nodes.length && mmB.outputs[0]!.uses.length !== 1)) return undefined;
  nodes.push(mmB, mmA);
  return { x: throughNoop(mmA.inputs[0]!), at, bt, factor, nodes };
}

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j]!;
  return out;
}

interface Match {
  base: Base;
  baseOut: Value;
  branch: Branch;
  /** DoRA: the base output is also scaled per output feature by (1 + baseFactor). */
  baseFactor: Float32Array | number;
  /** Nodes to remove besides the final Add (the branch, DoRA's scaling of the base). */
  nodes: Node[];
  dora: boolean;
}

/**
 * LoRA:  y = base + branch.
 * DoRA (after constant folding of its weight-norm subgraph):
 *        y = base + (K1 * base + K2 * s * B(A(x)))   with K1 = m/||W + sBA|| - 1, K2 = m/||W + sBA||
 * which is x·[W·diag(1 + K1) + (A^T B^T)·diag(K2 s)]: merged exactly with the constants as found.
 */
export function matchAt(add: Node, p: 0 | 1): Match | undefined {
  const q = p === 0 ? 1 : 0;
  const baseOut = add.inputs[p]!;
  const other = add.inputs[q]!;
  if (!baseOut || !other || other.uses.length !== 1) return undefined;
  const lora = matchBranch(other);
  if (lora) {
    const base = matchBase(baseOut, [add]);
    if (base && base.x === lora.x) return { base, baseOut, branch: lora, baseFactor: 0, nodes: lora.nodes, dora: false };
  }
  const inner = producer(other, 'Add');
  if (!inner) return undefined;
  for (const [u, v] of [[0, 1], [1, 0]] as const) {
    const scaled = inner.inputs[u] ? peelConstantMuls(inner.inputs[u]!) : undefined;
    const branchOut = inner.inputs[v];
    if (!scaled || scaled.nodes.length === 0 || scaled.inner !== baseOut || !branchOut || branchOut.uses.length !== 1) continue;
    if (!onlyUse(inner.inputs[u], inner)) continue;
    const branch = matchBranch(branchOut);
    if (!branch) continue;
    const base = matchBase(baseOut, [add, scaled.nodes.at(-1)!]);
    if (!base || base.x !== branch.x) continue;
    return { base, baseOut, branch, baseFactor: scaled.factor, nodes: [inner, ...scaled.nodes, ...branch.nodes], dora: true };
  }
  return undefined;
}

const factorAt = (f: Float32Array | number, o: number) => (typeof f === 'number' ? f : f[o]!);

function mergeGraph(g: Graph, ctx: PassContext): { merged: number; dora: number } {
  let merged = 0;
  let dora = 0;
  for (const add of [...g.nodes]) {
    if (add.opType !== 'Add' || !isDefault(add) || add.inputs.length !== 2 || !g.nodes.includes(add)) continue;
    const match = matchAt(add, 0) ?? matchAt(add, 1);
    if (!match) continue;
    const { base, baseOut, branch } = match;
    const w0 = base.weight.initializer!;
    const [inF, r] = branch.at.initializer!.dims as [number, number];
    const outF = branch.bt.initializer!.dims[1]!;
    const want = base.layout === 'in_out' ? [inF, outF] : [outF, inF];
    if (w0.dims[0] !== want[0] || w0.dims[1] !== want[1]) {
      throw new PeftcError(`LoRA branch into node '${add.name}': A·B is [${inF}, ${outF}] but base weight '${base.weight.name}' is [${w0.dims.join(', ')}]`);
    }
    if (typeof match.baseFactor !== 'number' && match.baseFactor.length !== outF) continue;
    const at = branch.at.initializer!;
    const bt = branch.bt.initializer!;
    const { factor } = branch;
    const baseFactor = match.baseFactor;
    const layout = base.layout;
    const compute = (): Uint8Array => {
      const w = toFloat32(w0);
      if (baseFactor !== 0) {
        // W·diag(1 + K1): scale each output feature of the base weight.
        for (let o = 0; o < outF; o++) {
          const f = 1 + factorAt(baseFactor, o);
          if (layout === 'in_out') for (let i = 0; i < inF; i++) w[i * outF + o] = Math.fround(w[i * outF + o]! * f);
          else for (let i = 0; i < inF; i++) w[o * inF + i] = Math.fround(w[o * inF + i]! * f);
        }
      }
      // At [in, r] is A^T, Bt [r, out] is B^T: recover A [r, in] and B [out, r], with the
      // per-feature factor folded into B's rows.
      const a = transpose(toFloat32(at), inF, r);
      const b = transpose(toFloat32(bt), r, outF);
      for (let o = 0; o < outF; o++) for (let k = 0; k < r; k++) b[o * r + k] = b[o * r + k]! * factorAt(factor, o);
      addDeltas(w, layout, inF, outF, [{ a, b, rank: r, factor: 1 }]);
      return fromFloat32(w0.name, w0.dtype, w0.dims, w).bytes();
    };
    const tensor = Tensor.deferred(w0.name, w0.dtype, w0.dims, compute, w0.prefersExternal);
    if (base.weight.uses.length > 1) {
      const copy = g.addInitializer(tensor, g.uniqueName(`${base.weight.name}.merged`));
      base.node.inputs.forEach((v, i) => v === base.weight && base.node.setInput(i, copy));
    } else {
      base.weight.initializer = tensor.renamed(base.weight.name);
    }
    const y = add.outputs[0]!;
    if (y.isGraphOutput) {
      // Keep the interface name: the Add becomes Identity(base), which no-op elimination can
      // later fold by renaming the base output.
      add.setInput(0, null);
      add.setInput(1, null);
      add.inputs.length = 0;
      add.opType = 'Identity';
      add.attributes = [];
      add.setInput(0, baseOut);
      g.removeNodes(match.nodes);
    } else {
      g.replaceAllUses(y, baseOut);
      // Remove the Add and the branch now: a dead branch left for dead-code elimination would be
      // matched (and merged) again by the next round of a fixpoint pipeline.
      g.removeNodes([add, ...match.nodes]);
    }
    merged++;
    if (match.dora) dora++;
    const scaleText = typeof factor === 'number' ? String(factor) : 'per-feature factors';
    ctx.log(`lora-branch-merge: '${base.weight.name}' += ${scaleText} * (${branch.at.name} · ${branch.bt.name}) (rank ${r}${match.dora ? ', DoRA' : ''})`);
  }
  return { merged, dora };
}

export function mergeLoraBranches(): Pass {
  return {
    name: 'lora-branch-merge',
    description: 'fold unmerged LoRA/DoRA branches (base + scale * B(A(x))) into the base weights',
    run(model: Model, ctx: PassContext): PassResult {
      const { merged, dora } = mergeGraph(model.graph, ctx);
      return { changed: merged > 0, details: { merged, dora } };
    },
  };
}
