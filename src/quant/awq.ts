/**
 * AWQ, activation-aware weight quantization (Lin, Tang, Tang, Yang, Dang, Gan, Han 2023,
 * "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration",
 * arXiv:2306.00978), on the calibration Hessians that GPTQ uses.
 *
 * A layer Y = X W (X: [rows, K] inputs, W: [K, N]) computes the same with X diag(1/s) and
 * diag(s) W for any positive per-input-channel s. Quantizing diag(s) W instead of W moves
 * precision towards the channels with large s; AWQ takes s = m^alpha, m the per-channel magnitude
 * of the calibration activations: their root mean square sqrt(diag(H) / rows) by default (no
 * extra capture; on models/lm it did better than the paper's mean |x|, which callers can pass),
 * normalized by sqrt(max(s) min(s)), and searches alpha on a grid
 * (0, 1/grid, ..., (grid-1)/grid; alpha = 0 is plain quantization, so the search never loses to
 * it on the calibration data).
 *
 * The search scores each alpha exactly, with no second pass over the data: the layer's output
 * error for the scaled quantization E = W - diag(1/s) Q(diag(s) W) is
 * ||X E||_F^2 = tr(E^T H E), H = X^T X (src/quant/hessian.ts). Layers that read one input
 * (q/k/v, gate/up) share one s and the loss is the sum of their errors. The paper scores the
 * output of the whole block (attention, MLP) instead; the per-layer sum is what the captured H
 * gives for any graph. Q is the quantizer the weights will get (rtn, or the mse clip search,
 * which stands in for AWQ's separate clipping search); row sampling (`searchRows`) bounds the
 * cost for large layers: the loss is a sum over rows, each row quantized on its own.
 *
 * The scale has to go somewhere: 1/s is folded into the op that produces X when one can absorb
 * it exactly (planned before anything changes, see `planFold`):
 *  - Mul or Div by a constant broadcast along the last axis (RMSNorm / LayerNorm weights in
 *    exported form), Add/Sub of two foldable operands (a constant bias is scaled too), Mul of two
 *    activations through either one (SwiGLU: silu(gate) * up folds into up);
 *  - the scale and bias of LayerNormalization, SimplifiedLayerNormalization (RMSNorm) and
 *    onnxruntime's SkipLayerNormalization / SkipSimplifiedLayerNormalization (the forms the fusion
 *    passes leave before quantization);
 *  - a MatMul/Gemm with a constant weight (its output columns and bias), or one already quantized:
 *    MatMulNBits' per-block scales of those columns (exact: the codes do not change), or the
 *    scales of a DequantizeLinear weight.
 * Every value on the way must be read only by the next op on it (Shape/Size reads aside);
 * otherwise a Mul(X, 1/s) is inserted in front of the layers, which then read its output.
 * After the fold the layers' Hessian is H' = diag(1/s) H diag(1/s): the data their scaled weights
 * now meet.
 */
import { PeftcError } from '../errors.js';
import { DataType, float16BitsToFloat32, float32ToFloat16Bits } from '../ir/dtype.js';
import type { Graph, Node, Value } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { shapeOf, tensorType } from '../ir/types.js';
import { dequantizeRows, quantizeRows, type QuantConfig } from './blockwise.js';
import { outputError } from './hessian.js';

export interface AwqOptions {
  /** Grid points for alpha in [0, 1): alpha = i / grid (the paper's 20). */
  grid: number;
  /**
   * Rows (output features) per weight scored in the search at most, evenly spaced; default: 1024,
   * fewer for wide inputs (each scored row costs K^2 per grid point: at most 2^32 / K^2 rows, at
   * least 64).
   */
  searchRows: number;
  /** Smallest m^alpha before normalization (the reference implementation's 1e-4). */
  minScale: number;
}

export const DEFAULT_AWQ: AwqOptions = { grid: 20, searchRows: 1024, minScale: 1e-4 };

