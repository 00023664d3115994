/**
 * Shared helpers for the reference kernels (stable API; shape-ops.ts and others import it).
 *
 * Numbers. Arithmetic runs in one of two domains (`domainOf`):
 *  - 'f64': every float type, bool, and integers up to 32 bits (float64 holds them exactly);
 *  - 'big': int64/uint64, read as BigInt64Array/BigUint64Array views so 2^63-1 stays exact.
 *
 * Types:    FLOAT_TYPES (float32/64, float16, bfloat16), INT_TYPES (= SIGNED_ + UNSIGNED_INT_TYPES,
 *           8..64 bits), FLOAT8_TYPES, SUBBYTE_INT_TYPES, NUMERIC (floats, ints, bool),
 *           NUMERIC_NO_BOOL, isFloatType, domainOf.
 * Reading:  readF64 (any numeric tensor, including float8, int4/uint4/int2/uint2, float4e2m1),
 *           readBig (integers/bool as bigint arrays), readValues (whichever domain fits),
 *           readInts (small integer inputs such as axes and shapes, as numbers).
 * Writing:  fromF64 (float results rounded to the type: float32 by Math.fround, float16/bfloat16
 *           by rounding the float32 result to nearest even, i.e. "computed in float32" as ONNX's
 *           reference does; integers truncated toward zero and wrapped like C), fromBig (wraps to
 *           the type's width), roundToType (one value).
 * Scalars:  float64ToFloat16Bits (direct round-to-nearest-even from float64, as numpy's astype),
 *           float8Encode (ONNX's Cast/QuantizeLinear rules with `saturate`), roundHalfEven,
 *           intRange/intRangeBig.
 * Shapes:   broadcastShapes, broadcastStrides, broadcastIndex (one Int32Array of flat input
 *           offsets per output element, no per-element objects), stridedIndex (the same for any
 *           strides, e.g. a transposed view), stridesOf, normalizeAxis.
 * Misc:     input (a required kernel input), requireDtype, checkAttributes (refuse attributes a
 *           kernel does not know, so a newer opset's extra attribute never yields a wrong answer).
 *
 * Everything a helper cannot do exactly throws KernelUnsupported.
 */
import {
  bfloat16BitsToFloat32,
  DataType,
  dtypeInfo,
  dtypeName,
  elementCount,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  float4e2m1BitsToFloat32,
  float8BitsToFloat32,
  packSubByte,
  unpackSubByte,
  type TypedArray,
} from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { KernelUnsupported } from './registry.js';

// ---------------------------------------------------------------------------------------------
// dtype groups

export type Domain = 'f64' | 'big';

/** 'big' for int64/uint64 (bigint arithmetic), 'f64' for everything else. */
export function domainOf(dtype: DataType): Domain {
  return dtype === DataType.INT64 || dtype === DataType.UINT64 ? 'big' : 'f64';
}

/** float32, float64, float16, bfloat16: the float types ordinary arithmetic kernels accept. */
export const FLOAT_TYPES: ReadonlySet<DataType> = new Set<DataType>([DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16]);
export const SIGNED_INT_TYPES: ReadonlySet<DataType> = new Set<DataType>([DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64]);
export const UNSIGNED_INT_TYPES: ReadonlySet<DataType> = new Set<DataType>([DataType.UINT8, DataType.UINT16, DataType.UINT32, DataType.UINT64]);
/** The 8..64-bit integer types. */
export const INT_TYPES: ReadonlySet<DataType> = new Set<DataType>([...SIGNED_INT_TYPES, ...UNSIGNED_INT_TYPES]);
export const FLOAT8_TYPES: ReadonlySet<DataType> = new Set<DataType>([
  DataType.FLOAT8E4M3FN, DataType.FLOAT8E4M3FNUZ, DataType.FLOAT8E5M2, DataType.FLOAT8E5M2FNUZ,
]);
/** int4/uint4/int2/uint2 (packed, low bits first). */
export const SUBBYTE_INT_TYPES: ReadonlySet<DataType> = new Set<DataType>([DataType.INT4, DataType.UINT4, DataType.INT2, DataType.UINT2]);

