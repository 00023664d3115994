/**
 * Calibration methods: from one activation's streaming histogram (src/calibration/histogram.ts)
 * to the range [lo, hi] its quantization parameters are computed from.
 *
 *  - minmax: the exact observed [min, max].
 *  - percentile: the two tails cut at the given percentile (default 99.999: 0.001% of the values
 *    on each side are clipped), interpolated within a bin, never outside [min, max]. A tensor that
 *    is never negative (never positive) keeps its exact lower (upper) end.
 *  - entropy: the threshold T on |x| minimising KL(P || Q) between the clipped distribution P and
 *    its quantized version Q (TensorRT's calibration: outliers folded into the last bin; Q merges
 *    the bins below T into as many levels as the integer type gives one side: 128 for a
 *    two-sided tensor, 256 for a one-sided one); range [max(min, -T), min(max, T)].
 *  - mse: the range whose quantization (with the parameters it gives, in the activation's
 *    integer type) has the least expected squared error over the histogram: clipping error for
 *    values outside, rounding error inside; a search over shrinking both ends together, then each
 *    end alone.
 */
import { paramsForRange, qRange, type Int8Type } from '../quant/int8-math.js';
import type { StreamingHistogram } from './histogram.js';

export const CALIB_METHODS = ['minmax', 'percentile', 'entropy', 'mse'] as const;
export type CalibMethod = (typeof CALIB_METHODS)[number];

export interface RangeOptions {
  method: CalibMethod;
  /** percentile: the percentile kept on each side (default 99.999). */
  percentile?: number;
  /** The integer type the range is for (entropy's level count, mse's error model). */
  type?: Int8Type;
  symmetric?: boolean;
}

export const DEFAULT_PERCENTILE = 99.999;

export function rangeFromHistogram(h: StreamingHistogram, options: RangeOptions): [number, number] {
  if (h.count === 0) return [0, 0];
  if (h.range === 0 || options.method === 'minmax') return [h.min, h.max];
  switch (options.method) {
    case 'percentile':
      return percentileRange(h, options.percentile ?? DEFAULT_PERCENTILE);
    case 'entropy':
      return entropyRange(h);
    case 'mse':
      return mseRange(h, options.type ?? 'uint8', options.symmetric ?? false);
  }
}

/** The value below which a fraction q of the histogram's values lie (linear within a bin). */
export function quantile(h: StreamingHistogram, q: number): number {
  const target = q * h.count;
  let cum = 0;
  const w = h.binWidth;
  for (let i = 0; i < h.bins; i++) {
    const c = h.counts[i]!;
    if (c > 0 && cum + c >= target) {
      const frac = (target - cum) / c;
      return Math.min(h.max, Math.max(h.min, h.edge(i) + frac * w));
    }
    cum += c;
  }
  return h.max;
}

function percentileRange(h: StreamingHistogram, p: number): [number, number] {
  if (!(p > 50 && p <= 100)) throw new RangeError(`percentile ${p} must be in (50, 100]`);
  const tail = 1 - p / 100;
  const lo = h.min >= 0 ? h.min : Math.min(0, quantile(h, tail));
  const hi = h.max <= 0 ? h.max : Math.max(0, quantile(h, 1 - tail));
  return [lo, hi];
}

/** The |x| histogram cropped to its last non-empty bin and merged down to at most `limit` bins. */
function absoluteBins(h: StreamingHistogram, limit: number): { counts: Float64Array; width: number } {
  const abs = h.absolute();
  let last = abs.length - 1;
  while (last > 0 && abs[last] === 0) last--;
  const used = last + 1;
  const merge = Math.max(1, Math.ceil(used / limit));
  const n = Math.ceil(used / merge);
  const counts = new Float64Array(n);
  for (let j = 0; j < used; j++) counts[Math.floor(j / merge)] += abs[j]!;
  return { counts, width: h.binWidth * merge };
}

