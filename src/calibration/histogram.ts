/**
 * Streaming statistics of one activation over any number of calibration batches, in memory that
 * does not depend on how many values were seen:
 *
 *  - the exact minimum and maximum, the count of values;
 *  - a signed histogram over [-R, R) with a fixed number of bins. R starts as the first batch's
 *    largest |x| rounded up to a power of two, and doubles (as often as needed) when a batch holds
 *    a larger value: doubling merges every two neighbouring bins into one, which is exact because
 *    the bins of [-2R, 2R) are unions of the bins of [-R, R) (the bin count is a multiple of 4).
 *    So the histogram is the same whatever the order of the batches, and never re-bins values
 *    approximately as onnxruntime's Python HistogramCalibrater does (which also keeps every
 *    batch's raw values before binning them: memory that grows with the sample count).
 *
 * ChannelAbsMax keeps max |x| per channel of the last axis (SmoothQuant's statistic).
 */

export const DEFAULT_BINS = 8192;

export class StreamingHistogram {
  /** Counts per bin, bin i covers [-R + i w, -R + (i + 1) w), w = 2R / bins. */
  readonly counts: Float64Array;
  /** Half-width R of the histogram's range (0 until a non-zero value is seen). */
  range = 0;
  min = Infinity;
  max = -Infinity;
  count = 0;
  nonFinite = 0;

  constructor(readonly bins = DEFAULT_BINS) {
    if (bins < 8 || bins % 4 !== 0) throw new RangeError(`histogram: bin count ${bins} must be a multiple of 4, at least 8`);
    this.counts = new Float64Array(bins);
  }

  get binWidth(): number {
    return (2 * this.range) / this.bins;
  }

  /** Lower edge of bin i. */
  edge(i: number): number {
    return -this.range + i * this.binWidth;
  }

  add(values: ArrayLike<number>): void {
    const n = values.length;
    if (n === 0) return;
    let lo = Infinity;
    let hi = -Infinity;
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const x = values[i]!;
      if (x < lo) lo = x;
      if (x > hi) hi = x;
      if (!(x - x === 0)) bad++;
    }
    if (bad) {
      this.nonFinite += bad;
      // Non-finite values are counted, not binned; ranges come from the finite ones.
      lo = Infinity;
      hi = -Infinity;
      for (let i = 0; i < n; i++) {
        const x = values[i]!;
        if (x - x !== 0) continue;
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
      if (lo === Infinity) return;
    }
    this.min = Math.min(this.min, lo);
    this.max = Math.max(this.max, hi);
    this.count += n - bad;
    const need = Math.max(Math.abs(lo), Math.abs(hi));
    if (this.range === 0) {
      if (need === 0) {
        // All zeros so far: they land in the bin above 0 once a range exists.
        this.pendingZeros += n - bad;
        return;
      }
      this.range = 2 ** Math.ceil(Math.log2(need));
      if (this.pendingZeros) {
        this.counts[this.bins / 2] += this.pendingZeros;
        this.pendingZeros = 0;
      }
    }
    while (need > this.range) this.double();
    const scale = this.bins / (2 * this.range);
    const r = this.range;
    const top = this.bins - 1;
    const c = this.counts;
    for (let i = 0; i < n; i++) {
      const x = values[i]!;
      if (x - x !== 0) continue;
      let b = Math.floor((x + r) * scale);
      if (b > top) b = top;
      else if (b < 0) b = 0;
      c[b]++;
    }
  }

  private pendingZeros = 0;

  /** Doubles R: every two neighbouring bins become one, centred on the same zero. */
  private double(): void {
    const b = this.bins;
    const old = this.counts.slice();
    this.counts.fill(0);
    for (let i = 0; i < b; i++) this.counts[b / 4 + (i >> 1)] += old[i]!;
    this.range *= 2;
  }

  /** Folds the histogram onto |x|: bins/2 bins over [0, R). */
  absolute(): Float64Array {
    const half = this.bins / 2;
    const out = new Float64Array(half);
    for (let j = 0; j < half; j++) out[j] = this.counts[half + j]! + this.counts[half - 1 - j]!;
    return out;
  }

  /** Bytes held (the statistic's memory, independent of the values seen). */
  get bytes(): number {
    return this.counts.byteLength + 64;
  }
}

/** max |x| per channel of the last axis, over every row seen. */
export class ChannelAbsMax {
  readonly max: Float32Array;
  rows = 0;

  constructor(readonly channels: number) {
    this.max = new Float32Array(channels);
  }

  add(values: ArrayLike<number>): void {
    const k = this.channels;
    if (values.length % k !== 0) throw new RangeError(`channel statistics: ${values.length} values are not rows of ${k} channels`);
    const m = this.max;
    for (let i = 0; i < values.length; i += k) {
      for (let j = 0; j < k; j++) {
        const a = Math.abs(values[i + j]!);
        if (a > m[j]!) m[j] = a;
      }
    }
    this.rows += values.length / k;
  }
}