/** Numeric dtypes the arithmetic kernels accept: FLOAT_TYPES, INT_TYPES and bool. */
export const NUMERIC: ReadonlySet<DataType> = new Set<DataType>([...FLOAT_TYPES, ...INT_TYPES, DataType.BOOL]);
/** NUMERIC without bool. */
export const NUMERIC_NO_BOOL: ReadonlySet<DataType> = new Set<DataType>([...FLOAT_TYPES, ...INT_TYPES]);

/** Whether `dtype` is one of FLOAT_TYPES. */
export function isFloatType(dtype: DataType): boolean {
  return FLOAT_TYPES.has(dtype);
}

/** [min, max] of an integer type of at most 32 bits (sub-byte included) or bool, as numbers. */
export function intRange(dtype: DataType): [number, number] {
  if (dtype === DataType.BOOL) return [0, 1];
  const info = dtypeInfo(dtype);
  if (!info.isInteger || info.bits > 32) throw new RangeError(`intRange: ${dtypeName(dtype)}`);
  return info.isSigned ? [-(2 ** (info.bits - 1)), 2 ** (info.bits - 1) - 1] : [0, 2 ** info.bits - 1];
}

/** [min, max] of any integer type as bigints. */
export function intRangeBig(dtype: DataType): [bigint, bigint] {
  const info = dtypeInfo(dtype);
  if (!info.isInteger) throw new RangeError(`intRangeBig: ${dtypeName(dtype)}`);
  const b = BigInt(info.bits);
  return info.isSigned ? [-(1n << (b - 1n)), (1n << (b - 1n)) - 1n] : [0n, (1n << b) - 1n];
}

export function requireDtype(op: string, t: Tensor, allowed: ReadonlySet<DataType>): void {
  if (!allowed.has(t.dtype)) throw new KernelUnsupported(op, `input '${t.name}' of type ${dtypeName(t.dtype)}`);
}

// ---------------------------------------------------------------------------------------------
// Reading

/**
 * Elements as float64: exact for every type except int64/uint64 beyond 2^53 (use readBig or
 * readValues for those). Reads float16/bfloat16/float8/float4e2m1 bit patterns, bool as 0/1, and
 * unpacks int4/uint4/int2/uint2.
 */
export function readF64(t: Tensor): Float64Array {
  switch (t.dtype) {
    case DataType.FLOAT16:
      return Float64Array.from(t.toTypedArray<Uint16Array>(), float16BitsToFloat32);
    case DataType.BFLOAT16:
      return Float64Array.from(t.toTypedArray<Uint16Array>(), bfloat16BitsToFloat32);
    case DataType.INT64:
    case DataType.UINT64:
      return Float64Array.from(t.toTypedArray<BigInt64Array>(), Number);
    case DataType.INT4:
    case DataType.UINT4:
      return Float64Array.from(unpackSubByte(t.bytes(), t.elementCount, 4, t.dtype === DataType.INT4));
    case DataType.INT2:
    case DataType.UINT2:
      return Float64Array.from(unpackSubByte(t.bytes(), t.elementCount, 2, t.dtype === DataType.INT2));
    case DataType.FLOAT4E2M1:
      return Float64Array.from(unpackSubByte(t.bytes(), t.elementCount, 4, false), float4e2m1BitsToFloat32);
    case DataType.FLOAT8E4M3FN:
    case DataType.FLOAT8E4M3FNUZ:
    case DataType.FLOAT8E5M2:
    case DataType.FLOAT8E5M2FNUZ:
    case DataType.FLOAT8E8M0:
      return Float64Array.from(t.toTypedArray<Uint8Array>(), (b) => float8BitsToFloat32(t.dtype, b));
    case DataType.FLOAT:
    case DataType.DOUBLE:
    case DataType.INT8:
    case DataType.UINT8:
    case DataType.INT16:
    case DataType.UINT16:
    case DataType.INT32:
    case DataType.UINT32:
    case DataType.BOOL:
      return Float64Array.from(t.toTypedArray() as ArrayLike<number>);
    default:
      throw new KernelUnsupported('read', `${dtypeName(t.dtype)} data`);
  }
}

