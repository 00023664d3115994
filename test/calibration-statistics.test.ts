/**
 * Streaming calibration statistics: the histogram against exact statistics of the same values
 * (sorted arrays), its independence from batch order and sample count, each method's range on
 * distributions whose right answer is known, and collection through onnxruntime against the
 * activations fetched directly.
 */
import { describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { ChannelAbsMax, StreamingHistogram } from '../src/calibration/histogram.js';
import { histogramMse, quantile, rangeFromHistogram } from '../src/calibration/methods.js';
import { collectStatistics } from '../src/calibration/collect.js';
import { matchInputData, synthesizeInputs } from '../src/runtime/input-data.js';
import { runModel } from '../src/runtime/ort.js';
import { mulberry32 } from './rng.js';

function gaussian(n: number, seed: number, sigma = 1): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => Math.fround(Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()) * sigma));
}

describe('StreamingHistogram', () => {
  it('keeps exact min/max/count and the same counts whatever the batch order', () => {
    const batches = [gaussian(1000, 1, 0.1), gaussian(1000, 2, 3), gaussian(1000, 3, 0.01), Float32Array.of(0, 0, 7.5, -40)];
    const a = new StreamingHistogram(1024);
    const b = new StreamingHistogram(1024);
    for (const x of batches) a.add(x);
    for (const x of [...batches].reverse()) b.add(x);
    const all = batches.flatMap((x) => [...x]);
    expect(a.min).toBe(Math.min(...all));
    expect(a.max).toBe(Math.max(...all));
    expect(a.count).toBe(all.length);
    expect(a.range).toBe(64); // smallest power of two >= 40
    expect([...a.counts]).toEqual([...b.counts]);
    expect(a.counts.reduce((s, c) => s + c, 0)).toBe(all.length);
    // Every value lands in the bin that covers it.
    const direct = new Float64Array(1024);
    for (const x of all) direct[Math.min(1023, Math.floor(((x + 64) * 1024) / 128))]++;
    expect([...a.counts]).toEqual([...direct]);
  });

  it('holds the same memory for 1e3 or 1e6 values', () => {
    const small = new StreamingHistogram();
    const big = new StreamingHistogram();
    small.add(gaussian(1000, 4));
    for (let i = 0; i < 100; i++) big.add(gaussian(10000, 5 + i));
    expect(big.bytes).toBe(small.bytes);
    expect(big.count).toBe(1e6);
  });

  it('quantiles agree with the sorted values within a bin', () => {
    const x = gaussian(200000, 7);
    const h = new StreamingHistogram();
    h.add(x);
    const sorted = [...x].sort((p, q) => p - q);
    for (const q of [0.001, 0.1, 0.5, 0.9, 0.999]) {
      expect(Math.abs(quantile(h, q) - sorted[Math.floor(q * (sorted.length - 1))]!)).toBeLessThanOrEqual(h.binWidth * 1.5);
    }
  });

  it('non-finite values are counted, not binned', () => {
    const h = new StreamingHistogram(64);
    h.add(Float32Array.of(1, NaN, -2, Infinity));
    expect(h.nonFinite).toBe(2);
    expect([h.min, h.max, h.count]).toEqual([-2, 1, 2]);
  });

  it('ChannelAbsMax keeps max |x| per last-axis channel', () => {
    const c = new ChannelAbsMax(3);
    c.add(Float32Array.of(1, -5, 0, 2, 1, -0.5));
    c.add(Float32Array.of(-3, 0, 0.25));
    expect([...c.max]).toEqual([3, 5, 0.5]);
    expect(c.rows).toBe(3);
  });
});

