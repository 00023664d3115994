/**
 * The optimized integer quantizer (blockwise.ts: transposed tiles, one pass per block, the
 * WebAssembly SIMD kernels of quant-simd.ts, early exits of the mse search) against a
 * straightforward reference written here: one block at a time, row by row, every candidate scored
 * in full. Codes, scales and zero points must be equal bit for bit (with and without the kernels,
 * read transposed or not); the error sums only up to summation order.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../src/ir/dtype.js';
import { defaultQuantConfig, quantizeRows, type QuantConfig } from '../src/quant/blockwise.js';
import { setQuantSimd } from '../src/quant/quant-simd.js';

const fround = Math.fround;

function stored(s: number, c: QuantConfig): number {
  const r = c.scaleDtype === 'float32' ? fround(s) : float16BitsToFloat32(float32ToFloat16Bits(Math.max(-65504, Math.min(65504, s))));
  return r === 0 ? 0 : r;
}

/** C's roundf. */
const roundAway = (x: number) => (x < 0 ? -Math.round(-x) : Math.round(x));

function code(v: number, s: number, z: number, maxq: number): number {
  const inv = s !== 0 ? fround(1 / s) : 0;
  const q = roundAway(fround(fround(v * inv) + z));
  return Math.max(0, Math.min(maxq, q));
}

function blockSse(x: number[], s: number, z: number, maxq: number): number {
  let sse = 0;
  for (const v of x) {
    const e = v - fround((code(v, s, z, maxq) - z) * s);
    sse += e * e;
  }
  return sse;
}

function asym(lo: number, hi: number, maxq: number, c: QuantConfig): [number, number] {
  lo = Math.min(lo, 0);
  hi = Math.max(hi, 0);
  const s = stored(fround(fround(hi - lo) / maxq), c);
  const zf = s !== 0 ? fround(-lo / s) : 0;
  return [s, Math.max(0, Math.min(maxq, roundAway(zf)))];
}

/** The documented algorithm for one block: RTN, then (mse) the shrink grid and two least-squares refits. */
function referenceBlock(x: number[], c: QuantConfig): [number, number] {
  const maxq = (1 << c.bits) - 1;
  const mid = 1 << (c.bits - 1);
  const lo = Math.min(...x);
  const hi = Math.max(...x);
  const m = Math.abs(hi) > Math.abs(lo) ? hi : lo;
  let best: [number, number] = c.symmetric ? [stored(fround(m / -mid), c), mid] : asym(lo, hi, maxq, c);
  if (c.method === 'rtn') return best;
  let bestSse = blockSse(x, best[0], best[1], maxq);
  if (bestSse === 0) return best;
  const consider = (s: number, z: number) => {
    const e = blockSse(x, s, z, maxq);
    if (e < bestSse) {
      best = [s, z];
      bestSse = e;
      return true;
    }
    return false;
  };
  const steps = c.mseGrid;
  for (let i = 0; i < steps; i++) {
    const alpha = steps === 1 ? 1 : 1 - (i * (1 - c.mseMinShrink)) / (steps - 1);
    if (c.symmetric) {
      const ma = fround(alpha * m);
      if (i > 0) consider(stored(fround(ma / -mid), c), mid);
      consider(stored(fround(ma / (mid - 1)), c), mid);
    } else if (i > 0) consider(...asym(fround(alpha * lo), fround(alpha * hi), maxq, c));
  }
  for (let round = 0; round < 2; round++) {
    const [s, z] = best;
    const qs = x.map((v) => code(v, s, z, maxq));
    const n = x.length;
    let sq = 0;
    let sqq = 0;
    let sv = 0;
    let svq = 0;
    x.forEach((v, i) => {
      sq += qs[i]!;
      sqq += qs[i]! * qs[i]!;
      sv += v;
      svq += v * qs[i]!;
    });
    let zNew = z;
    if (!c.symmetric) {
      const den = n * sqq - sq * sq;
      if (!(den > 0)) break;
      const a = (n * svq - sq * sv) / den;
      const b = (sv - a * sq) / n;
      if (!(Math.abs(a) > 0) || !Number.isFinite(a)) break;
      zNew = Math.max(0, Math.min(maxq, roundAway(-b / a)));
    }
    const den = sqq - 2 * zNew * sq + n * zNew * zNew;
    if (!(den > 0)) break;
    const sNew = stored((svq - zNew * sv) / den, c);
    if (!Number.isFinite(sNew) || sNew === 0) break;
    if (!consider(sNew, zNew)) break;
  }
  return best;
}

function reference(values: Float32Array, rows: number, cols: number, c: QuantConfig) {
  const bs = c.blockSize;
  const nb = Math.ceil(cols / bs);
  const maxq = (1 << c.bits) - 1;
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * nb);
  const zeroPoints = new Uint8Array(rows * nb);
  let sse = 0;
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const x = Array.from(values.subarray(r * cols + b * bs, r * cols + Math.min(cols, (b + 1) * bs)));
      const [s, z] = referenceBlock(x, c);
      scales[r * nb + b] = s;
      zeroPoints[r * nb + b] = z;
      x.forEach((v, i) => {
        const q = code(v, s, z, maxq);
        codes[r * cols + b * bs + i] = q;
        sse += (v - fround((q - z) * s)) ** 2;
      });
    }
  }
  return { codes, scales, zeroPoints, sse };
}

