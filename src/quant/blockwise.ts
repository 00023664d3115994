/**
 * Blocked weight quantization: the math, on plain typed arrays (no IR), so it runs the same in the
 * main thread and in worker threads.
 *
 * A weight is seen as `rows` rows of `cols` values; each row is cut into blocks of `blockSize`
 * consecutive values along `cols` (the last block may be shorter) and every block gets its own
 * scale (and, asymmetric, zero point). For a MatMul weight W[K, N] the rows are the N output
 * columns and `cols` is K, the reduction axis — the layout MatMulNBits stores.
 *
 * Integer formats (4 or 8 bits) store unsigned codes q in [0, 2^bits - 1] and dequantize as
 * (q - z) * s in float32, exactly as onnxruntime's MatMulNBits and ONNX DequantizeLinear do:
 *  - asymmetric: the block range [min(lo, 0), max(hi, 0)] is mapped onto [0, 2^bits - 1],
 *    s = (hi - lo) / (2^bits - 1), z = round(-lo / s);
 *  - symmetric: z = 2^(bits-1) (implied, not stored) and s = m / -2^(bits-1), where m is the
 *    block value of largest magnitude, so m lands on the most negative code and all 2^bits codes
 *    are used (onnxruntime's convention).
 * NF4 stores indices into the NF4 code book and dequantizes as code[q] * s (s = block absmax).
 *
 * Methods:
 *  - `rtn`: the formulas above, rounding to nearest. Arithmetic is float32 step by step
 *    (Math.fround), codes are round-half-away-from-zero of w * (1/s) + z, as onnxruntime's
 *    quantizer (MLAS BlockwiseQuantizer, `range2scale`/`range2scalezp`) computes them.
 *  - `mse`: per block, a search over clipped ranges: the range is shrunk by factors from 1 down to
 *    `mseMinShrink` (`mseGrid` steps; symmetric also tries mapping m onto +(2^(bits-1) - 1)), and
 *    the candidate with the least squared reconstruction error of the block wins; then a
 *    least-squares refit of the scale (and zero point) for the chosen codes is tried. The RTN
 *    parameters are always a candidate and a candidate only wins by being strictly better, so the
 *    error of `mse` is never above `rtn` (for integer formats, block by block).
 * Every candidate is scored with the scale as it will be stored (rounded to float16 when
 * `scaleDtype` is float16), so the reported error is the error of the artifact.
 *
 * NF4 with `doubleQuant`: the block scales are themselves quantized to uint8 in groups of 256
 * (256 consecutive rows of one block column), each group with one float32 scale (zero point 0:
 * scales are non-negative), as QLoRA's double quantization saves memory; the codes are then
 * chosen against the scales as stored.
 */
import { float16BitsToFloat32, float32ToFloat16Bits } from '../ir/dtype.js';
import { NF4_CODE_BOOK, nearestNf4 } from './nf4.js';
import { CAND_AT, LOHI_AT, MAX_CANDIDATES, MOMENTS_AT, quantSimd, ROW_PARAMS_AT, SCORE_AT, SIMD_DATA_AT, SIMD_TILE_ROWS, type QuantSimd } from './quant-simd.js';

export type QuantMethod = 'rtn' | 'mse';
export type QuantFormat = 'int' | 'nf4';
export type ScaleDtype = 'float32' | 'float16';

export interface QuantConfig {
  format: QuantFormat;
  /** Bits per code: 4 or 8 for `int`; always 4 for `nf4`. */
  bits: 4 | 8;
  blockSize: number;
  /** `int` only: no zero points (z = 2^(bits-1) implied). */
  symmetric: boolean;
  method: QuantMethod;
  scaleDtype: ScaleDtype;
  /** `mse`: number of shrink factors tried, from 1 down to `mseMinShrink`. */
  mseGrid: number;
  mseMinShrink: number;
  /** `nf4`: double-quantize the block scales (uint8, one float32 scale per 256). */
  doubleQuant: boolean;
}

// 12 shrink factors from 1 down to 0.7 find the same optimum as 20 or 40 down to 0.5 on gaussian,
// laplace, student-t and uniform weights (int4/int8, blocks 32..256), in 60% of the time.
export const DEFAULT_MSE_GRID = 12;
export const DEFAULT_MSE_MIN_SHRINK = 0.7;
/** Block scales per float32 scale in NF4 double quantization. */
export const DOUBLE_QUANT_GROUP = 256;

export function defaultQuantConfig(overrides: Partial<QuantConfig> = {}): QuantConfig {
  return {
    format: 'int',
    bits: 4,
    blockSize: 32,
    symmetric: false,
    method: 'mse',
    scaleDtype: 'float32',
    mseGrid: DEFAULT_MSE_GRID,
    mseMinShrink: DEFAULT_MSE_MIN_SHRINK,
    doubleQuant: true,
    ...overrides,
  };
}

