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
import { simdKernels, type SimdKernels } from './merge-simd.js';

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
      return new Float32Array(t.toTypedArray<Float32Array>());
    case DataType.FLOAT16:
      return Float32Array.from(t.toTypedArray<Uint16Array>(), float16BitsToFloat32);
    case DataType.BFLOAT16:
      return Float32Array.from(t.toTypedArray<Uint16Array>(), bfloat16BitsToFloat32);
    case DataType.DOUBLE:
      return new Float32Array(t.toTypedArray<Float64Array>());
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
 *
 * Each element gets w + factor * (0 + c_0*x_0 + c_1*x_1 + ...), the products of the nonzero
 * coefficients added in rank order in float64 and the result rounded to float32 once. The loops
 * only decide how that fixed sequence is computed, so every blocking gives the same bits.
 */
export function addDeltas(w: Float32Array, layout: WeightLayout, inF: number, outF: number, deltas: readonly Delta[]): void {
  for (const d of deltas) {
    const r = d.rank;
    if (d.a.length !== r * inF || d.b.length !== outF * r) throw new Error('internal: delta shapes do not match the weight');
    if (layout === 'out_in') {
      // Row o of W gains f * sum_k B[o, k] * A[k, :]: A's rows, with coefficients from B's row o.
      addCombinedRows({ w, rows: outF, len: inF, basis: d.a, r, coef: d.b, rowStride: r, rankStride: 1, factor: d.factor });
    } else {
      // Row i of W gains f * sum_k A[k, i] * B[:, k]: B's columns (rows of B transposed), with
      // coefficients from A's column i.
      addCombinedRows({ w, rows: inF, len: outF, basis: transposed(d.b, outF, r), r, coef: d.a, rowStride: 1, rankStride: inF, factor: d.factor });
    }
  }
}

