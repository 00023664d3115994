/**
 * Which nodes and tensors static INT8 quantization touches, decided from the graph alone (no data),
 * so that onnxruntime's QDQ fusions form their integer kernels (onnxruntime
 * core/optimizer/qdq_transformer/selectors_actions: a node unit is DQ on every input -> op -> Q on
 * its output, the op's output read by nothing but that Q, and not a graph output):
 *
 *  - compute units (Conv, MatMul, Gemm; ConvTranspose when asked): float activation inputs get
 *    QuantizeLinear -> DequantizeLinear; constant weights become int8 (per output channel: Conv
 *    axis 0, MatMul [K, N] axis 1, Gemm axis 1 or 0 by transB, ConvTranspose axis 1) behind a
 *    DequantizeLinear; Conv/Gemm biases become int32 with scale = input scale x weight scale. A
 *    MatMul of two activations (attention) quantizes both. MatMul's and Gemm's output is quantized
 *    only when a quantized node reads it (otherwise onnxruntime runs MatMulIntegerToFloat / QGemm
 *    with a float output: no requantization error); Conv's always (QLinearConv needs the Q).
 *  - chain ops (Add, Mul, Concat, AveragePool, GlobalAveragePool, Sigmoid, LeakyRelu, Softmax,
 *    Where): quantized when every float input is already available in int8 (a quantized node's
 *    output, a graph input, or a constant, which is quantized per tensor in the activation type)
 *    and a quantized node reads the output; onnxruntime runs them as QLinearAdd/Mul/Concat/... .
 *  - pass-through ops (Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Gather, Slice, Expand,
 *    Tile, MaxPool, Resize): when their data input is available in int8 and a quantized node reads
 *    their output, the output is quantized with the input's very parameters, so onnxruntime drops
 *    the DQ/Q around them and they move int8 data.
 *  - Relu / Clip right after a quantized node (its only reader) are absorbed: the node's quantized
 *    output is the Relu's output, whose range starts at 0 (zero point = qmin), which onnxruntime
 *    recognises as making the Relu redundant and folds into QLinearConv etc.
 *
 * Excluded nodes (by the caller's predicate: --exclude, sensitivity, --max-error) stay float, and
 * the plan is recomputed without them (what is available in int8 changes with them).
 */
import { DataType } from '../ir/dtype.js';
import type { Graph, Node, Value } from '../ir/graph.js';
import { shapeOf } from '../ir/types.js';

export const COMPUTE_OPS = ['Conv', 'MatMul', 'Gemm'] as const;
export const CHAIN_OPS = ['Add', 'Mul', 'Concat', 'AveragePool', 'GlobalAveragePool', 'Sigmoid', 'LeakyRelu', 'Softmax', 'Where'] as const;
export const PASS_THROUGH_OPS = ['Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten', 'Gather', 'Slice', 'Expand', 'Tile', 'MaxPool', 'Resize'] as const;
const ABSORBED = new Set(['Relu', 'Clip']);

export interface WeightRef {
  index: number;
  value: string;
  /** Channel axis for per-channel scales, or undefined for one scale. */
  axis: number | undefined;
}

export interface Int8Unit {
  node: Node;
  kind: 'compute' | 'chain';
  /** Float activation inputs (input index, value). */
  inputs: Array<{ index: number; value: string }>;
  /** Constant float inputs of chain ops, quantized per tensor in the activation type. */
  constants: Array<{ index: number; value: string }>;
  weight?: WeightRef;
  /** Conv/Gemm bias (constant, one value per output channel). */
  bias?: { index: number; value: string };
  /** The value carrying the node's result (the absorbed Relu/Clip's output when there is one). */
  result: string;
  /** Whether `result` is quantized in this plan. */
  quantizedOutput: boolean;
  absorbed?: Node;
}

export interface PassThrough {
  node: Node;
  input: string;
  output: string;
}

export interface Int8Plan {
  units: Int8Unit[];
  passThrough: PassThrough[];
  /** Every quantized activation -> the value whose parameters it uses (itself, or a pass-through chain's source). */
  tensors: Map<string, string>;
  /** Candidate nodes left float, and why. */
  skipped: Array<{ node: string; op: string; reason: string }>;
}