export interface ErrorStats {
  /** Elements quantized. */
  count: number;
  /** Sum of squared reconstruction errors (w - dequantized w)^2. */
  sse: number;
  /** Largest |w - dequantized w|. */
  maxAbs: number;
  /** Sum of w^2 (for relative error). */
  sumSquares: number;
  /** `mse` on integer formats: the sse round-to-nearest would have had. */
  rtnSse?: number;
  /**
   * With calibration data (a Hessian H = X^T X of the layer's input): the output error
   * sum over rows of dw^T H dw (= ||X W - X W_q||_F^2) ...
   */
  outputSse?: number;
  /** ... and sum over rows of w^T H w (= ||X W||_F^2), for the relative figure. */
  outputNorm?: number;
  /** GPTQ: the output error rounding to nearest with the same scale search would have left. */
  nearestOutputSse?: number;
}

export interface QuantizedRows {
  rows: number;
  cols: number;
  blockSize: number;
  /** Blocks per row: ceil(cols / blockSize). */
  blocks: number;
  format: QuantFormat;
  bits: 4 | 8;
  symmetric: boolean;
  scaleDtype: ScaleDtype;
  /** [rows, cols]: unsigned codes (int: zero point included; nf4: code-book index). */
  codes: Uint8Array;
  /** [rows, blocks]: the scales exactly as stored (float16-representable when scaleDtype is float16). */
  scales: Float32Array;
  /** [rows, blocks]: zero points, or null when symmetric / nf4 (int: 2^(bits-1) implied). */
  zeroPoints: Uint8Array | null;
  /** NF4 double quantization: [rows, blocks] uint8 codes of the scales ... */
  scaleCodes?: Uint8Array;
  /** ... and [ceil(rows / 256), blocks] float32 scales of those codes; scales = scaleCodes * these. */
  scaleGroupScales?: Float32Array;
  stats: ErrorStats;
}

const fround = Math.fround;
const FLOAT16_MAX = 65504;

/** Round half away from zero (C's roundf), on values that are already float32. */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

// Codes are clamped to [0, maxq] right after rounding, and every x < 0 ends at 0 whichever way
// it rounds, so the hot loops round as trunc(x + 0.5) after clamping in floating point: for
// x >= 0 that is rounding half away from zero (x + 0.5 is exact: x is a float32).

/** A scale as it will be stored: float32, or float16 (kept finite). */
export function storedScale(s: number, dtype: ScaleDtype): number {
  const r = dtype === 'float32' ? fround(s) : float16BitsToFloat32(float32ToFloat16Bits(Math.max(-FLOAT16_MAX, Math.min(FLOAT16_MAX, s))));
  return r === 0 ? 0 : r; // no -0 scales
}

export function validateQuantConfig(c: QuantConfig): void {
  if (c.format === 'nf4' && c.bits !== 4) throw new RangeError('nf4 codes are 4 bits');
  if (c.bits !== 4 && c.bits !== 8) throw new RangeError(`bits must be 4 or 8 (got ${c.bits})`);
  if (!Number.isInteger(c.blockSize) || c.blockSize < 2) throw new RangeError(`block size must be an integer >= 2 (got ${c.blockSize})`);
  if (!(Number.isInteger(c.mseGrid) && c.mseGrid >= 1)) throw new RangeError(`mse grid must be a positive integer (got ${c.mseGrid})`);
  if (!(c.mseMinShrink > 0 && c.mseMinShrink <= 1)) throw new RangeError(`mse minimum shrink must be in (0, 1] (got ${c.mseMinShrink})`);
}

// ---------------------------------------------------------------------------------------------
// Integer blocks.

/**
 * Squared error of one block quantized with scale s and zero point z (codes clamped to [0, maxq]);
 * stops early, returning a value >= bound, once the error reaches `bound`.
 *
 * `v1`, `v2` are the values of the block's smallest and largest elements (NaN: none), scored
 * first: a shrunk range clips them, so their error alone often rules a candidate out. That is
 * exact: the error terms are non-negative and float64 rounding is monotone, so the sum of two of
 * the block's terms (in either order: a sum of two is commutative) never exceeds the block's sum
 * in index order, which contains them; a candidate whose two terms reach `bound` could not have
 * been strictly better. (When v1 === v2 one term is used: they may be the same element.)
 */
function intBlockSse(x: Float32Array, start: number, end: number, s: number, z: number, maxq: number, bound: number, v1: number, v2: number): number {
  const inv = s !== 0 ? fround(1 / s) : 0;
  if (bound !== Infinity) {
    const y1 = fround(fround(v1 * inv) + z) + 0.5;
    const e1 = v1 - fround(((y1 <= 0 ? 0 : y1 >= maxq ? maxq : y1 | 0) - z) * s);
    let pre = e1 * e1;
    if (v2 !== v1) {
      const y2 = fround(fround(v2 * inv) + z) + 0.5;
      const e2 = v2 - fround(((y2 <= 0 ? 0 : y2 >= maxq ? maxq : y2 | 0) - z) * s);
      pre += e2 * e2;
    }
    if (pre >= bound) return pre;
  }
  let i = start;
  let sse = 0;
  if (x === simdX) {
    // The whole groups of four in the kernel (same sum, same order), the rest below.
    const groups = (end - start) >> 2;
    if (groups > 0) {
      sse = simdK!.sse(simdBase + start * 4, groups, inv, z, s, maxq, bound);
      if (sse >= bound) return sse;
      i += groups * 4;
    }
  }
  for (; i < end; i++) {
    const v = x[i]!;
    const y = fround(fround(v * inv) + z) + 0.5;
    const q = y <= 0 ? 0 : y >= maxq ? maxq : y | 0;
    const e = v - fround((q - z) * s);
    sse += e * e;
    if (sse >= bound) return sse;
  }
  return sse;
}

