/**
 * GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for
 * Generative Pre-trained Transformers", arXiv:2210.17323): quantizes a weight one reduction-axis
 * column at a time and, after each column, moves the rounding error it left onto the columns not
 * yet quantized, in the direction that keeps the layer's output X W closest (least squares over
 * the calibration inputs, through H = X^T X).
 *
 * Rows here are the quantizer's rows (output features), columns the reduction axis K, as in
 * blockwise.ts. Per the paper (Algorithm 1):
 *  - dead columns (H[j][j] = 0: that input is always zero) get H[j][j] = 1 and weight 0;
 *  - H += damp * mean(diag H) * I (damp 0.01);
 *  - U = upper Cholesky factor of H^-1; for column p, err = (w_p - quant(w_p)) / U[p][p] and
 *    w_t -= err * U[p][t] for t > p — applied at once inside a lazy batch of 128 columns and to
 *    the columns after the batch in one product when the batch ends.
 * Block parameters (scale, zero point) are chosen when a block's first column is reached, from the
 * weights as updated so far, with the same rtn/mse search as blockwise.ts; codes are rounded
 * exactly as blockwise.ts rounds, so the result packs into the same layouts. The lazy batch is at
 * least a block long (128 is a multiple of every block size up to 128), so a block never straddles
 * a batch and its parameters see every update made before its first column.
 *
 * act-order (option): columns are processed by descending diag(H) (the paper's heuristic for
 * outliers), but the block layout stays contiguous along K (MatMulNBits and DequantizeLinear
 * blocks are contiguous), so the block parameters are fixed up front from the original weights
 * ("static groups"), and each column is rounded with its own block's parameters.
 *
 * Everything numeric is float64 except the values that are rounded, which are taken to float32
 * first, as the plain quantizer reads its float32 weights.
 */
import {
  chooseBlockParams,
  doubleQuantizeScales,
  intCode,
  quantizedRows,
  scaleInverse,
  validateQuantConfig,
  type ErrorStats,
  type QuantConfig,
  type QuantizedRows,
} from './blockwise.js';
import { upperCholeskyOfInverse } from './cholesky.js';
import { NF4_CODE_BOOK, nearestNf4 } from './nf4.js';

export interface GptqOptions {
  /** Fraction of the mean of diag(H) added to the diagonal (the paper's 1%). */
  dampening: number;
  /** Columns in order of descending diag(H), block parameters fixed from the original weights. */
  actOrder: boolean;
  /** Columns per lazy batch update (raised to the block size when that is larger). */
  lazyBatch: number;
}

export const DEFAULT_GPTQ: GptqOptions = { dampening: 0.01, actOrder: false, lazyBatch: 128 };

/** Attempts at factorizing, the dampening growing tenfold each time H + damp I is not positive definite. */
const DAMPING_ATTEMPTS = 4;

const fround = Math.fround;

/**
 * GPTQ-quantizes `values` ([rows, cols] float32, row-major) against `hessian` ([cols, cols],
 * float64, symmetric, not modified). Returns the same structure as quantizeRows; its stats compare
 * with the original weights.
 */