export interface PlanOptions {
  /** Compute ops to quantize (default Conv, MatMul, Gemm). */
  computeOps?: readonly string[];
  /** Chain ops (default CHAIN_OPS); [] quantizes compute ops only. */
  chainOps?: readonly string[];
  /** Nodes kept float. */
  exclude?: (node: Node) => boolean;
  /** Per-channel weight scales (default true). */
  perChannel?: boolean;
  /**
   * 'available' (default): chain and pass-through ops are quantized only where int8 flows into
   * them and a quantized node reads them. 'all': every chain and pass-through op is quantized,
   * inputs and output, whatever surrounds it (what onnxruntime's quantize_static does with its
   * default op list; kept to show what that costs).
   */
  chainMode?: 'available' | 'all';
  /**
   * Absorb a Relu/Clip after a quantized node into its output range (default true). Only a range
   * starting at the type's minimum (asymmetric parameters) makes the Relu redundant for
   * onnxruntime, so symmetric int8 activations turn it off: the node's own output is quantized and
   * the Relu runs after the DequantizeLinear.
   */
  absorbActivations?: boolean;
}

const isDefault = (n: Node) => n.domain === '' || n.domain === 'ai.onnx';

function isFloat(v: Value | null | undefined): boolean {
  return v?.type?.kind === 'tensor' && v.type.elemType === DataType.FLOAT;
}

function constantFloat(v: Value | null | undefined): boolean {
  return !!v && v.isConstant && v.initializer!.dtype === DataType.FLOAT;
}

/** A computed (non-constant) float32 value. */
function activation(v: Value | null | undefined): v is Value {
  return !!v && !v.isConstant && isFloat(v);
}

/** Why a compute node cannot be a unit, or its weight/bias when it can. */
function computeShape(n: Node, perChannel: boolean): { reason: string } | { inputs: number[]; weight?: WeightRef; bias?: { index: number; value: string } } {
  const [a, b, c] = n.inputs;
  if (!activation(a)) return { reason: 'its first input is not a computed float32 tensor' };
  const out = n.outputs[0];
  if (!isFloat(out)) return { reason: 'its output is not float32' };
  const ch = (axis: number) => (perChannel ? axis : undefined);
  switch (n.opType) {
    case 'Conv':
    case 'ConvTranspose': {
      if (!constantFloat(b) || b!.initializer!.dims.length < 3) return { reason: 'its weight is not a constant float32 tensor' };
      const group = n.attrInt('group', 1);
      const axis = n.opType === 'Conv' ? ch(0) : group === 1 ? ch(1) : undefined;
      const outChannels = n.opType === 'Conv' ? b!.initializer!.dims[0]! : b!.initializer!.dims[1]! * group;
      const r = { inputs: [0], weight: { index: 1, value: b!.name, axis } };
      if (!c) return r;
      if (!constantFloat(c) || c.initializer!.elementCount !== outChannels) return { reason: 'its bias is not a constant float32 vector' };
      return { ...r, bias: { index: 2, value: c.name } };
    }
    case 'MatMul': {
      if (activation(b)) return { inputs: [0, 1] };
      if (!constantFloat(b)) return { reason: 'its second input is neither a computed nor a constant float32 tensor' };
      const rank = b!.initializer!.dims.length;
      if (rank < 2) return { reason: 'its weight is a vector' };
      return { inputs: [0], weight: { index: 1, value: b!.name, axis: rank === 2 ? ch(1) : undefined } };
    }
    case 'Gemm': {
      if (n.attrInt('transA', 0) !== 0) return { reason: 'transA = 1' };
      if (!constantFloat(b) || b!.initializer!.dims.length !== 2) return { reason: 'its weight is not a constant float32 matrix' };
      const transB = n.attrInt('transB', 0) !== 0;
      const nOut = b!.initializer!.dims[transB ? 0 : 1]!;
      const r = { inputs: [0], weight: { index: 1, value: b!.name, axis: ch(transB ? 0 : 1) } };
      if (!c) return r;
      if (!constantFloat(c) || c.initializer!.elementCount !== nOut || c.initializer!.dims.some((d, i, all) => i < all.length - 1 && d !== 1)) {
        return { reason: 'its C input is not a constant [N] bias' };
      }
      return { ...r, bias: { index: 2, value: c.name } };
    }
  }
  return { reason: `${n.opType} is not a compute op` };
}

