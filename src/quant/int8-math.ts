/**
 * INT8 quantization arithmetic, exactly as ONNX's QuantizeLinear/DequantizeLinear define it and as
 * onnxruntime's quantization tools derive their parameters:
 *
 *   QuantizeLinear:   q = saturate(round_half_even(x / scale) + zero_point)   (division in float32)
 *   DequantizeLinear: x = (q - zero_point) * scale
 *
 * Parameters from a range [lo, hi] (onnxruntime's compute_scale_zp): the range is widened to
 * include 0 (so 0 is exact, which zero padding and ReLU rely on); symmetric ranges become
 * [-m, m] with m = max(|lo|, |hi|); scale = (hi - lo) / (qmax - qmin) stored as float32;
 * zero_point = round_half_even(qmin - lo / scale) clamped into [qmin, qmax]. A zero range gives
 * scale 1, zero point 0. Symmetric int8 uses [-127, 127] so that -m and m are both exact.
 *
 * Weights: int8 symmetric, per output channel (or per tensor). Biases of Conv/Gemm: int32 with
 * scale = input scale x weight scale (the float32 product, the scale QLinearConv/QGemm imply).
 */
import { roundHalfEven } from '../../kernels/util.js';

export type Int8Type = 'uint8' | 'int8';

export interface QuantParams {
  /** float32 value. */
  scale: number;
  zeroPoint: number;
  type: Int8Type;
}

export function qRange(type: Int8Type, symmetric: boolean): [number, number] {
  if (type === 'uint8') return [0, 255];
  return symmetric ? [-127, 127] : [-128, 127];
}

/** onnxruntime's parameters for the range [lo, hi] (widened to include 0). */
export function paramsForRange(lo: number, hi: number, type: Int8Type, symmetric: boolean): QuantParams {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new RangeError(`int8: the range [${lo}, ${hi}] is not finite`);
  let rmin = Math.min(lo, 0);
  let rmax = Math.max(hi, 0);
  const [qmin, qmax] = qRange(type, symmetric);
  if (symmetric) {
    const m = Math.max(Math.abs(rmin), Math.abs(rmax));
    rmin = -m;
    rmax = m;
  }
  let scale = Math.fround((rmax - rmin) / (qmax - qmin));
  // float32's smallest normal: below it the scale is treated as "no range".
  if (!(scale >= 1.1754943508222875e-38)) return { scale: 1, zeroPoint: symmetric && type === 'uint8' ? 128 : 0, type };
  if (symmetric) return { scale, zeroPoint: type === 'uint8' ? 128 : 0, type };
  const zeroPoint = Math.min(qmax, Math.max(qmin, roundHalfEven(qmin - rmin / scale)));
  scale = Math.fround(scale);
  return { scale, zeroPoint, type };
}

/** QuantizeLinear of one value (float32 division, round half to even, saturate). */
export function quantizeValue(x: number, scale: number, zeroPoint: number, qmin: number, qmax: number): number {
  const r = roundHalfEven(Math.fround(x / scale)) + zeroPoint;
  return r < qmin ? qmin : r > qmax ? qmax : r;
}

/** DequantizeLinear of one value (float32 arithmetic). */
export function dequantizeValue(q: number, scale: number, zeroPoint: number): number {
  return Math.fround(Math.fround(q - zeroPoint) * scale);
}

/** The representable interval of a parameter set: [deq(qmin), deq(qmax)]. */
export function representable(p: QuantParams): [number, number] {
  const [qmin, qmax] = qRange(p.type, false);
  return [dequantizeValue(qmin, p.scale, p.zeroPoint), dequantizeValue(qmax, p.scale, p.zeroPoint)];
}

export interface QuantizedWeight {
  data: Int8Array;
  /** One per channel along `axis` (or one, per tensor). */
  scales: Float32Array;
  /** The channel axis, or undefined for per-tensor. */
  axis: number | undefined;
  /** Root mean square quantization error, and the weight's own RMS. */
  rmse: number;
  rms: number;
}

/**
 * Symmetric int8 quantization of a float32 weight, per channel along `axis` (undefined: one scale
 * for the tensor). Values land in [-127, 127].
 */
export function quantizeWeightSymmetric(w: Float32Array, dims: readonly number[], axis: number | undefined): QuantizedWeight {
  const n = w.length;
  const channels = axis === undefined ? 1 : dims[axis]!;
  const inner = axis === undefined ? n : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channelOf = (i: number) => (axis === undefined ? 0 : Math.floor(i / inner) % channels);
  const absmax = new Float64Array(channels);
  for (let i = 0; i < n; i++) {
    const a = Math.abs(w[i]!);
    const c = channelOf(i);
    if (a > absmax[c]!) absmax[c] = a;
    else if (Number.isNaN(a)) throw new RangeError(`int8: weight element ${i} is NaN`);
  }
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) scales[c] = paramsForRange(-absmax[c]!, absmax[c]!, 'int8', true).scale;
  const data = new Int8Array(n);
  let sse = 0;
  let ss = 0;
  for (let i = 0; i < n; i++) {
    const s = scales[channelOf(i)]!;
    const q = quantizeValue(w[i]!, s, 0, -127, 127);
    data[i] = q;
    const e = w[i]! - q * s;
    sse += e * e;
    ss += w[i]! * w[i]!;
  }
  return { data, scales, axis, rmse: Math.sqrt(sse / Math.max(1, n)), rms: Math.sqrt(ss / Math.max(1, n)) };
}

/**
 * int32 bias for QLinearConv / QGemm: q = round_half_even(b / (sx * sw[c])), scale[c] = sx * sw[c]
 * in float32 (per channel when the weight is; one scale otherwise), zero point 0.
 */
export function quantizeBias(b: Float32Array, inputScale: number, weightScales: Float32Array): { data: Int32Array; scales: Float32Array } {
  const per = weightScales.length > 1;
  const scales = per ? new Float32Array(weightScales.length) : new Float32Array(1);
  for (let c = 0; c < scales.length; c++) scales[c] = Math.fround(inputScale * weightScales[c]!);
  const data = new Int32Array(b.length);
  for (let i = 0; i < b.length; i++) {
    const s = scales[per ? i : 0]!;
    const q = s > 0 ? roundHalfEven(b[i]! / s) : 0;
    data[i] = Math.max(-2147483648, Math.min(2147483647, q));
  }
  return { data, scales };
}