/** Asymmetric scale and zero point for the range [lo, hi] (widened to include 0). */
function asymmetricParams(lo: number, hi: number, maxq: number, dtype: ScaleDtype, out: Float64Array): void {
  lo = Math.min(lo, 0);
  hi = Math.max(hi, 0);
  const s = storedScale(fround(fround(hi - lo) / maxq), dtype);
  const zf = s !== 0 ? fround(-lo / s) : 0;
  out[0] = s;
  out[1] = zf < 0 ? 0 : zf > maxq ? maxq : roundHalfAway(zf);
}

/**
 * Least-squares refit of (s, z) for the codes that (s, z) produce: v ~ s * (q - z). Symmetric keeps
 * z; asymmetric fits v ~ a * q + b, takes z = round(-b / a), then refits s for that z. Writes the
 * new (s, z) into `out`; returns false when the block gives no usable fit.
 */
function refitInt(x: Float32Array, start: number, end: number, s: number, z: number, maxq: number, symmetric: boolean, dtype: ScaleDtype, out: Float64Array): boolean {
  const inv = s !== 0 ? fround(1 / s) : 0;
  let sq = 0;
  let sqq = 0;
  let sv = 0;
  let svq = 0;
  const n = end - start;
  let i = start;
  if (x === simdX) {
    // Whole groups of four in the kernel: the same integer sums, and the float sums in index order.
    const groups = n >> 2;
    if (groups > 0) {
      simdK!.moments(simdBase + start * 4, groups, inv, z, s, maxq);
      const qs = simdMomentsI!;
      sq = qs[0]! + qs[1]! + qs[2]! + qs[3]!;
      sqq = qs[4]! + qs[5]! + qs[6]! + qs[7]!;
      sv = simdMomentsF![0]!;
      svq = simdMomentsF![1]!;
      i += groups * 4;
    }
  }
  for (; i < end; i++) {
    const v = x[i]!;
    const y = fround(fround(v * inv) + z) + 0.5;
    const q = y <= 0 ? 0 : y >= maxq ? maxq : y | 0;
    sq += q;
    sqq += q * q;
    sv += v;
    svq += v * q;
  }
  let zNew = z;
  if (!symmetric) {
    const den = n * sqq - sq * sq;
    if (!(den > 0)) return false;
    const a = (n * svq - sq * sv) / den;
    const b = (sv - a * sq) / n;
    if (!(Math.abs(a) > 0) || !Number.isFinite(a)) return false;
    const zf = -b / a;
    zNew = zf < 0 ? 0 : zf > maxq ? maxq : roundHalfAway(zf);
  }
  // Sum over (q - z) and (q - z)^2 for the chosen z, from the moments.
  const num = svq - zNew * sv;
  const den = sqq - 2 * zNew * sq + n * zNew * zNew;
  if (!(den > 0)) return false;
  const sNew = storedScale(num / den, dtype);
  if (!Number.isFinite(sNew) || sNew === 0) return false;
  out[0] = sNew;
  out[1] = zNew;
  return true;
}

/**
 * Chooses (s, z) for one integer block; returns the RTN sse (the first candidate). Writes the
 * winner into `best` as [s, z, sse].
 */