function entropyRange(h: StreamingHistogram): [number, number] {
  const oneSided = h.min >= 0 || h.max <= 0;
  const levels = oneSided ? 256 : 128;
  const { counts, width } = absoluteBins(h, 2048);
  const n = counts.length;
  const maxAbs = Math.max(Math.abs(h.min), Math.abs(h.max));
  if (n <= levels) return [h.min, h.max];
  const total = counts.reduce((a, b) => a + b, 0);
  // Suffix sums: the outliers folded into the last kept bin.
  const suffix = new Float64Array(n + 1);
  for (let j = n - 1; j >= 0; j--) suffix[j] = suffix[j + 1]! + counts[j]!;
  const step = Math.max(1, Math.floor((n - levels) / 512));
  let best = n;
  let bestKl = Infinity;
  const p = new Float64Array(n);
  const q = new Float64Array(n);
  for (let i = levels; i <= n; i += step) {
    // P: the first i bins, outliers added to the last.
    for (let j = 0; j < i; j++) p[j] = counts[j]!;
    p[i - 1] += suffix[i]!;
    // Q: the first i bins merged into `levels` groups, each group's mass spread over its non-empty bins.
    let start = 0;
    for (let g = 0; g < levels; g++) {
      const end = g === levels - 1 ? i : Math.floor(((g + 1) * i) / levels);
      let mass = 0;
      let nonzero = 0;
      for (let j = start; j < end; j++) {
        mass += counts[j]!;
        if (counts[j]! > 0) nonzero++;
      }
      for (let j = start; j < end; j++) q[j] = counts[j]! > 0 ? mass / nonzero : 0;
      start = end;
    }
    let ps = 0;
    let qs = 0;
    for (let j = 0; j < i; j++) {
      ps += p[j]!;
      qs += q[j]!;
    }
    if (ps === 0 || qs === 0) continue;
    let kl = 0;
    for (let j = 0; j < i; j++) {
      const pj = p[j]! / ps;
      if (pj === 0) continue;
      const qj = q[j]! / qs;
      kl += pj * Math.log(pj / (qj > 0 ? qj : 1e-12 / total));
    }
    if (kl < bestKl) {
      bestKl = kl;
      best = i;
    }
  }
  const t = Math.min(maxAbs, best * width);
  return [Math.max(h.min, -t), Math.min(h.max, t)];
}

/** Expected squared error of quantizing the histogram with the parameters of [lo, hi]. */
export function histogramMse(h: StreamingHistogram, lo: number, hi: number, type: Int8Type, symmetric: boolean, first = 0, last = h.bins - 1): number {
  const p = paramsForRange(lo, hi, type, symmetric);
  const [qmin, qmax] = qRange(type, symmetric);
  const s = p.scale;
  const z = p.zeroPoint;
  const w = h.binWidth;
  let err = 0;
  for (let i = first; i <= last; i++) {
    const c = h.counts[i]!;
    if (c === 0) continue;
    const x = h.edge(i) + w / 2;
    let r = Math.round(x / s) + z;
    if (r < qmin) r = qmin;
    else if (r > qmax) r = qmax;
    const d = x - (r - z) * s;
    err += c * d * d;
  }
  return err / h.count;
}

function mseRange(h: StreamingHistogram, type: Int8Type, symmetric: boolean): [number, number] {
  let first = 0;
  while (first < h.bins - 1 && h.counts[first] === 0) first++;
  let last = h.bins - 1;
  while (last > first && h.counts[last] === 0) last--;
  const cost = (lo: number, hi: number) => histogramMse(h, lo, hi, type, symmetric, first, last);
  let lo = h.min;
  let hi = h.max;
  let best = cost(lo, hi);
  const steps = 100;
  // Both ends shrunk together.
  for (let k = 1; k < steps; k++) {
    const f = 1 - k / steps;
    const e = cost(h.min * f, h.max * f);
    if (e < best) {
      best = e;
      lo = h.min * f;
      hi = h.max * f;
    }
  }
  if (symmetric) return [lo, hi];
  // Then each end alone, the other fixed.
  const hi0 = hi;
  for (let k = 1; k < steps && hi0 > 0; k++) {
    const cand = hi0 * (1 - k / steps);
    const e = cost(lo, cand);
    if (e < best) {
      best = e;
      hi = cand;
    }
  }
  const lo0 = lo;
  for (let k = 1; k < steps && lo0 < 0; k++) {
    const cand = lo0 * (1 - k / steps);
    const e = cost(cand, hi);
    if (e < best) {
      best = e;
      lo = cand;
    }
  }
  return [lo, hi];
}