/** Float inputs a chain op quantizes (activations and constants), or why it cannot. */
function chainInputs(n: Node): { reason: string } | { acts: number[]; consts: number[] } {
  const acts: number[] = [];
  const consts: number[] = [];
  const out = n.outputs[0];
  if (!isFloat(out) || n.outputs.filter(Boolean).length !== 1) return { reason: 'its output is not one float32 tensor' };
  const dataInputs = n.opType === 'Where' ? [1, 2] : n.opType === 'Add' || n.opType === 'Mul' ? [0, 1] : n.opType === 'Concat' ? n.inputs.map((_, i) => i) : [0];
  for (const i of dataInputs) {
    const v = n.inputs[i];
    if (!v) return { reason: `input ${i} is missing` };
    if (constantFloat(v)) consts.push(i);
    else if (activation(v)) acts.push(i);
    else return { reason: `input ${i} is not float32` };
  }
  if (n.opType === 'Where' && n.inputs[0]?.type?.kind === 'tensor' && n.inputs[0].type.elemType !== DataType.BOOL) return { reason: 'its condition is not bool' };
  if (!acts.length) return { reason: 'all its inputs are constants' };
  return { acts, consts };
}

/** The Relu/Clip that alone reads `v`, if it can be absorbed into v's producer. */
function absorber(g: Graph, v: Value): Node | undefined {
  if (v.uses.length !== 1 || v.isGraphOutput) return undefined;
  const r = v.uses[0]!.node;
  if (!isDefault(r) || !ABSORBED.has(r.opType) || v.uses[0]!.index !== 0) return undefined;
  if (!isFloat(r.outputs[0])) return undefined;
  if (r.opType === 'Clip' && r.inputs.slice(1).some((x) => x && !x.isConstant)) return undefined;
  void g;
  return r;
}

