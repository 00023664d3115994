/**
 * The arithmetic of merging LoRA/DoRA deltas into a base weight, on typed arrays.
 *
 * A delta is factor * B·A with A [r, in] and B [out, r] (factor = adapter weight x scale). The base
 * weight is stored either as [out, in] ("out_in": torch Linear, Gemm with transB=1) or [in, out]
 * ("in_out": MatMul's right operand, GPT-2 Conv1D, Gemm with transB=0, and embeddings, whose
 * [num_embeddings, dim] table takes the transposed product). Arithmetic is float32 with float64
 * accumulation over the rank; float16/bfloat16 weights are widened, merged and rounded back
 * (round-to-nearest-even), so the result does not depend on the input precision path.
 *
 * DoRA: W' = m / ||W + s·B·A||_row * (W + s·B·A), the norm taken per output feature over the
 * input features, as PEFT's get_weight_norm does (torch.linalg.norm(weight, dim=1) in [out, in]).
 */
import { PeftcError } from '../errors.js';
import {
  bfloat16BitsToFloat32,
  DataType,
  dtypeName,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
} from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';

export type WeightLayout = 'out_in' | 'in_out';

export interface Delta {
  a: Float32Array; // [r, in]
  b: Float32Array; // [out, r]
  rank: number;
  factor: number;
}

export function toFloat32(t: Tensor): Float32Array {
  switch (t.dtype) {
    case DataType.FLOAT:
      return Float32Array.from(t.toTypedArray<Float32Array>());
    case DataType.FLOAT16:
      return Float32Array.from(t.toTypedArray<Uint16Array>(), float16BitsToFloat32);
    case DataType.BFLOAT16:
      return Float32Array.from(t.toTypedArray<Uint16Array>(), bfloat16BitsToFloat32);
    case DataType.DOUBLE:
      return Float32Array.from(t.toTypedArray<Float64Array>());
    default:
      throw new PeftcError(`tensor '${t.name}' is ${dtypeName(t.dtype)}; LoRA merge needs a floating-point weight`);
  }
}

export function fromFloat32(name: string, dtype: DataType, dims: readonly number[], data: Float32Array): Tensor {
  switch (dtype) {
    case DataType.FLOAT:
      return Tensor.fromTypedArray(name, dtype, dims, data);
    case DataType.FLOAT16:
      return Tensor.fromTypedArray(name, dtype, dims, Uint16Array.from(data, float32ToFloat16Bits));
    case DataType.BFLOAT16:
      return Tensor.fromTypedArray(name, dtype, dims, Uint16Array.from(data, float32ToBfloat16Bits));
    case DataType.DOUBLE:
      return Tensor.fromTypedArray(name, dtype, dims, Float64Array.from(data));
    default:
      throw new PeftcError(`cannot store a merged weight as ${dtypeName(dtype)}`);
  }
}

/**
 * Adds every delta into `w` (float32, in `layout`), in place. `inF`/`outF` are the weight's
 * input and output feature counts.
 */
export function addDeltas(w: Float32Array, layout: WeightLayout, inF: number, outF: number, deltas: readonly Delta[]): void {
  for (const d of deltas) {
    const r = d.rank;
    if (d.a.length !== r * inF || d.b.length !== outF * r) throw new Error('internal: delta shapes do not match the weight');
    if (layout === 'out_in') {
      // W[o, i] += sum_k (f * B[o, k]) * A[k, i]  (inner loop contiguous over i)
      const fb = new Float32Array(r);
      const acc = new Float64Array(inF);
      for (let o = 0; o < outF; o++) {
        for (let k = 0; k < r; k++) fb[k] = d.b[o * r + k]!;
        acc.fill(0);
        for (let k = 0; k < r; k++) {
          const bk = fb[k]!;
          if (bk === 0) continue;
          const aRow = k * inF;
          for (let i = 0; i < inF; i++) acc[i]! += bk * d.a[aRow + i]!;
        }
        const row = o * inF;
        for (let i = 0; i < inF; i++) w[row + i] = Math.fround(w[row + i]! + d.factor * acc[i]!);
      }
    } else {
      // W[i, o] += sum_k A[k, i] * (f * B[o, k])  (inner loop contiguous over o)
      const bt = new Float32Array(r * outF); // B transposed: [r, out]
      for (let o = 0; o < outF; o++) for (let k = 0; k < r; k++) bt[k * outF + o] = d.b[o * r + k]!;
      const acc = new Float64Array(outF);
      for (let i = 0; i < inF; i++) {
        acc.fill(0);
        for (let k = 0; k < r; k++) {
          const ak = d.a[k * inF + i]!;
          if (ak === 0) continue;
          const btRow = k * outF;
          for (let o = 0; o < outF; o++) acc[o]! += ak * bt[btRow + o]!;
        }
        const row = i * outF;
        for (let o = 0; o < outF; o++) w[row + o] = Math.fround(w[row + o]! + d.factor * acc[o]!);
      }
    }
  }
}

/** DoRA: scales each output feature of the (already delta-added) weight to magnitude m. */
export function applyDoraMagnitude(w: Float32Array, layout: WeightLayout, inF: number, outF: number, magnitude: Float32Array): void {
  if (magnitude.length !== outF) throw new PeftcError(`DoRA magnitude has ${magnitude.length} entries, the weight has ${outF} output features`);
  const norms = new Float64Array(outF);
  if (layout === 'out_in') {
    for (let o = 0; o < outF; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += w[o * inF + i]! ** 2;
      norms[o] = Math.fround(Math.sqrt(s));
    }
    for (let o = 0; o < outF; o++) {
      const f = Math.fround(magnitude[o]! / norms[o]!);
      for (let i = 0; i < inF; i++) w[o * inF + i] = Math.fround(w[o * inF + i]! * f);
    }
  } else {
    for (let i = 0; i < inF; i++) for (let o = 0; o < outF; o++) norms[o]! += w[i * outF + o]! ** 2;
    const f = new Float32Array(outF);
    for (let o = 0; o < outF; o++) f[o] = Math.fround(magnitude[o]! / Math.fround(Math.sqrt(norms[o]!)));
    for (let i = 0; i < inF; i++) for (let o = 0; o < outF; o++) w[i * outF + o] = Math.fround(w[i * outF + o]! * f[o]!);
  }
}
