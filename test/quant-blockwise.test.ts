/**
 * The blocked quantization math on its own (src/quant): onnxruntime's RTN formulas on hand-checked
 * blocks, NF4 code lookup, NF4 double quantization, and refusals. The comparisons with
 * onnxruntime itself are in weight-quant.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultQuantConfig, dequantizeRows, doubleQuantizeScales, quantizeRows, storedScale } from '../src/quant/blockwise.js';
import { NF4_CODE_BOOK, nearestNf4, nearestNf4Reference } from '../src/quant/nf4.js';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../src/ir/dtype.js';

const f32 = (xs: number[]) => Float32Array.from(xs);

describe('RTN follows onnxruntime (MLAS range2scale / range2scalezp)', () => {
  it('symmetric 4-bit: the value of largest magnitude maps to code 0 (q - 8 = -8)', () => {
    const block = f32([0.1, -0.4, 0.25, 0.0, 0.3, -0.05, 0.175, -0.399]);
    const q = quantizeRows(block, 1, 8, defaultQuantConfig({ method: 'rtn', symmetric: true, blockSize: 16 }));
    const s = Math.fround(Math.fround(-0.4) / -8); // 0.05
    expect(q.scales[0]).toBe(s);
    expect(q.zeroPoints).toBeNull();
    // round-half-away(w / s) + 8, clamped to [0, 15]; 0.3 / 0.05 = 6 -> 14; 0.175 / 0.05 = 3.5 -> 12.
    expect(Array.from(q.codes)).toEqual([10, 0, 13, 8, 14, 7, 12, 0]);
    // A positive extreme gets a negative scale and lands on code 0 as well.
    const flipped = quantizeRows(f32([0.4, -0.1]), 1, 2, defaultQuantConfig({ method: 'rtn', symmetric: true, blockSize: 16 }));
    expect(flipped.scales[0]).toBe(Math.fround(-0.05));
    expect(Array.from(flipped.codes)).toEqual([0, 10]);
  });

  it('asymmetric 4-bit: range widened to include 0, s = (max - min) / 15, z = round(-min / s)', () => {
    const block = f32([0.2, 0.5, 0.35, 0.65]);
    const q = quantizeRows(block, 1, 4, defaultQuantConfig({ method: 'rtn', blockSize: 16 }));
    const s = Math.fround(Math.fround(0.65) / 15);
    expect(q.scales[0]).toBe(s);
    expect(q.zeroPoints![0]).toBe(0); // min(0.2, 0) = 0
    const neg = quantizeRows(f32([-0.3, 0.1, -0.15, 0.6]), 1, 4, defaultQuantConfig({ method: 'rtn', blockSize: 16 }));
    const s2 = Math.fround(Math.fround(Math.fround(0.6) - Math.fround(-0.3)) / 15);
    expect(neg.scales[0]).toBe(s2);
    expect(neg.zeroPoints![0]).toBe(Math.round(Math.fround(Math.fround(0.3) / s2)));
    const d = dequantizeRows(neg);
    for (let i = 0; i < 4; i++) expect(Math.abs(d[i]! - neg.codes[i]! * 0 - [-0.3, 0.1, -0.15, 0.6][i]!)).toBeLessThanOrEqual(s2 / 2 + 1e-7);
  });

  it('an all-zero block has scale 0 and dequantizes to 0', () => {
    for (const symmetric of [false, true]) {
      const q = quantizeRows(new Float32Array(40), 2, 20, defaultQuantConfig({ symmetric, blockSize: 16 }));
      expect(Array.from(q.scales)).toEqual([0, 0, 0, 0]);
      expect(dequantizeRows(q).every((v) => v === 0)).toBe(true);
      expect(q.stats.sse).toBe(0);
    }
  });

  it('float16 scales: every candidate is scored with the scale as stored', () => {
    const values = Float32Array.from({ length: 256 }, (_, i) => Math.fround(Math.sin(i * 1.7) * 0.03));
    const q = quantizeRows(values, 4, 64, defaultQuantConfig({ scaleDtype: 'float16', blockSize: 32 }));
    for (const s of q.scales) expect(float16BitsToFloat32(float32ToFloat16Bits(s))).toBe(s);
    expect(storedScale(1e6, 'float16')).toBe(65504);
  });

  it('refuses non-finite weights and bad configurations', () => {
    expect(() => quantizeRows(f32([1, NaN]), 1, 2, defaultQuantConfig())).toThrow(/element 1 is NaN/);
    expect(() => quantizeRows(f32([1, 2]), 1, 2, defaultQuantConfig({ format: 'nf4', bits: 8 }))).toThrow(/nf4 codes are 4 bits/);
    expect(() => quantizeRows(f32([1, 2]), 1, 2, defaultQuantConfig({ mseMinShrink: 0 }))).toThrow(/shrink/);
  });
});

describe('NF4', () => {
  it('the fast code lookup agrees with the binary search everywhere, midpoints included', () => {
    fc.assert(fc.property(fc.float({ min: -2, max: 2, noNaN: true }), (x) => nearestNf4(x) === nearestNf4Reference(x)), { numRuns: 20000 });
    for (let i = 0; i < 15; i++) {
      const m = Math.fround((NF4_CODE_BOOK[i]! + NF4_CODE_BOOK[i + 1]!) / 2);
      for (const x of [m, Math.fround(m * (1 + 2 ** -23)), Math.fround(m * (1 - 2 ** -23)), NF4_CODE_BOOK[i]!]) {
        expect(nearestNf4(x)).toBe(nearestNf4Reference(x));
      }
    }
    // The lookup is the nearest code.
    for (let x = -1; x <= 1; x += 0.001) {
      const best = [...NF4_CODE_BOOK].reduce((b, c, i) => (Math.abs(c - x) < Math.abs(NF4_CODE_BOOK[b]! - x) ? i : b), 0);
      expect(Math.abs(NF4_CODE_BOOK[nearestNf4(x)]! - x)).toBeCloseTo(Math.abs(NF4_CODE_BOOK[best]! - x), 12);
    }
  });

  it('double quantization: scales become uint8 codes times one float32 scale per 256, within half a step', () => {
    const rows = 600;
    const blocks = 3;
    const scales = Float32Array.from({ length: rows * blocks }, (_, i) => Math.fround(0.01 + 0.05 * Math.abs(Math.sin(i * 0.77))));
    const original = scales.slice();
    const { scaleCodes, scaleGroupScales } = doubleQuantizeScales(scales, rows, blocks);
    expect(scaleGroupScales.length).toBe(3 * blocks);
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < blocks; b++) {
        const s2 = scaleGroupScales[Math.floor(r / 256) * blocks + b]!;
        expect(scales[r * blocks + b]).toBe(Math.fround(scaleCodes[r * blocks + b]! * s2));
        expect(Math.abs(scales[r * blocks + b]! - original[r * blocks + b]!)).toBeLessThanOrEqual(s2 / 2 + 1e-9);
      }
    }
  });

  it('quantizes to code[q] * absmax; with double quantization the codes are chosen against the stored scale', () => {
    const values = Float32Array.from({ length: 64 * 3 }, (_, i) => Math.fround(Math.cos(i * 0.61) * 0.02 * (1 + (i % 7))));
    for (const doubleQuant of [false, true]) {
      const q = quantizeRows(values, 3, 64, defaultQuantConfig({ format: 'nf4', method: 'rtn', blockSize: 64, doubleQuant }));
      const d = dequantizeRows(q);
      for (let i = 0; i < values.length; i++) {
        const s = q.scales[Math.floor(i / 64)]!;
        expect(q.codes[i]).toBe(nearestNf4(Math.fround(values[i]! * Math.fround(1 / s))));
        expect(d[i]).toBe(Math.fround(NF4_CODE_BOOK[q.codes[i]!]! * s));
      }
      if (!doubleQuant) for (let r = 0; r < 3; r++) expect(q.scales[r]).toBe(Math.max(...values.subarray(r * 64, r * 64 + 64).map(Math.abs)));
    }
  });
});
