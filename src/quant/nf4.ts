/**
 * NF4, the 4-bit NormalFloat code book of QLoRA (Dettmers et al. 2023, arXiv:2305.14314): sixteen
 * values in [-1, 1], quantiles of a standard normal, with an exact zero. A weight w in a block with
 * scale s is stored as the index of the code nearest to w / s and read back as code[index] * s.
 *
 * The values are the published ones (float32), identical to bitsandbytes' table and to
 * onnxruntime's `nf4_qaunt_map` (contrib_ops/cpu/quantization/blockwise_quant_block_bnb4.h), so a
 * model emitted as com.microsoft MatMulBnb4 (quant_type 1) and one emitted with a Gather from this
 * table dequantize to the same numbers.
 */
export const NF4_CODE_BOOK: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** Index of the exact zero in the code book (the padding code). */
export const NF4_ZERO_CODE = 7;

/** Midpoints between neighbouring codes: index i is chosen when MID[i-1] < x <= MID[i]. */
const MIDPOINTS: Float64Array = Float64Array.from({ length: 15 }, (_, i) => (NF4_CODE_BOOK[i]! + NF4_CODE_BOOK[i + 1]!) / 2);

/** Index of the code nearest to x by binary search over the midpoints (the reference). */
export function nearestNf4Reference(x: number): number {
  let lo = 0;
  let hi = 15;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x > MIDPOINTS[mid]!) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Fast path: [-1, 1] cut into 2048 bins; each bin holds at most one midpoint (codes are at least
// 0.079 apart, bins 0.001 wide), so the code at the bin's lower edge plus one comparison gives
// the same answer as the binary search.
const BINS = 2048;
const LOWER_CODE: Uint8Array = Uint8Array.from({ length: BINS }, (_, i) => nearestNf4Reference((i * 2) / BINS - 1));
for (const m of MIDPOINTS) {
  // No midpoint may sit within rounding distance of a bin edge (where (x + 1) * BINS/2 could land
  // in the wrong bin).
  const t = ((m + 1) * BINS) / 2;
  if (Math.abs(t - Math.round(t)) < 1e-9) throw new Error('internal: NF4 midpoint on a bin edge');
}

/** Index of the code nearest to x (x is w / scale, nominally in [-1, 1]); ties go to the lower code. */
export function nearestNf4(x: number): number {
  const t = (x + 1) * (BINS / 2);
  if (!(t >= 0)) return 0; // below -1 (or NaN)
  if (t >= BINS) return 15;
  const c = LOWER_CODE[t | 0]!;
  return c < 15 && x > MIDPOINTS[c]! ? c + 1 : c;
}