function transposed(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

/** Weights with what trips quantizers: zeros of both signs, ties, constant runs, outliers, tiny values. */
function weights(n: number, seed: number, kind: number): Float32Array {
  let s = seed >>> 0 || 1;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  return Float32Array.from({ length: n }, (_, i) => {
    const u = rand();
    if (kind === 1 && u < 0.2) return i % 2 ? 0 : -0;
    if (kind === 2) return fround(Math.round((u - 0.5) * 16) / 64); // many ties, exact halves
    if (kind === 3 && u < 0.02) return fround((u - 0.01) * 400);
    if (kind === 4) return fround((u - 0.3) * 1e-30);
    if (kind === 5 && i % 37 < 20) return 0.25;
    const g = Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
    return fround(0.02 * g);
  });
}

afterAll(() => setQuantSimd(true));

describe('optimized integer quantization equals the reference', () => {
  it('random shapes, int4/int8, sym/asym, float16/float32 scales, rtn/mse, K not a multiple of the block, transposed or not, with and without SIMD', () => {
    fc.assert(
      fc.property(
        fc.record({
          rows: fc.integer({ min: 1, max: 140 }),
          cols: fc.integer({ min: 1, max: 150 }),
          blockSize: fc.constantFrom(2, 3, 5, 16, 32, 64),
          bits: fc.constantFrom(4 as const, 8 as const),
          symmetric: fc.boolean(),
          scaleDtype: fc.constantFrom('float32' as const, 'float16' as const),
          method: fc.constantFrom('rtn' as const, 'mse' as const),
          seed: fc.integer({ min: 1, max: 1 << 30 }),
          kind: fc.integer({ min: 0, max: 5 }),
        }),
        (p) => {
          const config = defaultQuantConfig({ bits: p.bits, blockSize: p.blockSize, symmetric: p.symmetric, scaleDtype: p.scaleDtype, method: p.method });
          const w = weights(p.rows * p.cols, p.seed, p.kind);
          const want = reference(w, p.rows, p.cols, config);
          const wT = transposed(w, p.rows, p.cols);
          for (const simd of [true, false]) {
            setQuantSimd(simd);
            for (const t of [false, true]) {
              const got = t ? quantizeRows(wT, p.rows, p.cols, config, true) : quantizeRows(w, p.rows, p.cols, config);
              expect(Buffer.from(got.codes).equals(Buffer.from(want.codes))).toBe(true);
              expect(Buffer.from(got.scales.buffer).equals(Buffer.from(want.scales.buffer))).toBe(true);
              if (p.symmetric) expect(got.zeroPoints).toBeNull();
              else expect(Buffer.from(got.zeroPoints!).equals(Buffer.from(want.zeroPoints))).toBe(true);
              expect(Math.abs(got.stats.sse - want.sse)).toBeLessThanOrEqual(1e-12 * want.sse + 1e-300);
            }
          }
          setQuantSimd(true);
        },
      ),
      { numRuns: 150, seed: 20261125 },
    );
  });

  it('a large transposed weight (many tiles, rows not a multiple of four) quantizes the same with and without SIMD', () => {
    const [rows, cols] = [301, 517];
    const w = weights(rows * cols, 7, 0);
    const wT = transposed(w, rows, cols);
    for (const method of ['rtn', 'mse'] as const) {
      const config = defaultQuantConfig({ method, blockSize: 32 });
      const want = reference(w, rows, cols, config);
      const got = quantizeRows(wT, rows, cols, config, true);
      expect(Buffer.from(got.codes).equals(Buffer.from(want.codes))).toBe(true);
      expect(Buffer.from(got.scales.buffer).equals(Buffer.from(want.scales.buffer))).toBe(true);
      expect(Buffer.from(got.zeroPoints!).equals(Buffer.from(want.zeroPoints))).toBe(true);
    }
  });

  it('non-finite weights are refused, naming the element in [rows, cols] order, on every path', () => {
    const [rows, cols] = [9, 70];
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const at of [0, 5 * cols + 33, rows * cols - 1]) {
        const w = weights(rows * cols, 3, 0);
        w[at] = bad;
        for (const simd of [true, false]) {
          setQuantSimd(simd);
          expect(() => quantizeRows(transposed(w, rows, cols), rows, cols, defaultQuantConfig(), true)).toThrow(`weight element ${at} is ${bad}`);
          expect(() => quantizeRows(w, rows, cols, defaultQuantConfig())).toThrow(`weight element ${at} is ${bad}`);
        }
        setQuantSimd(true);
      }
    }
  });
});
