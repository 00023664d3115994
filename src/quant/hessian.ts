/**
 * The layer-input second moment H = X^T X (float64, K x K) that data-aware weight quantization
 * works with: for a layer Y = X W, the output error of a perturbed weight W + D is
 * ||X D||_F^2 = tr(D^T H D), so H is all of the calibration data a layer's quantizer needs.
 *
 * H is accumulated batch by batch from activations [rows, K] (any leading axes flattened into
 * rows), upper triangle only, and mirrored once at the end.
 */

import { dot } from './cholesky.js';

/** Rows of X transposed at a time: a few KiB per column keeps both operands in cache. */
const CHUNK = 32;

/**
 * H (upper triangle, row-major K x K) += X^T X for X = `x` viewed as [rows, K] (float32 or
 * float64 values; `at` maps float16 bit patterns when given).
 */
export function accumulateHessian(h: Float64Array, k: number, x: ArrayLike<number>, rows: number, at?: (raw: number) => number): void {
  if (h.length !== k * k) throw new RangeError(`Hessian holds ${h.length} values, expected ${k} x ${k}`);
  if (x.length !== rows * k) throw new RangeError(`activation holds ${x.length} values, expected ${rows} x ${k}`);
  const t = new Float64Array(k * CHUNK);
  for (let r0 = 0; r0 < rows; r0 += CHUNK) {
    const c = Math.min(CHUNK, rows - r0);
    // t[i][s] = X[r0 + s][i]: column i of the chunk, contiguous.
    for (let s = 0; s < c; s++) {
      const base = (r0 + s) * k;
      if (at) for (let i = 0; i < k; i++) t[i * CHUNK + s] = at(x[base + i]!);
      else for (let i = 0; i < k; i++) t[i * CHUNK + s] = x[base + i]!;
    }
    for (let i = 0; i < k; i++) {
      const ti = i * CHUNK;
      const hi = i * k;
      for (let j = i; j < k; j++) h[hi + j]! += dot(t, ti, t, j * CHUNK, c);
    }
  }
}

/** sums[i] += |x[r][i]| over the rows of `x` viewed as [rows, k] (`at` maps float16 bit patterns when given). */
export function accumulateAbs(sums: Float64Array, k: number, x: ArrayLike<number>, at?: (raw: number) => number): void {
  const rows = x.length / k;
  for (let r = 0; r < rows; r++) {
    const base = r * k;
    if (at) for (let i = 0; i < k; i++) sums[i]! += Math.abs(at(x[base + i]!));
    else for (let i = 0; i < k; i++) sums[i]! += Math.abs(x[base + i]!);
  }
}

/** Copies the upper triangle onto the lower one (after the last accumulateHessian). */
export function mirrorUpper(h: Float64Array, k: number): void {
  for (let i = 0; i < k; i++) for (let j = i + 1; j < k; j++) h[j * k + i] = h[i * k + j]!;
}

/** A Float64Array of n values over shared memory: worker threads read it without a copy. */
export function sharedFloat64(n: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(n * 8));
}

const ROW_BLOCK = 8;

/**
 * Output error of quantized rows against a Hessian: weights `w` and their dequantized values `q`
 * are [rows, k] (each row one output feature, k the reduction axis). Returns
 * sse = sum_r (w_r - q_r)^T H (w_r - q_r) and norm = sum_r w_r^T H w_r (0 unless `withNorm`).
 */
export function outputError(w: Float32Array, q: Float32Array, rows: number, k: number, h: Float64Array, withNorm = true): { sse: number; norm: number } {
  let sse = 0;
  let norm = 0;
  // Rows in blocks so each row of H is read once per block.
  const d = new Float64Array(ROW_BLOCK * k);
  const v = new Float64Array(ROW_BLOCK * k);
  for (let r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
    const nr = Math.min(ROW_BLOCK, rows - r0);
    for (let s = 0; s < nr; s++) {
      const base = (r0 + s) * k;
      for (let i = 0; i < k; i++) {
        v[s * k + i] = w[base + i]!;
        d[s * k + i] = w[base + i]! - q[base + i]!;
      }
    }
    // H is symmetric: x^T H x = sum_i x_i (H_ii x_i + 2 sum_{j>i} H_ij x_j), half the products.
    for (let i = 0; i < k; i++) {
      const hi = i * k;
      const hii = h[hi + i]!;
      const rest = k - i - 1;
      for (let s = 0; s < nr; s++) {
        const o = s * k + i;
        const di = d[o]!;
        sse += di * (hii * di + 2 * dot(h, hi + i + 1, d, o + 1, rest));
        if (withNorm) {
          const vi = v[o]!;
          norm += vi * (hii * vi + 2 * dot(h, hi + i + 1, v, o + 1, rest));
        }
      }
    }
  }
  return { sse, norm };
}
