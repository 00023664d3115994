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
const lastDim = (v: Value | null | undefined) => constantInts(v)?.at(-1);

/**
 * The base layer: MatMul(x, W) or Gemm(x, W[, bias]), optionally + bias (any value), optionally
 * wrapped in the Reshapes exporters put around a 2-D Gemm (flatten leading dims, then restore them;
 * both keep the feature dim last, so the product is unchanged). Every intermediate value must
 * feed only the next step, since merging changes what the base computes for every reader.
 */
function matchBase(v: Value, consumer: Node): Base | undefined {
  let out = v;
  let reader = consumer;
  const outer = producer(out, 'Reshape');
  if (outer && onlyUse(out, reader)) {
    reader = outer;
    out = outer.inputs[0]!;
  }
  const add = producer(out, 'Add');
  if (add && onlyUse(out, reader)) {
    for (const [p, q] of [[0, 1], [1, 0]] as const) {
      const cand = producer(add.inputs[p], 'MatMul') ?? producer(add.inputs[p], 'Gemm');
      if (cand && add.inputs[q] !== add.inputs[p]) {
        reader = add;
        out = add.inputs[p]!;
        break;
      }
    }
  }
  if (!onlyUse(out, reader)) return undefined;
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
  scale: number;
  nodes: Node[];
}

function matchBranch(v: Value): Branch | undefined {
  let scale = 1;
  let inner = v;
  const nodes: Node[] = [];
  const mul = producer(v, 'Mul');
  if (mul) {
    const s0 = scalarValue(mul.inputs[0]);
    const s1 = scalarValue(mul.inputs[1]);
    if (s1 !== undefined) [scale, inner] = [s1, mul.inputs[0]!];
    else if (s0 !== undefined) [scale, inner] = [s0, mul.inputs[1]!];
    else return undefined;
    nodes.push(mul);
  }
  const mmB = producer(inner, 'MatMul');
  const bt = constInit(mmB?.inputs[1]);
  const mmA = producer(mmB?.inputs[0], 'MatMul');
  const at = constInit(mmA?.inputs[1]);
  if (!mmB || !bt || !mmA || !at) return undefined;
  const [inF, r] = at.initializer!.dims;
  const [r2] = bt.initializer!.dims;
  if (at.initializer!.dims.length !== 2 || bt.initializer!.dims.length !== 2 || r !== r2 || inF === undefined) return undefined;
  // The intermediate values must belong to the branch alone.
  if (mmA.outputs[0]!.uses.length !== 1 || (mul && mmB.outputs[0]!.uses.length !== 1)) return undefined;
  nodes.push(mmB, mmA);
  return { x: throughNoop(mmA.inputs[0]!), at, bt, scale, nodes };
}

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j]!;
  return out;
}

function mergeGraph(g: Graph, ctx: PassContext): number {
  let merged = 0;
  for (const add of [...g.nodes]) {
    if (add.opType !== 'Add' || !isDefault(add) || add.inputs.length !== 2 || !g.nodes.includes(add)) continue;
    for (const [p, q] of [[0, 1], [1, 0]] as const) {
      const baseOut = add.inputs[p]!;
      const branchOut = add.inputs[q]!;
      const base = baseOut && matchBase(baseOut, add);
      const branch = branchOut && matchBranch(branchOut);
      if (!base || !branch || base.x !== branch.x || branchOut.uses.length !== 1) continue;
      const w0 = base.weight.initializer!;
      const [inF, r] = branch.at.initializer!.dims as [number, number];
      const outF = branch.bt.initializer!.dims[1]!;
      const want = base.layout === 'in_out' ? [inF, outF] : [outF, inF];
      if (w0.dims[0] !== want[0] || w0.dims[1] !== want[1]) {
        throw new PeftcError(`LoRA branch into node '${add.name}': A·B is [${inF}, ${outF}] but base weight '${base.weight.name}' is [${w0.dims.join(', ')}]`);
      }
      const at = branch.at.initializer!;
      const bt = branch.bt.initializer!;
      const scale = branch.scale;
      const layout = base.layout;
      const compute = (): Uint8Array => {
        const w = toFloat32(w0);
        // At [in, r] is A^T, Bt [r, out] is B^T: recover A [r, in] and B [out, r].
        const a = transpose(toFloat32(at), inF, r);
        const b = transpose(toFloat32(bt), r, outF);
        addDeltas(w, layout, inF, outF, [{ a, b, rank: r, factor: scale }]);
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
        g.removeNodes(branch.nodes);
      } else {
        g.replaceAllUses(y, baseOut);
        // Remove the Add and the branch now: a dead branch left for dead-code elimination would be
        // matched (and merged) again by the next round of a fixpoint pipeline.
        g.removeNodes([add, ...branch.nodes]);
      }
      merged++;
      ctx.log(`lora-branch-merge: '${base.weight.name}' += ${scale} * (${branch.at.name} · ${branch.bt.name}) (rank ${r})`);
      break;
    }
  }
  return merged;
}

export function mergeLoraBranches(): Pass {
  return {
    name: 'lora-branch-merge',
    description: 'fold unmerged LoRA branches (base + scale * B(A(x))) into the base weights',
    run(model: Model, ctx: PassContext): PassResult {
      const merged = mergeGraph(model.graph, ctx);
      return { changed: merged > 0, details: { merged } };
    },
  };
}