function chooseIntBlock(x: Float32Array, start: number, end: number, c: QuantConfig, best: Float64Array, tmp: Float64Array, knownLo = NaN, knownHi = NaN): number {
  const maxq = (1 << c.bits) - 1;
  const mid = 1 << (c.bits - 1);
  // The block's range, unless the caller has it already (the SIMD gather finds it: the same values;
  // only where a block holds both -0 and +0 can the sign of a zero extreme differ, and a zero lo or
  // hi gives the same parameters and errors either way).
  let lo = knownLo;
  let hi = knownHi;
  if (!(lo <= hi)) {
    lo = Infinity;
    hi = -Infinity;
    for (let i = start; i < end; i++) {
      const v = x[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  // The value of largest magnitude, sign kept (onnxruntime: |max| > |min| ? max : min).
  const m = Math.abs(hi) > Math.abs(lo) ? hi : lo;
  // RTN.
  if (c.symmetric) {
    best[0] = storedScale(fround(m / -mid), c.scaleDtype);
    best[1] = mid;
  } else {
    asymmetricParams(lo, hi, maxq, c.scaleDtype, tmp);
    best[0] = tmp[0]!;
    best[1] = tmp[1]!;
  }
  if (c.method === 'rtn') return NaN; // no search: the error is measured once, when codes are written
  best[2] = intBlockSse(x, start, end, best[0]!, best[1]!, maxq, Infinity, NaN, NaN);
  const rtnSse = best[2]!;
  if (best[2] === 0) return rtnSse;

  const steps = c.mseGrid;
  if (x === simdX && (end - start) % 4 === 0 && 2 * steps <= MAX_CANDIDATES) {
    // The same candidates in the same order, scored by the kernel in one call (see quant-simd.ts).
    const cand = simdCand!;
    let n = 0;
    const add = (sc: number, z: number) => {
      cand[3 * n] = sc !== 0 ? fround(1 / sc) : 0;
      cand[3 * n + 1] = z;
      cand[3 * n + 2] = sc;
      n++;
    };
    for (let i = 1 - (c.symmetric ? 1 : 0); i < steps; i++) {
      const alpha = steps === 1 ? 1 : 1 - (i * (1 - c.mseMinShrink)) / (steps - 1);
      if (c.symmetric) {
        const ma = fround(alpha * m);
        if (i > 0) add(storedScale(fround(ma / -mid), c.scaleDtype), mid);
        add(storedScale(fround(ma / (mid - 1)), c.scaleDtype), mid);
      } else {
        asymmetricParams(fround(alpha * lo), fround(alpha * hi), maxq, c.scaleDtype, tmp);
        add(tmp[0]!, tmp[1]!);
      }
    }
    const won = simdK!.score(simdBase + start * 4, (end - start) >> 2, CAND_AT, n, maxq, best[2]!);
    if (won > 0) {
      best[0] = cand[3 * (won - 1) + 2]!;
      best[1] = cand[3 * (won - 1) + 1]!;
      best[2] = simdScore![0]!;
    }
  } else {
    for (let i = 0; i < steps; i++) {
      const alpha = steps === 1 ? 1 : 1 - (i * (1 - c.mseMinShrink)) / (steps - 1);
      if (c.symmetric) {
        const ma = fround(alpha * m);
        if (i > 0) considerInt(x, start, end, storedScale(fround(ma / -mid), c.scaleDtype), mid, maxq, best, lo, hi);
        considerInt(x, start, end, storedScale(fround(ma / (mid - 1)), c.scaleDtype), mid, maxq, best, lo, hi);
      } else if (i > 0) {
        asymmetricParams(fround(alpha * lo), fround(alpha * hi), maxq, c.scaleDtype, tmp);
        considerInt(x, start, end, tmp[0]!, tmp[1]!, maxq, best, lo, hi);
      }
    }
  }
  // Least-squares refit for the winning codes (twice: the codes move with the scale).
  for (let round = 0; round < 2; round++) {
    if (!refitInt(x, start, end, best[0]!, best[1]!, maxq, c.symmetric, c.scaleDtype, tmp)) break;
    if (!considerInt(x, start, end, tmp[0]!, tmp[1]!, maxq, best, lo, hi)) break;
  }
  return rtnSse;
}

/** Scores (s, z); takes it into `best` when strictly better. */
function considerInt(x: Float32Array, start: number, end: number, s: number, z: number, maxq: number, best: Float64Array, v1: number, v2: number): boolean {
  const sse = intBlockSse(x, start, end, s, z, maxq, best[2]!, v1, v2);
  if (!(sse < best[2]!)) return false;
  best[0] = s;
  best[1] = z;
  best[2] = sse;
  return true;
}

// ---------------------------------------------------------------------------------------------
// NF4 blocks.

function nf4BlockSse(x: Float32Array, start: number, end: number, s: number, bound: number): number {
  const inv = s !== 0 ? fround(1 / s) : 0;
  let sse = 0;
  for (let i = start; i < end; i++) {
    const v = x[i]!;
    const e = v - fround(NF4_CODE_BOOK[nearestNf4(fround(v * inv))]! * s);
    sse += e * e;
    if (sse >= bound) return sse;
  }
  return sse;
}

function considerNf4(x: Float32Array, start: number, end: number, s: number, best: Float64Array): boolean {
  const sse = nf4BlockSse(x, start, end, s, best[2]!);
  if (!(sse < best[2]!)) return false;
  best[0] = s;
  best[2] = sse;
  return true;
}

/** Chooses the scale of one NF4 block (absmax, or a searched clip of it); writes [s, 0, sse] into `best`. */
function chooseNf4Block(x: Float32Array, start: number, end: number, c: QuantConfig, best: Float64Array): number {
  let absmax = 0;
  for (let i = start; i < end; i++) absmax = Math.max(absmax, Math.abs(x[i]!));
  best[0] = storedScale(absmax, c.scaleDtype);
  best[1] = 0;
  if (c.method === 'rtn') return NaN;
  best[2] = nf4BlockSse(x, start, end, best[0]!, Infinity);
  const rtnSse = best[2]!;
  if (best[2] === 0) return rtnSse;
  const steps = c.mseGrid;
  for (let i = 1; i < steps; i++) considerNf4(x, start, end, storedScale(fround(absmax * (1 - (i * (1 - c.mseMinShrink)) / (steps - 1))), c.scaleDtype), best);
  for (let round = 0; round < 2; round++) {
    // Least squares for fixed codes: s = sum(v c) / sum(c^2).
    const s = best[0]!;
    const inv = s !== 0 ? fround(1 / s) : 0;
    let num = 0;
    let den = 0;
    for (let i = start; i < end; i++) {
      const v = x[i]!;
      const code = NF4_CODE_BOOK[nearestNf4(fround(v * inv))]!;
      num += v * code;
      den += code * code;
    }
    if (!(den > 0) || !(num > 0)) break;
    if (!considerNf4(x, start, end, storedScale(num / den, c.scaleDtype), best)) break;
  }
  return rtnSse;
}

// ---------------------------------------------------------------------------------------------
// Single blocks and single values, for callers that choose block parameters themselves as they
// go (GPTQ picks a block's scale from the weights as updated so far).

/**
 * Chooses the parameters of one block x[start, end) with the configured method (rtn or the mse
 * search); writes [scale, zero point (int asymmetric; 2^(bits-1) symmetric; 0 nf4)] into `out`.
 * `tmp` is scratch of length >= 3.
 */
export function chooseBlockParams(x: Float32Array, start: number, end: number, config: QuantConfig, out: Float64Array, tmp: Float64Array): void {
  if (config.format === 'int') chooseIntBlock(x, start, end, config, out, tmp);
  else chooseNf4Block(x, start, end, config, out);
}

/** Integer code of a float32 value v given 1/s (float32), the zero point and 2^bits - 1: the quantizer's exact rounding. */
export function intCode(v: number, inv: number, z: number, maxq: number): number {
  const y = fround(fround(v * inv) + z) + 0.5;
  return y <= 0 ? 0 : y >= maxq ? maxq : y | 0;
}

/** The reciprocal of a stored scale as the quantizer uses it (0 for a zero scale). */
export function scaleInverse(s: number): number {
  return s !== 0 ? fround(1 / s) : 0;
}

// ---------------------------------------------------------------------------------------------

/**
 * Only finite weights can be quantized: one pass that the JIT keeps tight (v - v is NaN for NaN
 * and infinities); the message names the element in [rows, cols] order.
 */
function assertFinite(values: Float32Array, rows: number, cols: number, transposed: boolean): void {
  let check = 0;
  for (let i = 0; i < values.length; i++) check += values[i]! - values[i]!;
  if (check !== 0) {
    const i = values.findIndex((v) => !Number.isFinite(v));
    const at = transposed ? (i % rows) * cols + Math.floor(i / rows) : i;
    throw new RangeError(`weight element ${at} is ${values[i]} (only finite weights can be quantized)`);
  }
}

/**
 * A buffer of `length` bytes where quantizeRows finds integer-format float32 weights without
 * copying them (the SIMD kernels' memory), or null without the kernels. Valid until the next
 * quantizeRows in this thread, which may grow that memory and so detach views made before.
 */
export function quantInputBuffer(length: number): Uint8Array | null {
  const k = length / 4 <= SIMD_MAX_CODES ? quantSimd() : null;
  if (!k) return null;
  k.reserve(SIMD_DATA_AT + length);
  return new Uint8Array(k.memory.buffer, SIMD_DATA_AT, length);
}

/** Rows of a transposed source gathered into one tile: 64 rows x a block is at most 64 KiB (block 256). */
const ROW_TILE = 64;
/** Larger jobs than this (codes in bytes) run the JavaScript loops rather than grow the kernels' memory further. */
const SIMD_MAX_CODES = 1 << 30;

// The kernels while quantizeIntRows runs: intBlockSse hands blocks of `simdX` (the tile, a view of
// the kernels' memory at byte `simdBase`) to them.
let simdK: QuantSimd | null = null;
let simdX: Float32Array | null = null;
let simdBase = 0;
/** The score kernel's candidates (inv, z, s) and its result, views of the kernels' memory. */
let simdCand: Float32Array | null = null;
let simdScore: Float64Array | null = null;
/** The moments kernel's sums: int32 lanes of sum q and sum q^2, then float64 sum v and sum v q. */
let simdMomentsI: Int32Array | null = null;
let simdMomentsF: Float64Array | null = null;

/**
 * Quantizes `values` ([rows, cols], row-major, float32) block by block along `cols`. With
 * `transposed`, `values` is stored [cols, rows] (a MatMul weight W[K, N], quantized along K) and is
 * read in place, a tile of rows at a time, instead of being transposed first.
 * Throws a RangeError on non-finite weights.
 */
export function quantizeRows(values: Float32Array, rows: number, cols: number, config: QuantConfig, transposed = false): QuantizedRows {
  validateQuantConfig(config);
  if (values.length !== rows * cols) throw new RangeError(`expected ${rows} x ${cols} values, got ${values.length}`);
  const bs = config.blockSize;
  const nb = Math.ceil(cols / bs);
  const isInt = config.format === 'int';
  // The SIMD gather checks the values it moves; everything else checks first.
  if (!(isInt && transposed && rows * cols <= SIMD_MAX_CODES && quantSimd())) assertFinite(values, rows, cols, transposed);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * nb);
  const zeroPoints = isInt && !config.symmetric ? new Uint8Array(rows * nb) : null;
  // [sse, maxAbs, sumSquares, rtnSse]
  const acc = new Float64Array(4);
  let scaleCodes: Uint8Array | undefined;
  let scaleGroupScales: Float32Array | undefined;
  if (isInt) quantizeIntRows(values, rows, cols, transposed, config, codes, scales, zeroPoints, acc);
  else {
    // NF4 codes depend on the double-quantized scales of 256 rows at once, so its two phases stay
    // apart (and it is the rare case: transposing first is fine).
    ({ scaleCodes, scaleGroupScales } = quantizeNf4Rows(transposed ? transposeFloats(values, cols, rows) : values, rows, cols, config, codes, scales, acc));
  }
  const stats: ErrorStats = { count: rows * cols, sse: acc[0]!, maxAbs: acc[1]!, sumSquares: acc[2]! };
  if (config.method === 'mse' && isInt) stats.rtnSse = acc[3]!;
  return quantizedRows(config, rows, cols, { codes, scales, zeroPoints, scaleCodes, scaleGroupScales }, stats);
}

/** The QuantizedRows record for `rows` x `cols` values quantized with `config` (any method). */
export function quantizedRows(
  config: QuantConfig,
  rows: number,
  cols: number,
  q: { codes: Uint8Array; scales: Float32Array; zeroPoints: QuantizedRows['zeroPoints']; scaleCodes?: Uint8Array | undefined; scaleGroupScales?: Float32Array | undefined },
  stats: ErrorStats,
): QuantizedRows {
  const isInt = config.format === 'int';
  return {
    rows,
    cols,
    blockSize: config.blockSize,
    blocks: Math.ceil(cols / config.blockSize),
    format: config.format,
    bits: config.bits,
    symmetric: isInt ? config.symmetric : true,
    scaleDtype: config.scaleDtype,
    codes: q.codes,
    scales: q.scales,
    zeroPoints: q.zeroPoints,
    ...(q.scaleCodes ? { scaleCodes: q.scaleCodes, scaleGroupScales: q.scaleGroupScales } : {}),
    stats,
  };
}

/**
 * Integer codes, one pass per block: a block's parameters depend on that block alone, so they are
 * chosen and its codes written while its values are in L1. A transposed source is gathered
 * ROW_TILE rows x one block at a time (contiguous reads of ROW_TILE floats per k), so no
 * transposed copy of the weight is ever made. With the WebAssembly kernels (quant-simd.ts) the
 * tile and the codes live in the kernels' memory, and the codes and mse scoring run there, four
 * values at a time. Accumulates [sse, maxAbs, sumSquares, rtnSse] into `acc` (summed in tile and
 * lane order: the same codes and scales as row order; the sums may differ in the last bits).
 */
function quantizeIntRows(
  values: Float32Array,
  rows: number,
  cols: number,
  transposed: boolean,
  config: QuantConfig,
  codes: Uint8Array,
  scales: Float32Array,
  zeroPoints: Uint8Array | null,
  acc: Float64Array,
): void {
  const bs = config.blockSize;
  const nb = Math.ceil(cols / bs);
  const maxq = (1 << config.bits) - 1;
  const mid = 1 << (config.bits - 1);
  const mse = config.method === 'mse';
  const best = new Float64Array(3);
  const tmp = new Float64Array(2);
  const n = rows * cols;
  const tileRows = transposed ? ROW_TILE : 1;
  const k = n <= SIMD_MAX_CODES ? quantSimd() : null;
  // Memory (kernels): [fixed part][source, n floats][tile, ROW_TILE x bs floats][codes, n bytes].
  // A source already at SIMD_DATA_AT (task.ts reads it there) is used in place.
  let src = values;
  let rowParams: Float32Array | null = null; // codesRows' (inv, z, s) per tile row
  let tile: Float32Array;
  let out = codes;
  let lohi: Float32Array | null = null;
  let tileAt = 0;
  let codesAt = 0;
  if (k) {
    const inPlace = values.buffer === k.memory.buffer && values.byteOffset === SIMD_DATA_AT;
    tileAt = SIMD_DATA_AT + n * 4;
    codesAt = tileAt + (transposed ? ROW_TILE * bs * 4 : 0);
    k.reserve(codesAt + n);
    const mem = k.memory.buffer; // after any growth (which detaches older views)
    src = new Float32Array(mem, SIMD_DATA_AT, n);
    if (!inPlace) src.set(values);
    new Float64Array(mem, 0, 8).fill(0);
    lohi = new Float32Array(mem, LOHI_AT, 2 * SIMD_TILE_ROWS);
    tile = transposed ? new Float32Array(mem, tileAt, ROW_TILE * bs) : src;
    out = new Uint8Array(mem, codesAt, n);
    simdK = k;
    simdX = tile;
    simdCand = new Float32Array(mem, CAND_AT, 3 * MAX_CANDIDATES);
    simdScore = new Float64Array(mem, SCORE_AT, 1);
    simdMomentsI = new Int32Array(mem, MOMENTS_AT, 8);
    simdMomentsF = new Float64Array(mem, MOMENTS_AT + 32, 2);
    rowParams = new Float32Array(mem, ROW_PARAMS_AT, 3 * SIMD_TILE_ROWS);
    simdBase = transposed ? tileAt : SIMD_DATA_AT;
  } else tile = transposed ? new Float32Array(ROW_TILE * bs) : values;
  let sse = 0;
  let maxAbs = 0;
  let sumSquares = 0;
  let rtnSse = 0;
  let check = 0;
  try {
    for (let r0 = 0; r0 < rows; r0 += tileRows) {
      const tr = Math.min(tileRows, rows - r0);
      // Rows gathered (and their ranges found) by the kernel: whole groups of four.
      const simdRows = k && transposed ? tr & ~3 : 0;
      for (let b = 0; b < nb; b++) {
        const c0 = b * bs;
        const len = Math.min(bs, cols - c0);
        if (transposed) {
          // tile[j * bs + k] = W[c0 + k][r0 + j].
          if (simdRows > 0) k!.gather(SIMD_DATA_AT + (c0 * rows + r0) * 4, rows * 4, simdRows >> 2, len, tileAt, bs * 4, LOHI_AT);
          for (let kk = 0; kk < len; kk++) {
            const from = (c0 + kk) * rows + r0;
            for (let j = simdRows, t = simdRows * bs + kk; j < tr; j++, t += bs) {
              const v = src[from + j]!;
              check += v - v;
              tile[t] = v;
            }
          }
        }
        for (let j = 0; j < tr; j++) {
          const r = r0 + j;
          const start = transposed ? j * bs : r * cols + c0;
          const end = start + len;
          const rtn = j < simdRows ? chooseIntBlock(tile, start, end, config, best, tmp, lohi![j]!, lohi![SIMD_TILE_ROWS + j]!) : chooseIntBlock(tile, start, end, config, best, tmp);
          if (mse) rtnSse += rtn;
          const s = best[0]!;
          const z = zeroPoints ? best[1]! : mid;
          scales[r * nb + b] = s;
          if (zeroPoints) zeroPoints[r * nb + b] = z;
          const inv = s !== 0 ? fround(1 / s) : 0;
          let o = r * cols + c0;
          let i = start;
          if (k) {
            // Whole groups of four by the kernel: a tile's rows in one call after this loop
            // (calls into WebAssembly cost more than a block's arithmetic), a row's in one here.
            const groups = len >> 2;
            if (groups > 0 && transposed) {
              rowParams![3 * j] = inv;
              rowParams![3 * j + 1] = z;
              rowParams![3 * j + 2] = s;
            } else if (groups > 0) k.codes(simdBase + start * 4, groups, inv, z, s, maxq, codesAt + o);
            i += groups * 4;
            o += groups * 4;
          }
          for (; i < end; i++, o++) {
            const v = tile[i]!;
            const y = fround(fround(v * inv) + z) + 0.5;
            const q = y <= 0 ? 0 : y >= maxq ? maxq : y | 0;
            out[o] = q;
            const e = v - fround((q - z) * s);
            sse += e * e;
            sumSquares += v * v;
            const a = e < 0 ? -e : e;
            if (a > maxAbs) maxAbs = a;
          }
        }
        if (k && transposed && len >= 4) k.codesRows(tileAt, tr, len >> 2, bs * 4, ROW_PARAMS_AT, maxq, codesAt + r0 * cols + c0, cols);
      }
    }
    if (k) {
      const stats = new Float64Array(k.memory.buffer, 0, 6);
      const chk = new Float32Array(k.memory.buffer, 48, 4);
      check += chk[0]! + chk[1]! + chk[2]! + chk[3]!;
      if (check !== 0) assertFinite(src, rows, cols, transposed);
      codes.set(out);
      sse += stats[0]! + stats[1]!;
      sumSquares += stats[2]! + stats[3]!;
      maxAbs = Math.max(maxAbs, stats[4]!, stats[5]!);
    }
  } finally {
    simdK = null;
    simdX = null;
    simdCand = null;
    simdScore = null;
    simdMomentsI = null;
    simdMomentsF = null;
  }
  acc[0] = sse;
  acc[1] = maxAbs;
  acc[2] = sumSquares;
  acc[3] = rtnSse;
}

/** NF4: every block's scale, the double quantization of the scales, then the codes against them. */
function quantizeNf4Rows(
  values: Float32Array,
  rows: number,
  cols: number,
  config: QuantConfig,
  codes: Uint8Array,
  scales: Float32Array,
  acc: Float64Array,
): { scaleCodes?: Uint8Array; scaleGroupScales?: Float32Array } {
  const bs = config.blockSize;
  const nb = Math.ceil(cols / bs);
  const best = new Float64Array(3);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const start = r * cols + b * bs;
      const end = r * cols + Math.min(cols, (b + 1) * bs);
      chooseNf4Block(values, start, end, config, best);
      scales[r * nb + b] = best[0]!;
    }
  }
  const dq = config.doubleQuant ? doubleQuantizeScales(scales, rows, nb) : {};
  let sse = 0;
  let maxAbs = 0;
  let sumSquares = 0;
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const start = r * cols + b * bs;
      const end = r * cols + Math.min(cols, (b + 1) * bs);
      const s = scales[r * nb + b]!;
      const inv = s !== 0 ? fround(1 / s) : 0;
      for (let i = start; i < end; i++) {
        const v = values[i]!;
        const q = nearestNf4(fround(v * inv));
        codes[i] = q;
        const e = v - fround(NF4_CODE_BOOK[q]! * s);
        sse += e * e;
        sumSquares += v * v;
        if (Math.abs(e) > maxAbs) maxAbs = Math.abs(e);
      }
    }
  }
  acc[0] = sse;
  acc[1] = maxAbs;
  acc[2] = sumSquares;
  return dq;
}