/**
 * Integer (or bool) elements as bigints. int64/uint64 are views of the data (no copy; do not
 * write to them); narrower types are widened into a new BigInt64Array.
 */
export function readBig(t: Tensor): BigInt64Array | BigUint64Array {
  if (t.dtype === DataType.INT64) return t.toTypedArray<BigInt64Array>();
  if (t.dtype === DataType.UINT64) return t.toTypedArray<BigUint64Array>();
  if (!dtypeInfo(t.dtype).isInteger && t.dtype !== DataType.BOOL) throw new KernelUnsupported('read', `${dtypeName(t.dtype)} as integers`);
  const v = readF64(t);
  const out = new BigInt64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = BigInt(v[i]!);
  return out;
}

/** A tensor's elements in its arithmetic domain (see domainOf). */
export type NumericData = { big: false; data: Float64Array } | { big: true; data: BigInt64Array | BigUint64Array };

export function readValues(t: Tensor): NumericData {
  return domainOf(t.dtype) === 'big' ? { big: true, data: readBig(t) } : { big: false, data: readF64(t) };
}

/** Small integer inputs (shapes, axes, indices) as numbers; refuses values beyond 2^53. */
export function readInts(t: Tensor): number[] {
  if (t.dtype === DataType.INT64 || t.dtype === DataType.UINT64) {
    const v = t.toTypedArray<BigInt64Array | BigUint64Array>();
    const out = new Array<number>(v.length);
    for (let i = 0; i < v.length; i++) {
      const n = Number(v[i]!);
      if (!Number.isSafeInteger(n)) throw new KernelUnsupported('read', `index value ${v[i]} beyond 2^53`);
      out[i] = n;
    }
    return out;
  }
  if (!dtypeInfo(t.dtype).isInteger) throw new KernelUnsupported('read', `${dtypeName(t.dtype)} as indices`);
  return Array.from(readF64(t));
}

// ---------------------------------------------------------------------------------------------
// Writing

/** C-style conversion of an integral number into a <=32-bit integer type (two's complement wrap). */
function wrapInt(v: number, dtype: DataType): number {
  switch (dtype) {
    case DataType.INT8: return (v << 24) >> 24;
    case DataType.UINT8: return v & 0xff;
    case DataType.INT16: return (v << 16) >> 16;
    case DataType.UINT16: return v & 0xffff;
    case DataType.INT32: return v | 0;
    case DataType.UINT32: return v >>> 0;
    default: return v;
  }
}

/**
 * Builds a tensor of `dtype` from float64 values:
 *  - float32: Math.fround; float64: as is;
 *  - float16/bfloat16: rounded to float32 first, then to nearest even (the result of an
 *    operation computed in float32, as ONNX's reference computes half-precision ops; for a
 *    direct float64 -> float16 conversion use float64ToFloat16Bits);
 *  - bool: value !== 0 (NaN is true, as numpy);
 *  - integers (8..64 bits): truncated toward zero, then wrapped to the width (C semantics).
 *    NaN/Infinity cannot become an integer: KernelUnsupported. int64 values beyond 2^53 must
 *    come through fromBig to be exact.
 *  - int4/uint4/int2/uint2: the values must already be integers in range (else unsupported).
 */