export function gptqQuantizeRows(
  values: Float32Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
  config: QuantConfig,
  options: Partial<GptqOptions> = {},
): QuantizedRows {
  validateQuantConfig(config);
  const opts = { ...DEFAULT_GPTQ, ...options };
  const n = cols;
  if (values.length !== rows * cols) throw new RangeError(`expected ${rows} x ${cols} values, got ${values.length}`);
  if (hessian.length !== n * n) throw new RangeError(`Hessian holds ${hessian.length} values, expected ${n} x ${n}`);
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) throw new RangeError(`weight element ${i} is ${values[i]} (only finite weights can be quantized)`);
  for (let i = 0; i < n; i++) if (!Number.isFinite(hessian[i * n + i]!)) throw new RangeError(`calibration Hessian diagonal ${i} is ${hessian[i * n + i]}`);

  // 1. Column order and dead columns.
  const diag = Float64Array.from({ length: n }, (_, j) => hessian[j * n + j]!);
  const dead = Uint8Array.from(diag, (d) => (d === 0 ? 1 : 0));
  const perm = Int32Array.from({ length: n }, (_, j) => j);
  if (opts.actOrder) perm.sort((a, b) => diag[b]! - diag[a]! || a - b);

  // 2. Working weights W[r][p] = values[r][perm[p]] (0 for dead columns), permuted H, dampening.
  const W = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) for (let p = 0; p < n; p++) W[r * n + p] = dead[perm[p]!] ? 0 : values[r * cols + perm[p]!]!;
  let meanDiag = 0;
  for (let j = 0; j < n; j++) meanDiag += dead[j] ? 1 : diag[j]!;
  meanDiag /= n;
  let U: Float64Array | null = null;
  let dampUsed = 0;
  for (let attempt = 0, damp = opts.dampening * meanDiag; attempt < DAMPING_ATTEMPTS && !U; attempt++, damp *= 10) {
    dampUsed = damp;
    const H = new Float64Array(n * n);
    for (let p = 0; p < n; p++) {
      const src = perm[p]! * n;
      for (let q = 0; q < n; q++) H[p * n + q] = hessian[src + perm[q]!]!;
      H[p * n + p] = (dead[perm[p]!] ? 1 : H[p * n + p]!) + damp;
    }
    U = upperCholeskyOfInverse(H, n);
  }
  if (!U) throw new RangeError(`the calibration Hessian is not positive definite even with ${opts.dampening * 10 ** (DAMPING_ATTEMPTS - 1)} x mean(diag) dampening`);

  // 3. Outputs.
  const bs = config.blockSize;
  const nb = Math.ceil(cols / bs);
  const isInt = config.format === 'int';
  const maxq = (1 << config.bits) - 1;
  const mid = 1 << (config.bits - 1);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * nb);
  const zeroPoints = isInt && !config.symmetric ? new Uint8Array(rows * nb) : null;
  const doubleQuant = config.format === 'nf4' && config.doubleQuant;
  const scaleCodes = doubleQuant ? new Uint8Array(rows * nb) : undefined;
  const groups = Math.ceil(rows / 256);
  const scaleGroupScales = doubleQuant ? new Float32Array(groups * nb) : undefined;
  const dequantized = new Float32Array(rows * cols);

  const param = new Float64Array(3);
  const tmp = new Float64Array(3);
  const block = new Float32Array(bs);
  const column = new Float32Array(rows);
  /** Parameters of block b for every row, from float32 weights read by `get(r, c)` (c < block length). */
  const chooseBlock = (b: number, get: (r: number, c: number) => number) => {
    const len = Math.min(bs, cols - b * bs);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < len; c++) block[c] = get(r, c);
      chooseBlockParams(block, 0, len, config, param, tmp);
      scales[r * nb + b] = param[0]!;
      if (zeroPoints) zeroPoints[r * nb + b] = param[1]!;
    }
    if (doubleQuant) {
      // Double quantization works per block column (groups of 256 rows), so it can run here.
      for (let r = 0; r < rows; r++) column[r] = scales[r * nb + b]!;
      const dq = doubleQuantizeScales(column, rows, 1);
      for (let r = 0; r < rows; r++) {
        scales[r * nb + b] = column[r]!;
        scaleCodes![r * nb + b] = dq.scaleCodes[r]!;
      }
      for (let g = 0; g < groups; g++) scaleGroupScales![g * nb + b] = dq.scaleGroupScales[g]!;
    }
  };
  if (opts.actOrder) {
    // Static groups: every block's parameters from the original weights (dead columns at 0).
    for (let b = 0; b < nb; b++) chooseBlock(b, (r, c) => (dead[b * bs + c] ? 0 : values[r * cols + b * bs + c]!));
  }
  // 4. Columns in order, lazy batches of B. `loss` sums the squared scaled errors e, which add up
  //    to the output error under the dampened Hessian (see below).
  const B = Math.max(opts.lazyBatch, bs);
  let loss = 0;
  const err = new Float64Array(rows * B);
  for (let i1 = 0; i1 < n; i1 += B) {
    const i2 = Math.min(n, i1 + B);
    const width = i2 - i1;
    for (let p = i1; p < i2; p++) {
      const j = perm[p]!;
      if (!opts.actOrder && j % bs === 0) {
        // Identity order: the block's columns are p .. p + len - 1, all inside this batch.
        chooseBlock(j / bs, (r, c) => fround(W[r * n + p + c]!));
      }
      const bIdx = Math.floor(j / bs);
      const d = U[p * n + p]!;
      const urow = p * n;
      for (let r = 0; r < rows; r++) {
        const bi = r * nb + bIdx;
        const s = scales[bi]!;
        const inv = scaleInverse(s);
        const wrow = r * n;
        const w = W[wrow + p]!;
        const v = fround(w);
        let q: number;
        let deq: number;
        if (isInt) {
          const z = zeroPoints ? zeroPoints[bi]! : mid;
          q = intCode(v, inv, z, maxq);
          deq = fround((q - z) * s);
        } else {
          q = nearestNf4(fround(v * inv));
          deq = fround(NF4_CODE_BOOK[q]! * s);
        }
        codes[r * cols + j] = q;
        dequantized[r * cols + j] = deq;
        const e = (w - deq) / d;
        err[r * B + (p - i1)] = e;
        loss += e * e;
        for (let t = p + 1; t < i2; t++) W[wrow + t]! -= e * U[urow + t]!;
      }
    }
    // The batch's errors onto every later column: W[:, i2:] -= Err U[i1:i2, i2:]. Four rows at a
    // time, so each row of U is read once per four rows of W; every W[r][t] still subtracts its
    // terms in order of s, so the result is the same as row by row.
    if (i2 < n) {
      let r = 0;
      for (; r + 4 <= rows; r += 4) {
        const w0 = r * n;
        const w1 = w0 + n;
        const w2 = w1 + n;
        const w3 = w2 + n;
        for (let s = 0; s < width; s++) {
          const e0 = err[r * B + s]!;
          const e1 = err[(r + 1) * B + s]!;
          const e2 = err[(r + 2) * B + s]!;
          const e3 = err[(r + 3) * B + s]!;
          const urow = (i1 + s) * n;
          if (e0 !== 0 && e1 !== 0 && e2 !== 0 && e3 !== 0) {
            for (let t = i2; t < n; t++) {
              const u = U[urow + t]!;
              W[w0 + t]! -= e0 * u;
              W[w1 + t]! -= e1 * u;
              W[w2 + t]! -= e2 * u;
              W[w3 + t]! -= e3 * u;
            }
          } else {
            // A zero error leaves its row untouched (as the row-by-row loop skips it: x - 0 * u
            // could turn -0 into +0 or an infinite u into NaN).
            if (e0 !== 0) for (let t = i2; t < n; t++) W[w0 + t]! -= e0 * U[urow + t]!;
            if (e1 !== 0) for (let t = i2; t < n; t++) W[w1 + t]! -= e1 * U[urow + t]!;
            if (e2 !== 0) for (let t = i2; t < n; t++) W[w2 + t]! -= e2 * U[urow + t]!;
            if (e3 !== 0) for (let t = i2; t < n; t++) W[w3 + t]! -= e3 * U[urow + t]!;
          }
        }
      }
      for (; r < rows; r++) {
        const wrow = r * n;
        for (let s = 0; s < width; s++) {
          const e = err[r * B + s]!;
          if (e === 0) continue;
          const urow = (i1 + s) * n;
          for (let t = i2; t < n; t++) W[wrow + t]! -= e * U[urow + t]!;
        }
      }
    }
  }

  // 5. Error statistics against the original weights.
  let sse = 0;
  let maxAbs = 0;
  let sumSquares = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const e = v - dequantized[i]!;
    sse += e * e;
    sumSquares += v * v;
    if (Math.abs(e) > maxAbs) maxAbs = Math.abs(e);
  }
  // The output error tr(D^T H D) from what GPTQ computed anyway, instead of another pass of
  // rows x cols^2: each column's step adds e^2 = (w - q)^2 / [H_F^-1]_pp to the error under the
  // dampened Hessian H' (Frantar et al., eq. 3), so the e^2 sum to D'^T H' D' for D' = (working
  // weights before any update) - dequantized. H' is H plus damp on the diagonal, plus 1 on dead
  // columns (where H is 0 and the working weight is 0), so tr(D^T H D) = sum e^2 - damp |D'|^2 -
  // |D' on dead columns|^2 (the live columns of D' are those of D).
  let dampTerm = 0;
  let deadTerm = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const dd = dead[c] ? -dequantized[r * cols + c]! : values[r * cols + c]! - dequantized[r * cols + c]!;
      dampTerm += dd * dd;
      if (dead[c]) deadTerm += dd * dd;
    }
  }
  const stats: ErrorStats = { count: rows * cols, sse, maxAbs, sumSquares, outputSse: Math.max(0, loss - dampUsed * dampTerm - deadTerm) };
  return quantizedRows(config, rows, cols, { codes, scales, zeroPoints, scaleCodes, scaleGroupScales }, stats);
}