describe('calibration methods', () => {
  // Gaussian bulk (sigma 1) with 0.001% outliers at +-60.
  const bulk = gaussian(400000, 11);
  for (let i = 0; i < 4; i++) bulk[i * 1000] = i % 2 ? 60 : -60;
  const h = new StreamingHistogram();
  h.add(bulk);

  it('minmax is the exact observed range', () => {
    expect(rangeFromHistogram(h, { method: 'minmax' })).toEqual([-60, 60]);
  });

  it('percentile cuts the outliers, within a bin of the sorted values', () => {
    const [lo, hi] = rangeFromHistogram(h, { method: 'percentile', percentile: 99.99 });
    const sorted = [...bulk].sort((p, q) => p - q);
    expect(Math.abs(hi - sorted[Math.floor(0.9999 * sorted.length)]!)).toBeLessThan(2 * h.binWidth);
    expect(Math.abs(lo - sorted[Math.floor(0.0001 * sorted.length)]!)).toBeLessThan(2 * h.binWidth);
    expect(hi).toBeLessThan(5);
  });

  it('entropy clips the outliers and keeps the bulk (KL ignores how far clipped values move)', () => {
    const [lo, hi] = rangeFromHistogram(h, { method: 'entropy' });
    expect(hi).toBeGreaterThan(2.5);
    expect(hi).toBeLessThan(30);
    expect(lo).toBeLessThan(-2.5);
    expect(lo).toBeGreaterThan(-30);
  });

  it('mse finds the range of least expected squared error (clipping vs rounding)', () => {
    const [lo, hi] = rangeFromHistogram(h, { method: 'mse', type: 'uint8' });
    expect(hi).toBeLessThan(60);
    expect(lo).toBeGreaterThan(-60);
    const best = histogramMse(h, lo, hi, 'uint8', false);
    for (const [l, u] of [[-60, 60], [-30, 30], [-10, 10], [-4, 4], rangeFromHistogram(h, { method: 'entropy' }), rangeFromHistogram(h, { method: 'percentile' })] as const) {
      expect(best).toBeLessThanOrEqual(histogramMse(h, l, u, 'uint8', false));
    }
  });

  it('a one-sided tensor keeps its exact lower end', () => {
    const relu = new StreamingHistogram();
    relu.add(bulk.map((x) => Math.max(0, x)));
    for (const method of ['percentile', 'entropy', 'mse'] as const) expect(rangeFromHistogram(relu, { method })[0]).toBe(0);
  });
});

describe('collectStatistics', () => {
  function model() {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, ['N', 16]);
    const w = b.initializer('w', DataType.FLOAT, [16, 8], gaussian(128, 3, 0.5));
    const y = b.op('MatMul', [x, w], {}, { name: 'mm' });
    const r = b.op('Relu', [y], {}, { name: 'relu' });
    b.output(r, { dtype: DataType.FLOAT, shape: ['N', 8] });
    return { m: b.build(), y, r };
  }

  it('min/max match the activations fetched directly; memory does not grow with the samples', async () => {
    const { m, y } = model();
    const stats = async (samples: number) => {
      const data = matchInputData(synthesizeInputs(m, { samples, dims: { N: 4 }, seed: 9 }), m);
      return { data, s: await collectStatistics(m, data, [{ name: y.name, channels: 8 }, { name: 'x' }], { progress: false }) };
    };
    const { data, s } = await stats(16);
    let lo = Infinity;
    let hi = -Infinity;
    const chan = new Float32Array(8);
    const probe = model();
    probe.m.graph.outputs = [probe.y];
    for (let r = 0; r < data.runs; r++) {
      const out = await runModel(probe.m, data.feed(r));
      const v = out[y.name]!.toTypedArray<Float32Array>();
      for (let i = 0; i < v.length; i++) {
        lo = Math.min(lo, v[i]!);
        hi = Math.max(hi, v[i]!);
        chan[i % 8] = Math.max(chan[i % 8]!, Math.abs(v[i]!));
      }
    }
    const h = s.histograms.get(y.name)!;
    expect([h.min, h.max]).toEqual([lo, hi]);
    expect([...s.channels.get(y.name)!.max]).toEqual([...chan]);
    expect(s.histograms.get('x')!.count).toBe(16 * 4 * 16);
    expect(m.graph.outputs.map((v) => v.name)).toEqual(['relu_out0']); // restored
    const more = await stats(256);
    expect(more.s.statBytes).toBe(s.statBytes);
    expect(more.s.histograms.get(y.name)!.count).toBe(256 * 4 * 8);
  });
});