/** The default rows scored per weight for inputs of width k. */
export function defaultSearchRows(k: number): number {
  return Math.max(64, Math.min(DEFAULT_AWQ.searchRows, Math.floor(2 ** 32 / (k * k))));
}

/** One weight of a group, in the quantizer's view: `rows` output features of `k` values. */
export interface AwqWeight {
  values: Float32Array;
  rows: number;
}

export interface AwqSearchResult {
  alpha: number;
  /** The chosen s (length K). */
  scales: Float64Array;
  /** Output error (sum over the group's scored rows) at the chosen alpha and at alpha = 0. */
  loss: number;
  plainLoss: number;
  /** Loss per grid point. */
  losses: number[];
}

/** s = max(m^alpha, minScale) / sqrt(max(s) min(s)); channels with m = 0 get the smallest scale. */
export function awqScaleVector(magnitude: ArrayLike<number>, alpha: number, minScale = DEFAULT_AWQ.minScale): Float64Array {
  const k = magnitude.length;
  const s = new Float64Array(k);
  let max = 0;
  let min = Infinity;
  for (let i = 0; i < k; i++) {
    const m = magnitude[i]!;
    const v = Math.max(alpha === 0 ? 1 : m > 0 ? Math.pow(m, alpha) : 0, minScale);
    s[i] = v;
    if (v > max) max = v;
    if (v < min) min = v;
  }
  const norm = Math.sqrt(max * min);
  for (let i = 0; i < k; i++) s[i] = s[i]! / norm;
  return s;
}

/** Per-channel root mean square of the inputs from H (up to a common factor, which s ignores). */
export function hessianMagnitude(h: Float64Array, k: number): Float64Array {
  return Float64Array.from({ length: k }, (_, i) => Math.sqrt(Math.max(0, h[i * k + i]!)));
}

/** H' = diag(inv) H diag(inv): the Hessian of X diag(inv). */
export function scaleHessian(h: Float64Array, k: number, inv: ArrayLike<number>, out = new Float64Array(k * k)): Float64Array {
  for (let i = 0; i < k; i++) {
    const a = inv[i]!;
    for (let j = 0; j < k; j++) out[i * k + j] = h[i * k + j]! * a * inv[j]!;
  }
  return out;
}

/** W - diag(1/s) Q(diag(s) W) for one weight's rows: the dequantized weight the layer will effectively use. */
export function awqDequantized(values: Float32Array, rows: number, k: number, scales: ArrayLike<number>, config: QuantConfig): Float32Array {
  const scaled = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) scaled[r * k + c] = values[r * k + c]! * scales[c]!;
  const deq = dequantizeRows(quantizeRows(scaled, rows, k, config));
  for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) deq[r * k + c] = deq[r * k + c]! / scales[c]!;
  return deq;
}

/** Evenly spaced rows of a weight, at most `max` of them (all when it has no more). */
export function sampleRows(w: AwqWeight, k: number, max: number): AwqWeight {
  if (w.rows <= max) return w;
  const out = new Float32Array(max * k);
  for (let i = 0; i < max; i++) {
    const r = Math.floor((i * w.rows) / max);
    out.set(w.values.subarray(r * k, (r + 1) * k), i * k);
  }
  return { values: out, rows: max };
}

/**
 * Searches alpha for a group of weights that read one input with Hessian `h` ([k, k]) and
 * per-channel magnitude `magnitude`: the alpha whose s gives the least summed output error.
 */