export function fromF64(dtype: DataType, dims: readonly number[], values: ArrayLike<number>): Tensor {
  const n = values.length;
  let out: TypedArray;
  switch (dtype) {
    case DataType.FLOAT:
      out = Float32Array.from(values);
      break;
    case DataType.DOUBLE:
      out = Float64Array.from(values);
      break;
    case DataType.FLOAT16: {
      const a = new Uint16Array(n);
      for (let i = 0; i < n; i++) a[i] = float32ToFloat16Bits(Math.fround(values[i]!));
      out = a;
      break;
    }
    case DataType.BFLOAT16: {
      const a = new Uint16Array(n);
      for (let i = 0; i < n; i++) a[i] = float32ToBfloat16Bits(Math.fround(values[i]!));
      out = a;
      break;
    }
    case DataType.BOOL: {
      const a = new Uint8Array(n);
      for (let i = 0; i < n; i++) a[i] = values[i] !== 0 ? 1 : 0;
      out = a;
      break;
    }
    case DataType.INT64:
    case DataType.UINT64: {
      const a = dtype === DataType.INT64 ? new BigInt64Array(n) : new BigUint64Array(n);
      for (let i = 0; i < n; i++) {
        const v = values[i]!;
        if (!Number.isFinite(v)) throw new KernelUnsupported('write', `${v} as ${dtypeName(dtype)}`);
        a[i] = BigInt(Math.trunc(v)); // typed-array stores wrap modulo 2^64
      }
      out = a;
      break;
    }
    case DataType.INT4:
    case DataType.UINT4:
    case DataType.INT2:
    case DataType.UINT2: {
      const [lo, hi] = intRange(dtype);
      for (let i = 0; i < n; i++) {
        const v = values[i]!;
        if (!(Number.isInteger(v) && v >= lo && v <= hi)) throw new KernelUnsupported('write', `${v} as ${dtypeName(dtype)}`);
      }
      return Tensor.fromBytes('', dtype, dims, packSubByte(values, dtypeInfo(dtype).bits as 2 | 4));
    }
    default: {
      const info = dtypeInfo(dtype);
      if (!info.storage || !info.isInteger) throw new KernelUnsupported('write', `${dtypeName(dtype)} results`);
      const arr = new (info.storage as unknown as new (n: number) => Int32Array)(n);
      for (let i = 0; i < n; i++) {
        const v = values[i]!;
        if (!Number.isFinite(v)) throw new KernelUnsupported('write', `${v} as ${dtypeName(dtype)}`);
        arr[i] = wrapInt(Math.trunc(v), dtype);
      }
      out = arr;
    }
  }
  return Tensor.fromTypedArray('', dtype, dims, out);
}

/** Builds an integer (or bool) tensor from bigints, wrapping each to the type's width. */
export function fromBig(dtype: DataType, dims: readonly number[], values: ArrayLike<bigint>): Tensor {
  const n = values.length;
  if (dtype === DataType.INT64 || dtype === DataType.UINT64) {
    const a = dtype === DataType.INT64 ? new BigInt64Array(n) : new BigUint64Array(n);
    for (let i = 0; i < n; i++) a[i] = values[i]!; // stores wrap modulo 2^64
    return Tensor.fromTypedArray('', dtype, dims, a);
  }
  const f = new Float64Array(n);
  if (dtype === DataType.BOOL) {
    for (let i = 0; i < n; i++) f[i] = values[i] !== 0n ? 1 : 0;
  } else if (dtypeInfo(dtype).isInteger) {
    const bits = dtypeInfo(dtype).bits;
    const signed = dtypeInfo(dtype).isSigned;
    for (let i = 0; i < n; i++) f[i] = Number(signed ? BigInt.asIntN(bits, values[i]!) : BigInt.asUintN(bits, values[i]!));
  } else {
    throw new KernelUnsupported('write', `bigint values as ${dtypeName(dtype)}`);
  }
  return fromF64(dtype, dims, f);
}

/** One value rounded as fromF64 would store it (floats; identity for float64). */
export function roundToType(dtype: DataType, v: number): number {
  switch (dtype) {
    case DataType.FLOAT:
      return Math.fround(v);
    case DataType.FLOAT16:
      return float16BitsToFloat32(float32ToFloat16Bits(Math.fround(v)));
    case DataType.BFLOAT16:
      return bfloat16BitsToFloat32(float32ToBfloat16Bits(Math.fround(v)));
    default:
      return v;
  }
}