export function planInt8(g: Graph, options: PlanOptions = {}): Int8Plan {
  const computeOps = new Set(options.computeOps ?? COMPUTE_OPS);
  const chainOps = new Set(options.chainOps ?? CHAIN_OPS);
  const passOps = new Set<string>(PASS_THROUGH_OPS);
  const excluded = options.exclude ?? (() => false);
  const perChannel = options.perChannel ?? true;
  const skipped: Int8Plan['skipped'] = [];

  // Forward: what is available in int8, with every chain op that could be quantized assumed to be.
  const avail = new Set<string>();
  for (const v of g.inputs) if (isFloat(v) && !v.initializer) avail.add(v.name);
  type Cand = { node: Node; kind: 'compute' | 'chain'; acts: number[]; consts: number[]; weight?: WeightRef; bias?: { index: number; value: string }; result: string; absorbed?: Node };
  const cands = new Map<Node, Cand>();
  const pass = new Map<Node, PassThrough>();
  const absorbedBy = new Set<Node>();
  for (const n of g.nodes) {
    if (!isDefault(n) || absorbedBy.has(n)) continue;
    const op = n.opType;
    if (computeOps.has(op)) {
      if (excluded(n)) {
        skipped.push({ node: n.name, op, reason: 'excluded' });
        continue;
      }
      const s = computeShape(n, perChannel);
      if ('reason' in s) {
        skipped.push({ node: n.name, op, reason: s.reason });
        continue;
      }
      const out = n.outputs[0]!;
      const abs = options.absorbActivations === false ? undefined : absorber(g, out);
      if (abs) absorbedBy.add(abs);
      const result = abs ? abs.outputs[0]!.name : out.name;
      cands.set(n, { node: n, kind: 'compute', acts: s.inputs, consts: [], ...(s.weight ? { weight: s.weight } : {}), ...(s.bias ? { bias: s.bias } : {}), result, ...(abs ? { absorbed: abs } : {}) });
      avail.add(result);
    } else if (chainOps.has(op)) {
      if (excluded(n)) continue;
      const s = chainInputs(n);
      if ('reason' in s) continue;
      if (options.chainMode !== 'all' && !s.acts.every((i) => avail.has(n.inputs[i]!.name))) continue;
      const out = n.outputs[0]!;
      const abs = options.absorbActivations === false ? undefined : absorber(g, out);
      const result = abs ? abs.outputs[0]!.name : out.name;
      if (abs) absorbedBy.add(abs);
      cands.set(n, { node: n, kind: 'chain', acts: s.acts, consts: s.consts, result, ...(abs ? { absorbed: abs } : {}) });
      avail.add(result);
    } else if (passOps.has(op)) {
      if (excluded(n)) continue;
      if (op === 'MaxPool' && (n.outputs.filter(Boolean).length > 1)) continue;
      const x = n.inputs[0];
      const y = n.outputs[0];
      if (!x || !y || !isFloat(y) || n.outputs.filter(Boolean).length !== 1) continue;
      if (!avail.has(x.name) && (options.chainMode !== 'all' || !activation(x))) continue;
      pass.set(n, { node: n, input: x.name, output: y.name });
      avail.add(y.name);
    }
  }

  // Backward: what a quantized node reads. Compute units read their inputs unconditionally.
  const wanted = new Set<string>();
  const all = options.chainMode === 'all';
  for (const c of cands.values()) if (c.kind === 'compute' || all) for (const i of c.acts) wanted.add(c.node.inputs[i]!.name);
  if (all) for (const c of cands.values()) wanted.add(c.result);
  if (all) for (const p of pass.values()) wanted.add(p.output);
  const keptChains = new Set<Node>();
  const keptPass = new Set<Node>();
  for (let k = g.nodes.length - 1; k >= 0; k--) {
    const n = g.nodes[k]!;
    const c = cands.get(n);
    if (c?.kind === 'chain' && wanted.has(c.result)) {
      keptChains.add(n);
      for (const i of c.acts) wanted.add(n.inputs[i]!.name);
    }
    const p = pass.get(n);
    if (p && wanted.has(p.output)) {
      keptPass.add(n);
      wanted.add(p.input);
    }
  }
  // Chain candidates that nothing quantized reads stay float; the remaining chains' inputs are
  // still available (a chain's input chain is read by it, so it was kept too).
  const units: Int8Unit[] = [];
  const graphOutputs = new Set(g.outputs.map((v) => v.name));
  for (const c of cands.values()) {
    if (c.kind === 'chain' && !keptChains.has(c.node)) continue;
    const alwaysOut = c.node.opType === 'Conv' || c.node.opType === 'ConvTranspose' || c.kind === 'chain';
    const quantizedOutput = !graphOutputs.has(c.result) && (alwaysOut || wanted.has(c.result));
    units.push({
      node: c.node,
      kind: c.kind,
      inputs: c.acts.map((index) => ({ index, value: c.node.inputs[index]!.name })),
      constants: c.consts.map((index) => ({ index, value: c.node.inputs[index]!.name })),
      ...(c.weight ? { weight: c.weight } : {}),
      ...(c.bias ? { bias: c.bias } : {}),
      result: c.result,
      quantizedOutput,
      ...(c.absorbed ? { absorbed: c.absorbed } : {}),
    });
  }
  const passThrough = [...keptPass].map((n) => pass.get(n)!);
  const tensors = new Map<string, string>();
  const passByOutput = new Map(passThrough.map((p) => [p.output, p]));
  const source = (name: string): string => {
    const p = passByOutput.get(name);
    return p ? source(p.input) : name;
  };
  for (const name of wanted) tensors.set(name, source(name));
  for (const u of units) if (u.quantizedOutput) tensors.set(u.result, source(u.result));
  for (const p of passThrough) tensors.set(p.output, source(p.output));
  return { units, passThrough, tensors, skipped };
}

/**
 * Every activation any plan over this graph (with any subset of nodes excluded) may quantize, so
 * one calibration run serves them all: the float inputs and results of every candidate node, and
 * every pass-through output.
 */
export function calibrationValues(g: Graph, options: PlanOptions = {}): string[] {
  const full = planInt8(g, { ...options, exclude: options.exclude ?? (() => false) });
  const names = new Set<string>(full.tensors.keys());
  for (const u of full.units) {
    for (const i of u.inputs) names.add(i.value);
    if (!g.outputs.some((v) => v.name === u.result)) names.add(u.result);
  }
  for (const p of full.passThrough) names.add(p.output);
  return [...names];
}

/** Shape of a value as known (for messages). */
export function describeShape(v: Value): string {
  const s = shapeOf(v.type);
  return s ? `[${s.map((d) => d ?? '?').join(', ')}]` : '[?]';
}

/** A node name not yet used in the graph, derived from `base`. */
export function freshNodeName(g: Graph, base: string): string {
  const taken = new Set(g.nodes.map((n) => n.name));
  if (!taken.has(base)) return base;
  for (let i = 1; ; i++) if (!taken.has(`${base}_${i}`)) return `${base}_${i}`;
}