export function awqSearch(
  weights: readonly AwqWeight[],
  k: number,
  h: Float64Array,
  magnitude: ArrayLike<number>,
  config: QuantConfig,
  options: Partial<AwqOptions> = {},
): AwqSearchResult {
  const o = { ...DEFAULT_AWQ, searchRows: defaultSearchRows(k), ...options };
  if (h.length !== k * k) throw new RangeError(`Hessian holds ${h.length} values, expected ${k} x ${k}`);
  if (magnitude.length !== k) throw new RangeError(`magnitude holds ${magnitude.length} values, expected ${k}`);
  const scored = weights.map((w) => sampleRows(w, k, o.searchRows));
  const losses: number[] = [];
  let best = { alpha: 0, scales: awqScaleVector(magnitude, 0, o.minScale), loss: Infinity };
  for (let i = 0; i < o.grid; i++) {
    const alpha = i / o.grid;
    const s = awqScaleVector(magnitude, alpha, o.minScale);
    let loss = 0;
    for (const w of scored) loss += outputError(w.values, awqDequantized(w.values, w.rows, k, s, config), w.rows, k, h, false).sse;
    losses.push(loss);
    if (loss < best.loss) best = { alpha, scales: s, loss };
  }
  return { ...best, plainLoss: losses[0]!, losses };
}

// ---------------------------------------------------------------------------------------------
// The graph side: scaling the weights and folding 1/s into the producer of their input.

/** A weight of an AWQ group as the weight-quant pass sees it. */
export interface AwqGroupWeight {
  weight: Value;
  /** The quantizer's view: rows = output features, cols = K. */
  rows: number;
  cols: number;
  /** Stored [K, N] (MatMul, Gemm transB=0): rows of the quantizer are columns of the tensor. */
  transpose: boolean;
  /** Gemm alpha folded into the quantized weights (1 otherwise). */
  multiplier: number;
  /** The MatMul/Gemm nodes that read it (all with the group's activation as input A). */
  consumers: Node[];
}

export interface AwqGroup {
  activation: Value;
  k: number;
  weights: AwqGroupWeight[];
}

export interface AwqGroupReport {
  activation: string;
  /** What the layers read afterwards (the activation itself, or the inserted Mul's output). */
  input: string;
  weights: string[];
  alpha: number;
  /** Summed output error on the calibration data at the chosen alpha and with plain quantization. */
  loss: number;
  plainLoss: number;
  /** Where 1/s went: e.g. "Mul 'ln/Mul_1' constant", "MatMul 'up' weight columns", "inserted Mul". */
  fold: string;
  /** The per-channel factor applied to the activation (1/s), for callers holding its values. */
  inverse: Float32Array;
  /** Whether the activation value itself changed (folded); false when a Mul was inserted instead. */
  activationChanged: boolean;
}

const SHAPE_ONLY = new Set(['Shape', 'Size']);
const isDefault = (n: Node) => n.domain === '' || n.domain === 'ai.onnx';

/** Float values of a float32/float16 tensor. */
export function floatValues(t: Tensor): Float32Array {
  if (t.dtype === DataType.FLOAT) return Float32Array.from(t.toTypedArray<Float32Array>());
  if (t.dtype === DataType.FLOAT16) return Float32Array.from(t.toTypedArray<Uint16Array>(), float16BitsToFloat32);
  throw new PeftcError(`tensor '${t.name}' is not float32/float16`);
}

function floatTensor(name: string, dtype: DataType, dims: readonly number[], values: Float32Array): Tensor {
  if (dtype === DataType.FLOAT) return Tensor.fromTypedArray(name, dtype, dims, values);
  return Tensor.fromTypedArray(name, dtype, dims, Uint16Array.from(values, float32ToFloat16Bits));
}

/** The weight's rows in the quantizer's view (multiplier applied), as the pass will quantize them. */
export function groupWeightRows(w: AwqGroupWeight): Float32Array {
  const v = floatValues(w.weight.initializer!);
  const out = new Float32Array(w.rows * w.cols);
  const m = w.multiplier;
  if (w.transpose) {
    for (let k = 0; k < w.cols; k++) for (let n = 0; n < w.rows; n++) out[n * w.cols + k] = Math.fround(v[k * w.rows + n]! * m);
  } else {
    for (let i = 0; i < out.length; i++) out[i] = Math.fround(v[i]! * m);
  }
  return out;
}