/** Round half to even (numpy's rint) of a float64. */
export function roundHalfEven(v: number): number {
  if (!Number.isFinite(v)) return v;
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * float64 -> float16 bits, rounded to nearest even directly from the float64 value (numpy's
 * float64 astype float16; no intermediate float32 rounding). Overflow gives infinity.
 */
export function float64ToFloat16Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Infinity) return sign | 0x7c00;
  // quantum: 2^-24 for subnormals, 2^(e-10) for normals with 2^e <= a < 2^(e+1)
  let e = a >= 2 ** -14 ? exponentOf(a) : -14;
  const r = roundHalfEven(a / 2 ** (e - 10)); // exact scaling by a power of two
  let m = r;
  if (m >= 2048) {
    // rounded up into the next binade
    e++;
    m = r / 2;
  }
  if (e > 15) return sign | 0x7c00;
  if (m < 1024) return sign | m; // subnormal (or zero)
  return sign | ((e + 15) << 10) | (m - 1024);
}

/** floor(log2(a)) for a finite positive a, exactly. */
function exponentOf(a: number): number {
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return e;
}

interface Float8Format {
  mant: number;
  /** Exponent of the smallest normal (1 - bias). */
  minExp: number;
  max: number;
  maxBits: number;
  /** Bits of a NaN (sign added for FN/E5M2). */
  nan: number;
  /** Bits of +infinity, or -1 when the format has none. */
  inf: number;
  /** FNUZ: no negative zero, a single NaN 0x80. */
  uz: boolean;
}

const FLOAT8_FORMATS: Partial<Record<DataType, Float8Format>> = {
  [DataType.FLOAT8E4M3FN]: { mant: 3, minExp: -6, max: 448, maxBits: 0x7e, nan: 0x7f, inf: -1, uz: false },
  [DataType.FLOAT8E4M3FNUZ]: { mant: 3, minExp: -7, max: 240, maxBits: 0x7f, nan: 0x80, inf: -1, uz: true },
  [DataType.FLOAT8E5M2]: { mant: 2, minExp: -14, max: 57344, maxBits: 0x7b, nan: 0x7f, inf: 0x7c, uz: false },
  [DataType.FLOAT8E5M2FNUZ]: { mant: 2, minExp: -15, max: 57344, maxBits: 0x7f, nan: 0x80, inf: -1, uz: true },
};

/**
 * A float value (exact float32/float16/bfloat16 value, or a float64 the caller accepts as is)
 * -> float8 bits, round to nearest even, with ONNX's `saturate` rules (Cast-19, QuantizeLinear-19):
 * saturate: finite values beyond the largest finite round to it, E4M3FN/E5M2 infinities become
 * the largest finite; otherwise overflow gives NaN (E5M2: infinity) and infinities stay infinite
 * (E5M2) or become NaN. Where the reference implementations disagree (a FNUZ infinity under
 * saturate; without saturate, E4M3FN values in [480, 496) and E5M2 values in [61440, 65536)) it throws KernelUnsupported instead of
 * picking one.
 */
export function float8Encode(dtype: DataType, v: number, saturate: boolean): number {
  const f = FLOAT8_FORMATS[dtype];
  if (!f) throw new KernelUnsupported('Cast', `conversion to ${dtypeName(dtype)}`);
  if (Number.isNaN(v)) return f.nan;
  const neg = v < 0 || Object.is(v, -0);
  const sign = neg ? 0x80 : 0;
  const a = Math.abs(v);
  if (a === Infinity) {
    if (f.uz) {
      if (saturate) throw new KernelUnsupported('Cast', `infinity to ${dtypeName(dtype)} with saturate (implementations differ)`);
      return f.nan;
    }
    if (saturate) return sign | f.maxBits;
    return f.inf >= 0 ? sign | f.inf : sign | f.nan;
  }
  const e = a >= 2 ** f.minExp ? exponentOf(a) : f.minExp;
  const q = 2 ** (e - f.mant);
  const r = roundHalfEven(a / q) * q;
  if (r > f.max) {
    if (saturate) return sign | f.maxBits;
    // onnx<=1.17's and onnxruntime's E4M3FN encoder turn [480, 496) into 448 without saturate;
    // round-to-nearest-even (and ml_dtypes) overflow to NaN there.
    if (dtype === DataType.FLOAT8E4M3FN && a >= 480 && a < 496) {
      throw new KernelUnsupported('Cast', `${v} to ${dtypeName(dtype)} without saturate (implementations differ)`);
    }
    // Likewise their E5M2 encoder gives NaN, not infinity, where rounding overflows in the top binade.
    if (dtype === DataType.FLOAT8E5M2 && a < 65536) {
      throw new KernelUnsupported('Cast', `${v} to ${dtypeName(dtype)} without saturate (implementations differ)`);
    }
    return f.inf >= 0 ? sign | f.inf : f.uz ? f.nan : sign | f.nan;
  }
  if (r === 0) return f.uz ? 0 : sign;
  let bits: number;
  if (r < 2 ** f.minExp) {
    bits = r / 2 ** (f.minExp - f.mant);
  } else {
    const re = exponentOf(r);
    bits = ((re - f.minExp + 1) << f.mant) | (r / 2 ** (re - f.mant) - (1 << f.mant));
  }
  return sign | bits;
}