/** [rows, cols] -> [cols, rows]. */
function transposed(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(m.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = m[i * cols + j]!;
  return t;
}

/**
 * w[x, :] += factor * sum_k coef(x, k) * basis[k, :] for every row x of w ([rows, len]), basis
 * [r, len], coef(x, k) = coef[x * rowStride + k * rankStride].
 */
interface RowCombination {
  w: Float32Array;
  rows: number;
  len: number;
  basis: Float32Array;
  r: number;
  coef: Float32Array;
  rowStride: number;
  rankStride: number;
  factor: number;
}

/**
 * Row x's nonzero coefficients in rank order: their values into `cs`, and `base + k * step` (the
 * position of basis row k, in whatever unit the caller addresses it) into `at`. Returns how many.
 */
function nonzeroCoefficients(c: RowCombination, x: number, base: number, step: number, at: Int32Array, cs: Float64Array): number {
  let n = 0;
  for (let k = 0; k < c.r; k++) {
    const v = c.coef[x * c.rowStride + k * c.rankStride]!;
    if (v !== 0) {
      at[n] = base + k * step;
      cs[n++] = v;
    }
  }
  return n;
}

/**
 * The RowCombination, in place. Zero coefficients are
 * skipped (as the float64 sum never holds -0, adding their +-0 products would change nothing
 * but NaN/Inf propagation from the basis). Ranks go four at a time so the running sums of a row
 * stay in registers for four products instead of a load and store of the accumulator each.
 */
function addCombinedRows(c: RowCombination): void {
  const simd = simdKernels();
  if (simd) return addCombinedRowsSimd(simd, c);
  const { w, rows, len, basis, r, factor } = c;
  const acc = new Float64Array(len);
  const offsets = new Int32Array(r); // basis row offsets of the nonzero coefficients, in rank order
  const cs = new Float64Array(r);
  for (let x = 0; x < rows; x++) {
    const n = nonzeroCoefficients(c, x, 0, len, offsets, cs);
    let m = 0;
    if (n >= 4) {
      accumulate4(acc, basis, offsets, cs, 0, len, true);
      m = 4;
    } else {
      acc.fill(0);
    }
    for (; m + 4 <= n; m += 4) accumulate4(acc, basis, offsets, cs, m, len, false);
    for (; m < n; m++) accumulate1(acc, basis, offsets[m]!, cs[m]!, len);
    const row = x * len;
    // The Float32Array store rounds to float32 (as Math.fround would).
    for (let j = 0; j < len; j++) w[row + j] = w[row + j]! + factor * acc[j]!;
  }
}

/** Rows of `w` are merged in groups of about this many bytes, copied through the kernels' memory (cache-sized). */
const SIMD_CHUNK_BYTES = 256 << 10;

/**
 * addCombinedRows with the WebAssembly kernels (same operations, same order, same bits). Their
 * memory holds the basis, the accumulator and a group of rows of `w` at a time, copied in and
 * out, so it stays small whatever the weight's size.
 */
function addCombinedRowsSimd(k: SimdKernels, c: RowCombination): void {
  const { w, rows, len, basis, r, factor } = c;
  const quads = len >> 2;
  const tail = quads * 4; // elements from here to the row's end are done here, in the same order
  const basisAt = 0;
  const accAt = align16(basisAt + basis.byteLength);
  const chunkRows = Math.max(1, Math.floor(SIMD_CHUNK_BYTES / (len * 4)));
  const wAt = align16(accAt + len * 8);
  k.reserve(wAt + chunkRows * len * 4);
  const f32 = new Float32Array(k.memory.buffer);
  const acc = new Float64Array(k.memory.buffer, accAt, len);
  f32.set(basis, basisAt / 4);
  const at = new Int32Array(r); // byte addresses of the basis rows with a nonzero coefficient, in rank order
  const cs = new Float64Array(r);
  for (let x0 = 0; x0 < rows; x0 += chunkRows) {
    const x1 = Math.min(rows, x0 + chunkRows);
    f32.set(w.subarray(x0 * len, x1 * len), wAt / 4);
    for (let x = x0; x < x1; x++) {
      const n = nonzeroCoefficients(c, x, basisAt, len * 4, at, cs);
      acc.fill(0); // 0 + c0*x0 + ...: the sum starts from +0 as in the scalar loops
      let m = 0;
      for (; m + 8 <= n; m += 8) {
        k.acc8(accAt, at[m]!, at[m + 1]!, at[m + 2]!, at[m + 3]!, at[m + 4]!, at[m + 5]!, at[m + 6]!, at[m + 7]!, cs[m]!, cs[m + 1]!, cs[m + 2]!, cs[m + 3]!, cs[m + 4]!, cs[m + 5]!, cs[m + 6]!, cs[m + 7]!, quads);
      }
      for (; m + 4 <= n; m += 4) k.acc4(accAt, at[m]!, at[m + 1]!, at[m + 2]!, at[m + 3]!, cs[m]!, cs[m + 1]!, cs[m + 2]!, cs[m + 3]!, quads);
      for (; m < n; m++) k.acc1(accAt, at[m]!, cs[m]!, quads);
      // The last len % 4 elements: every term in rank order, as the kernels add them.
      for (let j = tail; j < len; j++) {
        let s = acc[j]!;
        for (let q = 0; q < n; q++) s += cs[q]! * f32[at[q]! / 4 + j]!;
        acc[j] = s;
      }
      const rowAt = wAt + (x - x0) * len * 4;
      k.finish(rowAt, accAt, factor, quads);
      for (let j = tail; j < len; j++) f32[rowAt / 4 + j] = f32[rowAt / 4 + j]! + factor * acc[j]!;
    }
    w.set(f32.subarray(wAt / 4, wAt / 4 + (x1 - x0) * len), x0 * len);
  }
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

/**
 * acc[j] = (first ? 0 : acc[j]) + c0*x0[j] + c1*x1[j] + c2*x2[j] + c3*x3[j], left to right, for
 * the four basis rows at offsets[m..m+3]. Two elements per iteration: two independent chains of
 * dependent float64 additions keep the adder busy.
 */
function accumulate4(acc: Float64Array, basis: Float32Array, offsets: Int32Array, cs: Float64Array, m: number, len: number, first: boolean): void {
  const r0 = offsets[m]!, r1 = offsets[m + 1]!, r2 = offsets[m + 2]!, r3 = offsets[m + 3]!;
  const c0 = cs[m]!, c1 = cs[m + 1]!, c2 = cs[m + 2]!, c3 = cs[m + 3]!;
  let j = 0;
  for (; j + 1 < len; j += 2) {
    let s = first ? 0 : acc[j]!;
    let t = first ? 0 : acc[j + 1]!;
    s += c0 * basis[r0 + j]!;
    t += c0 * basis[r0 + j + 1]!;
    s += c1 * basis[r1 + j]!;
    t += c1 * basis[r1 + j + 1]!;
    s += c2 * basis[r2 + j]!;
    t += c2 * basis[r2 + j + 1]!;
    s += c3 * basis[r3 + j]!;
    t += c3 * basis[r3 + j + 1]!;
    acc[j] = s;
    acc[j + 1] = t;
  }
  if (j < len) {
    let s = first ? 0 : acc[j]!;
    s += c0 * basis[r0 + j]!;
    s += c1 * basis[r1 + j]!;
    s += c2 * basis[r2 + j]!;
    s += c3 * basis[r3 + j]!;
    acc[j] = s;
  }
}

/** acc[j] += c * basis[offset + j]. */
function accumulate1(acc: Float64Array, basis: Float32Array, offset: number, c: number, len: number): void {
  for (let j = 0; j < len; j++) acc[j] = acc[j]! + c * basis[offset + j]!;
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
