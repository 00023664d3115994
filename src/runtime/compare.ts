/**
 * Comparing output tensors: exact for integers, bool and strings; for floats
 * |a - b| <= atol + rtol * |b| elementwise (NaN equals NaN, infinities must match).
 */
import { bytesText } from '../ir/attribute.js';
import { bfloat16BitsToFloat32, DataType, dtypeInfo, dtypeName, float16BitsToFloat32 } from '../ir/dtype.js';
import type { Tensor } from '../ir/tensor.js';

export interface Tolerance {
  rtol: number;
  atol: number;
}

export interface Comparison {
  ok: boolean;
  /** Why it failed, when it did (shape, dtype or value mismatch). */
  reason?: string;
  maxAbsDiff: number;
  maxRelDiff: number;
  mismatches: number;
  elements: number;
}

/** Float elements as numbers (float16/bfloat16 widened); integers as numbers or bigints. */
export function numericValues(t: Tensor): ArrayLike<number | bigint> {
  if (t.dtype === DataType.FLOAT16) return Float32Array.from(t.toTypedArray<Uint16Array>(), float16BitsToFloat32);
  if (t.dtype === DataType.BFLOAT16) return Float32Array.from(t.toTypedArray<Uint16Array>(), bfloat16BitsToFloat32);
  return t.toTypedArray() as ArrayLike<number | bigint>;
}

export function compareTensors(expected: Tensor, actual: Tensor, tol: Tolerance): Comparison {
  const base = { maxAbsDiff: 0, maxRelDiff: 0, mismatches: 0, elements: expected.elementCount };
  if (expected.dtype !== actual.dtype) return { ...base, ok: false, reason: `dtype ${dtypeName(actual.dtype)} != expected ${dtypeName(expected.dtype)}` };
  if (expected.dims.join() !== actual.dims.join()) return { ...base, ok: false, reason: `shape [${actual.dims.join(', ')}] != expected [${expected.dims.join(', ')}]` };
  if (expected.dtype === DataType.STRING) {
    const a = expected.strings().map(bytesText);
    const b = actual.strings().map(bytesText);
    const mismatches = a.filter((s, i) => s !== b[i]).length;
    return { ...base, ok: mismatches === 0, mismatches, reason: mismatches ? `${mismatches} strings differ` : undefined };
  }
  const e = numericValues(expected);
  const a = numericValues(actual);
  const isFloat = dtypeInfo(expected.dtype).isFloat;
  let maxAbs = 0;
  let maxRel = 0;
  let mismatches = 0;
  for (let i = 0; i < e.length; i++) {
    const x = e[i]!;
    const y = a[i]!;
    if (!isFloat) {
      if (x !== y) {
        mismatches++;
        maxAbs = Math.max(maxAbs, Math.abs(Number(x) - Number(y)));
      }
      continue;
    }
    const xf = x as number;
    const yf = y as number;
    if (Number.isNaN(xf) || Number.isNaN(yf)) {
      if (!(Number.isNaN(xf) && Number.isNaN(yf))) mismatches++;
      continue;
    }
    if (!Number.isFinite(xf) || !Number.isFinite(yf)) {
      if (xf !== yf) mismatches++;
      continue;
    }
    const d = Math.abs(xf - yf);
    maxAbs = Math.max(maxAbs, d);
    if (xf !== 0) maxRel = Math.max(maxRel, d / Math.abs(xf));
    if (d > tol.atol + tol.rtol * Math.abs(xf)) mismatches++;
  }
  return {
    ok: mismatches === 0,
    maxAbsDiff: maxAbs,
    maxRelDiff: maxRel,
    mismatches,
    elements: e.length,
    reason: mismatches ? `${mismatches} of ${e.length} elements differ (max abs ${maxAbs.toExponential(3)}, max rel ${maxRel.toExponential(3)})` : undefined,
  };
}