/** A change of the graph that scales a value per channel; planned first, applied only if the whole path folds. */
type FoldStep = { describe: string; apply: (factor: Float32Array) => void };

/**
 * Replaces input `index` of `node` (a constant) by `c * factor` (or `c / factor` when `divide`),
 * broadcast along its last axis; the constant gets a new value when others read it too.
 */
function scaleConstantInput(graph: Graph, node: Node, index: number, k: number, factor: Float32Array, divide: boolean): void {
  const v = node.inputs[index]!;
  const t = v.initializer!;
  const vals = floatValues(t);
  const dims = [...t.dims];
  const last = dims.length ? dims[dims.length - 1]! : 1;
  const lead = vals.length / last;
  // Broadcast the last axis to K (a scalar or [.., 1] constant becomes per channel).
  const newDims = dims.length ? [...dims.slice(0, -1), k] : [k];
  const out = new Float32Array(lead * k);
  for (let r = 0; r < lead; r++) {
    for (let c = 0; c < k; c++) {
      const x = vals[r * last + (last === 1 ? 0 : c)]!;
      out[r * k + c] = divide ? x / factor[c]! : x * factor[c]!;
    }
  }
  const tensor = floatTensor(v.name, t.dtype, newDims, out);
  if (v.uses.length === 1 && !v.isGraphOutput && sameDims(dims, newDims)) {
    v.initializer = tensor;
  } else {
    const nv = graph.addInitializer(tensor.renamed(graph.uniqueName(`${v.name}_awq`)));
    nv.type = tensorType(t.dtype, newDims);
    node.setInput(index, nv);
    if (v.uses.length === 0 && !v.isGraphOutput && !v.isGraphInput) graph.deleteValue(v);
  }
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** A constant that broadcasts along the last axis only (dims all 1 but the last, which is 1 or K). */
function perChannelConstant(v: Value | null | undefined, k: number, rank: number | undefined): boolean {
  if (!v || !v.isConstant) return false;
  const t = v.initializer!;
  if (t.dtype !== DataType.FLOAT && t.dtype !== DataType.FLOAT16) return false;
  const d = t.dims;
  if (d.length === 0) return true;
  if (rank !== undefined ? d.length > rank : d.length > 1) return false;
  return d.slice(0, -1).every((x) => x === 1) && (d[d.length - 1] === 1 || d[d.length - 1] === k);
}

/** Whether every reader of `v` is one of `readers` or only reads its shape, and it leaves no graph. */
function exclusive(v: Value, readers: ReadonlySet<Node>): boolean {
  if (v.isGraphOutput || v.isGraphInput || v.initializer) return false;
  return v.uses.every((u) => readers.has(u.node) || (isDefault(u.node) && SHAPE_ONLY.has(u.node.opType)));
}

/** Output-column scaling of a weight tensor read as [K', N] (`columnsLast`) or [N, K']. */
function scaleWeightColumns(graph: Graph, node: Node, index: number, columnsLast: boolean, factor: Float32Array): void {
  const v = node.inputs[index]!;
  const t = v.initializer!;
  const vals = floatValues(t);
  const [d0, d1] = t.dims as [number, number];
  if (columnsLast) for (let r = 0; r < d0; r++) for (let c = 0; c < d1; c++) vals[r * d1 + c] = vals[r * d1 + c]! * factor[c]!;
  else for (let r = 0; r < d0; r++) for (let c = 0; c < d1; c++) vals[r * d1 + c] = vals[r * d1 + c]! * factor[r]!;
  replaceConstant(graph, node, index, floatTensor(v.name, t.dtype, t.dims, vals));
}

/** Points input `index` of `node` at `tensor`: in place when only this node reads the old constant. */
function replaceConstant(graph: Graph, node: Node, index: number, tensor: Tensor): void {
  const v = node.inputs[index]!;
  if (v.uses.length === 1 && !v.isGraphOutput) {
    v.initializer = tensor;
    return;
  }
  const nv = graph.addInitializer(tensor.renamed(graph.uniqueName(`${v.name}_awq`)));
  nv.type = v.type;
  node.setInput(index, nv);
}

/**
 * Plans folding a per-channel factor into whatever produces `v` (read only by `readers`), or
 * returns null when nothing on the way can absorb it exactly.
 */
export function planFold(graph: Graph, v: Value, readers: ReadonlySet<Node>, k: number, fixed?: (v: Value) => boolean): FoldStep[] | null {
  if (!exclusive(v, readers)) return null;
  const p = v.producer;
  if (!p || v.producerIndex !== 0) return null;
  const rank = shapeOf(v.type)?.length;
  const only = new Set([p]);
  // Values on the way (not `v` itself) that a caller holds computed copies of must not change.
  const inner = (x: Value, r: ReadonlySet<Node>): FoldStep[] | null => (fixed?.(x) ? null : planFold(graph, x, r, k, fixed));
  if (isDefault(p)) {
    switch (p.opType) {
      case 'Mul': {
        const [a, b] = [p.inputs[0], p.inputs[1]];
        for (const i of [1, 0]) {
          if (perChannelConstant(p.inputs[i], k, rank)) {
            return [{ describe: `Mul '${p.name}' constant`, apply: (f) => scaleConstantInput(graph, p, i, k, f, false) }];
          }
        }
        if (!a || !b || a === b) return null;
        // Two activations: either one takes the factor (the second first: x * gate-like forms).
        return inner(b, only) ?? inner(a, only);
      }
      case 'Div': {
        const [a, b] = [p.inputs[0], p.inputs[1]];
        if (perChannelConstant(b, k, rank)) return [{ describe: `Div '${p.name}' divisor`, apply: (f) => scaleConstantInput(graph, p, 1, k, f, true) }];
        if (a && b && !b.isConstant && a !== b) return inner(a, only);
        return null;
      }
      case 'Add':
      case 'Sub': {
        const steps: FoldStep[] = [];
        if (!p.inputs[0] || !p.inputs[1] || p.inputs[0] === p.inputs[1]) return null;
        for (const i of [0, 1]) {
          const x = p.inputs[i]!;
          if (x.isConstant) {
            if (!perChannelConstant(x, k, rank)) return null;
            steps.push({ describe: `${p.opType} '${p.name}' constant`, apply: (f) => scaleConstantInput(graph, p, i, k, f, false) });
          } else {
            const sub = inner(x, only);
            if (!sub) return null;
            steps.push(...sub);
          }
        }
        return steps;
      }
      case 'MatMul': {
        const w = p.inputs[1];
        if (!w?.isConstant || w.initializer!.dims.length !== 2 || w.initializer!.dims[1] !== k) return matmulOverDequantized(graph, p, k);
        if (w.initializer!.dtype !== DataType.FLOAT && w.initializer!.dtype !== DataType.FLOAT16) return null;
        return [{ describe: `MatMul '${p.name}' weight columns`, apply: (f) => scaleWeightColumns(graph, p, 1, true, f) }];
      }
      case 'Gemm': {
        if (p.attrInt('transA', 0) !== 0) return null;
        const w = p.inputs[1];
        const transB = p.attrInt('transB', 0) !== 0;
        if (!w?.isConstant || w.initializer!.dims.length !== 2 || w.initializer!.dims[transB ? 0 : 1] !== k) return null;
        if (w.initializer!.dtype !== DataType.FLOAT && w.initializer!.dtype !== DataType.FLOAT16) return null;
        const steps: FoldStep[] = [{ describe: `Gemm '${p.name}' weight columns`, apply: (f) => scaleWeightColumns(graph, p, 1, !transB, f) }];
        const c = p.inputs[2];
        if (c) {
          if (c.isConstant) {
            const cd = c.initializer!.dims;
            if (!(cd.length <= 2 && (cd.length === 0 || cd[cd.length - 1] === k || cd[cd.length - 1] === 1))) return null;
            steps.push({ describe: `Gemm '${p.name}' bias`, apply: (f) => scaleConstantInput(graph, p, 2, k, f, false) });
          } else {
            const sub = inner(c, only);
            if (!sub) return null;
            steps.push(...sub);
          }
        }
        return steps;
      }
      case 'LayerNormalization':
      case 'SimplifiedLayerNormalization':
        return planNormFold(graph, p, k, rank);
      default:
        return null;
    }
  }
  if (p.domain === 'com.microsoft' && NORM_INPUTS[p.opType]) return planNormFold(graph, p, k, rank);
  if (p.domain === 'com.microsoft' && p.opType === 'MatMulNBits') {
    // Dequantized weight row n is scales[n, b] * (q - z): scaling output feature n scales its block scales.
    const N = p.attrInt('N', 0);
    const scales = p.inputs[2];
    if (N !== k || !scales?.isConstant) return null;
    if (scales.initializer!.elementCount % N !== 0) return null;
    const bias = p.inputs[5];
    if (bias && !(bias.isConstant && bias.initializer!.elementCount === k)) return null;
    const steps: FoldStep[] = [{ describe: `MatMulNBits '${p.name}' block scales`, apply: (f) => scaleRowsOf(graph, p, 2, N, f) }];
    if (bias) steps.push({ describe: `MatMulNBits '${p.name}' bias`, apply: (f) => scaleConstantInput(graph, p, 5, k, f, false) });
    return steps;
  }
  return null;
}

/**
 * Normalizations whose output 0 is normalized(x) * scale (+ bias) along the last axis: the indices
 * of scale and bias. onnxruntime registers SimplifiedLayerNormalization (RMSNorm) in the default
 * domain, and the Skip forms in com.microsoft (their input+skip sum, output 3, and the statistics,
 * outputs 1 and 2, do not depend on scale or bias, so they may be read by anything).
 */
const NORM_INPUTS: Record<string, { scale: number; bias?: number }> = {
  LayerNormalization: { scale: 1, bias: 2 },
  SimplifiedLayerNormalization: { scale: 1 },
  SkipLayerNormalization: { scale: 2, bias: 3 },
  SkipSimplifiedLayerNormalization: { scale: 2 },
};

function planNormFold(graph: Graph, p: Node, k: number, rank: number | undefined): FoldStep[] | null {
  const at = NORM_INPUTS[p.opType]!;
  if (p.opType === 'LayerNormalization' || p.opType === 'SimplifiedLayerNormalization') {
    const axis = p.attrInt('axis', -1);
    if (!(axis === -1 || (rank !== undefined && axis === rank - 1))) return null;
  }
  const scale = p.inputs[at.scale];
  const bias = at.bias !== undefined ? p.inputs[at.bias] : undefined;
  const floating = (v: Value) => v.initializer!.dtype === DataType.FLOAT || v.initializer!.dtype === DataType.FLOAT16;
  if (!scale?.isConstant || scale.initializer!.elementCount !== k || !floating(scale)) return null;
  if (bias && (!bias.isConstant || bias.initializer!.elementCount !== k || !floating(bias))) return null;
  const steps: FoldStep[] = [{ describe: `${p.opType} '${p.name}' scale`, apply: (f) => scaleConstantInput(graph, p, at.scale, k, f, false) }];
  if (bias) steps.push({ describe: `${p.opType} '${p.name}' bias`, apply: (f) => scaleConstantInput(graph, p, at.bias!, k, f, false) });
  return steps;
}

/** Scales a constant whose elements are grouped by output feature ([N, ...] row-major) by factor[n]. */
function scaleRowsOf(graph: Graph, node: Node, index: number, n: number, factor: Float32Array): void {
  const v = node.inputs[index]!;
  const t = v.initializer!;
  const vals = floatValues(t);
  const per = vals.length / n;
  for (let r = 0; r < n; r++) for (let j = 0; j < per; j++) vals[r * per + j] = vals[r * per + j]! * factor[r]!;
  replaceConstant(graph, node, index, floatTensor(v.name, t.dtype, t.dims, vals));
}

/** MatMul(A, DequantizeLinear(codes, scales, ...)) with the weight [K', N] blocked along K': scale columns of the scales. */
function matmulOverDequantized(graph: Graph, p: Node, k: number): FoldStep[] | null {
  const w = p.inputs[1];
  const dq = w?.producer;
  if (!w || !dq || !isDefault(dq) || dq.opType !== 'DequantizeLinear' || w.uses.length !== 1 || w.isGraphOutput) return null;
  const scales = dq.inputs[1];
  const codes = dq.inputs[0];
  if (!scales?.isConstant || !codes?.isConstant || codes.initializer!.dims.length !== 2 || codes.initializer!.dims[1] !== k) return null;
  const sd = scales.initializer!.dims;
  if (sd.length !== 2 || sd[1] !== k) return null;
  return [{ describe: `DequantizeLinear '${dq.name}' scales`, apply: (f) => scaleWeightColumns(graph, dq, 1, true, f) }];
}

/**
 * Scales the group's weights by s (input channel k of every weight times s[k]) and divides the
 * activation by s: folded into its producer when `planFold` finds a way, else through an inserted
 * Mul. Returns what was done.
 */
export function applyAwqScales(
  graph: Graph,
  group: AwqGroup,
  scales: Float64Array,
  fixed?: (v: Value) => boolean,
): { fold: string; input: Value; inverse: Float32Array; activationChanged: boolean } {
  const k = group.k;
  const inverse = Float32Array.from(scales, (s) => 1 / s);
  // 1. Weights: rows along K scaled by s (the tensor's own layout: [K, N] or [N, K]).
  for (const w of group.weights) {
    const t = w.weight.initializer!;
    const vals = floatValues(t);
    const [d0, d1] = t.dims as [number, number];
    if (w.transpose) for (let r = 0; r < d0; r++) for (let c = 0; c < d1; c++) vals[r * d1 + c] = vals[r * d1 + c]! * scales[r]!;
    else for (let r = 0; r < d0; r++) for (let c = 0; c < d1; c++) vals[r * d1 + c] = vals[r * d1 + c]! * scales[c]!;
    w.weight.initializer = floatTensor(w.weight.name, t.dtype, t.dims, vals);
  }
  // 2. The activation.
  const consumers = new Set(group.weights.flatMap((w) => w.consumers));
  const plan = planFold(graph, group.activation, consumers, k, fixed);
  if (plan) {
    for (const step of plan) step.apply(inverse);
    return { fold: plan.map((s) => s.describe).join(' + '), input: group.activation, inverse, activationChanged: true };
  }
  const x = group.activation;
  const dtype = (x.type?.kind === 'tensor' ? x.type.elemType : group.weights[0]!.weight.initializer!.dtype) as DataType;
  const invValue = graph.addInitializer(floatTensor(graph.uniqueName(`${x.name}_awq_inverse_scale`), dtype, [k], inverse));
  invValue.type = tensorType(dtype, [k]);
  const first = graph.nodes.find((n) => consumers.has(n))!;
  const mul = graph.addNode('Mul', [x, invValue], [graph.uniqueName(`${x.name}_awq_scaled`)], { name: graph.uniqueName(`${x.name}_awq_Mul`), before: first });
  const out = mul.outputs[0]!;
  out.type = x.type ? { ...x.type } : undefined;
  for (const c of consumers) c.setInput(0, out);
  return { fold: 'inserted Mul', input: out, inverse, activationChanged: false };
}
