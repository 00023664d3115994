/**
 * addDeltas must give exactly the bits of the straightforward definition (float64 accumulator per
 * row, ranks added one at a time in order, zero coefficients skipped, one rounding to float32):
 * the blocked loops and the SIMD kernels are faster schedules of the same additions, not a
 * different sum. (NaN results may differ in their sign bit with the SIMD kernels; see merge-simd.ts.)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { addDeltas, type Delta, type WeightLayout } from '../src/peft/merge-math.js';
import { setSimdEnabled, simdKernels } from '../src/peft/merge-simd.js';

/** The definition (the implementation before the loops were blocked), kept as the reference. */
function referenceAddDeltas(w: Float32Array, layout: WeightLayout, inF: number, outF: number, deltas: readonly Delta[]): void {
  for (const d of deltas) {
    const r = d.rank;
    if (layout === 'out_in') {
      const acc = new Float64Array(inF);
      for (let o = 0; o < outF; o++) {
        acc.fill(0);
        for (let k = 0; k < r; k++) {
          const bk = d.b[o * r + k]!;
          if (bk === 0) continue;
          for (let i = 0; i < inF; i++) acc[i]! += bk * d.a[k * inF + i]!;
        }
        for (let i = 0; i < inF; i++) w[o * inF + i] = Math.fround(w[o * inF + i]! + d.factor * acc[i]!);
      }
    } else {
      const acc = new Float64Array(outF);
      for (let i = 0; i < inF; i++) {
        acc.fill(0);
        for (let k = 0; k < r; k++) {
          const ak = d.a[k * inF + i]!;
          if (ak === 0) continue;
          for (let o = 0; o < outF; o++) acc[o]! += ak * d.b[o * r + k]!;
        }
        for (let o = 0; o < outF; o++) w[i * outF + o] = Math.fround(w[i * outF + o]! + d.factor * acc[o]!);
      }
    }
  }
}

/** Deterministic floats of mixed magnitudes, with some exact zeros, -0 and (optionally) NaN/Inf. */
function floats(n: number, seed: number, specials: boolean): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const u = s / 2 ** 32;
    const pick = s % 23;
    if (pick === 0) out[i] = 0;
    else if (pick === 1) out[i] = -0;
    else if (specials && pick === 2) out[i] = [NaN, Infinity, -Infinity][s % 3]!;
    else out[i] = (u - 0.5) * 2 ** ((s % 40) - 20);
  }
  return out;
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
/** Bits with every NaN as the one canonical NaN (the SIMD kernels may give a NaN of the other sign). */
const nanEquivalentBits = (a: Float32Array) => Uint32Array.from(bits(a), (b, i) => (Number.isNaN(a[i]) ? 0x7fc00000 : b));

describe.each([
  ['WebAssembly SIMD kernels', true],
  ['JavaScript loops', false],
])('addDeltas with %s', (_what, simd) => {
  if (simd) it('the SIMD kernels are available here', () => expect(simdKernels()).not.toBeNull());
  afterAll(() => setSimdEnabled(true));
  const shapes: Array<[number, number, number]> = [
    [1, 1, 1],
    [3, 5, 2],
    [7, 4, 3],
    [16, 9, 4],
    [5, 17, 5],
    [33, 12, 8],
    [8, 31, 13],
    [64, 48, 16],
    [300, 257, 16], // rows longer than a SIMD chunk of rows; odd length
  ];
  for (const layout of ['out_in', 'in_out'] as const) {
    for (const [inF, outF, r] of shapes) {
      for (const specials of [false, true]) {
        it(`${layout} in=${inF} out=${outF} r=${r}${specials ? ' with NaN/Inf' : ''}: same bits as the reference`, () => {
          const seed = inF * 1000 + outF * 10 + r + (specials ? 7 : 0);
          const base = floats(inF * outF, seed, specials);
          const deltas: Delta[] = [
            { a: floats(r * inF, seed + 1, specials), b: floats(outF * r, seed + 2, specials), rank: r, factor: 0.75 },
            { a: floats(r * inF, seed + 3, false), b: floats(outF * r, seed + 4, false), rank: r, factor: -1.3 },
          ];
          const want = base.slice();
          referenceAddDeltas(want, layout, inF, outF, deltas);
          const got = base.slice();
          setSimdEnabled(simd);
          addDeltas(got, layout, inF, outF, deltas);
          if (simd && specials) expect(nanEquivalentBits(got)).toEqual(nanEquivalentBits(want));
          else expect(bits(got)).toEqual(bits(want));
        });
      }
    }
  }

  it('a row whose coefficients are all zero still rounds w + f*0 (keeps -0 as +0 like the reference)', () => {
    const w = Float32Array.from([-0, 1, -0, 2]);
    const d: Delta = { a: new Float32Array(2 * 2), b: new Float32Array(2 * 2), rank: 2, factor: 1 };
    const want = w.slice();
    referenceAddDeltas(want, 'out_in', 2, 2, [d]);
    setSimdEnabled(simd);
    addDeltas(w, 'out_in', 2, 2, [d]);
    expect(bits(w)).toEqual(bits(want));
  });
});