// ---------------------------------------------------------------------------------------------
// Broadcasting and strided index walks

/** numpy-style multidirectional broadcast of shapes; KernelUnsupported when they do not broadcast. */
export function broadcastShapes(op: string, ...shapes: ReadonlyArray<readonly number[]>): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const x = s[s.length - rank + i] ?? 1;
      if (x === 1) continue;
      if (d !== 1 && d !== x) throw new KernelUnsupported(op, `shapes [${shapes.map((s) => s.join(',')).join('] and [')}] that do not broadcast`);
      d = x;
    }
    out.push(d);
  }
  return out;
}

/** Row-major strides of `shape` aligned to the right of `outShape` (0 where broadcast). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const rank = outShape.length;
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const axis = rank - shape.length + i;
    strides[axis] = shape[i] === 1 ? 0 : s;
    s *= shape[i]!;
  }
  return strides;
}

/**
 * For each element of `outShape` (row-major order), the flat offset `offset + sum(i_k * strides[k])`:
 * the index walk of any strided view (broadcast, transposed, sliced). One Int32Array, no objects.
 */
export function stridedIndex(outShape: readonly number[], strides: readonly number[], offset = 0): Int32Array {
  const n = elementCount(outShape);
  const idx = new Int32Array(n);
  const rank = outShape.length;
  const counter = new Int32Array(rank);
  let flat = offset;
  for (let i = 0; i < n; i++) {
    idx[i] = flat;
    for (let ax = rank - 1; ax >= 0; ax--) {
      counter[ax]!++;
      flat += strides[ax]!;
      if (counter[ax]! < outShape[ax]!) break;
      flat -= strides[ax]! * outShape[ax]!;
      counter[ax] = 0;
    }
  }
  return idx;
}

/**
 * For each output element (row-major), the flat index into an input of `shape` broadcast to
 * `outShape`; null when the shapes are equal (the index is the identity).
 */
export function broadcastIndex(shape: readonly number[], outShape: readonly number[]): Int32Array | null {
  if (shape.length === outShape.length && shape.every((d, i) => d === outShape[i])) return null;
  return stridedIndex(outShape, broadcastStrides(shape, outShape));
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** A possibly negative axis in [-rank, rank) as a non-negative one; KernelUnsupported otherwise. */
export function normalizeAxis(node: Node, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= Math.max(rank, 1)) throw new KernelUnsupported(node.opType, `axis ${axis} for rank ${rank}`);
  return a;
}

// ---------------------------------------------------------------------------------------------
// Kernel plumbing

/** Input `i` of a kernel call, required to be present. */
export function input(op: string, inputs: ReadonlyArray<Tensor | null>, i: number): Tensor {
  const t = inputs[i];
  if (!t) throw new KernelUnsupported(op, `a missing input ${i}`);
  return t;
}

/** Refuses any attribute not in `known` (an attribute a later opset added, or a typo). */
export function checkAttributes(node: Node, known: readonly string[]): void {
  for (const a of node.attributes) {
    if (!known.includes(a.name)) throw new KernelUnsupported(node.opType, `attribute '${a.name}'`);
  }
}
