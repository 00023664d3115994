/**
 * Random data for calibration tests: gaussian weights with a few outliers, and correlated layer
 * inputs X = Z M (+ a strong shared direction) with their H = X^T X summed directly.
 */
import { mulberry32 as rng } from './rng.js';

export function gaussian(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()) * scale);
}

/** Correlated calibration inputs X = Z M ([m, k]) and their H = X^T X (direct sum). */
export function correlatedInputs(m: number, k: number, seed: number, mixSeed = seed + 1): { X: Float32Array; H: Float64Array } {
  const Z = gaussian(m * k, seed);
  const M = gaussian(k * k, mixSeed, 1 / Math.sqrt(k));
  // A strong shared direction on top of the mixing: real activations have a few of those.
  const common = gaussian(k, mixSeed + 1, 2);
  const X = new Float32Array(m * k);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < k; j++) {
      let s = Z[i * k]! * common[j]!;
      for (let t = 0; t < k; t++) s += Z[i * k + t]! * M[t * k + j]!;
      X[i * k + j] = Math.fround(s);
    }
  }
  const H = new Float64Array(k * k);
  for (let i = 0; i < m; i++) for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) H[a * k + b]! += X[i * k + a]! * X[i * k + b]!;
  return { X, H };
}

export function weightsF32(n: number, seed: number, scale = 0.05): Float32Array {
  return Float32Array.from(gaussian(n, seed, scale), (v, i) => Math.fround(i % 53 === 7 ? v * 5 : v));
}