/**
 * [rows, cols] -> [cols, rows] (GPTQ and the output error want rows). Tiles of 32 x 32, written a
 * destination row at a time: fewer pages touched per inner loop than 64 x 64 tiles, which measured
 * 1.1-2.5x slower on 1024 x 2816 and 2048 x 5632 here.
 */
export function transposeFloats(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  const T = 32;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T);
      for (let c = c0; c < c1; c++) {
        const dst = c * rows;
        for (let r = r0, src = r0 * cols + c; r < r1; r++, src += cols) out[dst + r] = a[src]!;
      }
    }
  }
  return out;
}

/**
 * Quantizes non-negative block scales [rows, blocks] to uint8 in groups of DOUBLE_QUANT_GROUP rows
 * per block column (one float32 scale per group, zero point 0) and replaces them, in place, by
 * their dequantized values q * groupScale (float32), the values the artifact will compute.
 */
export function doubleQuantizeScales(scales: Float32Array, rows: number, blocks: number): { scaleCodes: Uint8Array; scaleGroupScales: Float32Array } {
  const groups = Math.ceil(rows / DOUBLE_QUANT_GROUP);
  const scaleCodes = new Uint8Array(rows * blocks);
  const scaleGroupScales = new Float32Array(groups * blocks);
  for (let g = 0; g < groups; g++) {
    const r0 = g * DOUBLE_QUANT_GROUP;
    const r1 = Math.min(rows, r0 + DOUBLE_QUANT_GROUP);
    for (let b = 0; b < blocks; b++) {
      let max = 0;
      for (let r = r0; r < r1; r++) max = Math.max(max, scales[r * blocks + b]!);
      const s2 = fround(max / 255);
      scaleGroupScales[g * blocks + b] = s2;
      const inv = s2 !== 0 ? fround(1 / s2) : 0;
      for (let r = r0; r < r1; r++) {
        let q = roundHalfAway(fround(scales[r * blocks + b]! * inv));
        q = q < 0 ? 0 : q > 255 ? 255 : q;
        scaleCodes[r * blocks + b] = q;
        scales[r * blocks + b] = fround(q * s2);
      }
    }
  }
  return { scaleCodes, scaleGroupScales };
}

/** peftc's own dequantization: [rows, cols] float32, (q - z) * s or code[q] * s, each in float32. */
export function dequantizeRows(q: QuantizedRows): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  const mid = 1 << (q.bits - 1);
  for (let r = 0; r < q.rows; r++) {
    for (let c = 0; c < q.cols; c++) {
      const bi = r * q.blocks + Math.floor(c / q.blockSize);
      const s = q.scales[bi]!;
      const i = r * q.cols + c;
      if (q.format === 'nf4') out[i] = fround(NF4_CODE_BOOK[q.codes[i]!]! * s);
      else out[i] = fround((q.codes[i]! - (q.zeroPoints ? q.zeroPoints[bi]! : mid)) * s);
    }
  }
  return out;
}

/** Error of `q` against float32 weights [rows, cols] (what tests use to check the stats). */
export function reconstructionError(values: Float32Array, dequantized: Float32Array): { sse: number; maxAbs: number } {
  let sse = 0;
  let maxAbs = 0;
  for (let i = 0; i < values.length; i++) {
    const e = values[i]! - dequantized[i]!;
    sse += e * e;
    if (Math.abs(e) > maxAbs) maxAbs = Math.abs(e);
  }
  return { sse, maxAbs };
}
