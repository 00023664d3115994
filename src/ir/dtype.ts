/**
 * ONNX element types: the one module that knows every dtype's number, size, name and packing.
 * Numbers are TensorProto.DataType (ONNX IR v11+, including the 2-bit types of IR v12).
 *
 * Sub-byte types (int4/uint4/float4e2m1: two per byte; int2/uint2: four per byte) are packed
 * low bits first, as ONNX stores them in raw_data.
 */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
  FLOAT8E8M0: 24,
  UINT2: 25,
  INT2: 26,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

type TypedArrayCtor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
  new (length: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
};

export interface DTypeInfo {
  readonly id: DataType;
  /** Short lowercase name as users know it from numpy/onnxruntime (float32, bfloat16, int4...). */
  readonly name: string;
  /** Bits per element in raw_data (0 for string). */
  readonly bits: number;
  readonly isFloat: boolean;
  readonly isInteger: boolean;
  readonly isSigned: boolean;
  /**
   * Typed array that views raw_data element by element, where one exists. Half floats are viewed
   * as Uint16Array bit patterns, 8-bit floats as Uint8Array; packed sub-byte types have none.
   */
  readonly storage: TypedArrayCtor | null;
}

function info(
  id: DataType,
  name: string,
  bits: number,
  kind: 'float' | 'int' | 'uint' | 'bool' | 'string' | 'complex' | 'none',
  storage: TypedArrayCtor | null,
): DTypeInfo {
  return {
    id,
    name,
    bits,
    isFloat: kind === 'float',
    isInteger: kind === 'int' || kind === 'uint',
    isSigned: kind === 'int' || kind === 'float',
    storage,
  };
}

const INFOS: readonly DTypeInfo[] = [
  info(DataType.UNDEFINED, 'undefined', 0, 'none', null),
  info(DataType.FLOAT, 'float32', 32, 'float', Float32Array),
  info(DataType.UINT8, 'uint8', 8, 'uint', Uint8Array),
  info(DataType.INT8, 'int8', 8, 'int', Int8Array),
  info(DataType.UINT16, 'uint16', 16, 'uint', Uint16Array),
  info(DataType.INT16, 'int16', 16, 'int', Int16Array),
  info(DataType.INT32, 'int32', 32, 'int', Int32Array),
  info(DataType.INT64, 'int64', 64, 'int', BigInt64Array),
  info(DataType.STRING, 'string', 0, 'string', null),
  info(DataType.BOOL, 'bool', 8, 'bool', Uint8Array),
  info(DataType.FLOAT16, 'float16', 16, 'float', Uint16Array),
  info(DataType.DOUBLE, 'float64', 64, 'float', Float64Array),
  info(DataType.UINT32, 'uint32', 32, 'uint', Uint32Array),
  info(DataType.UINT64, 'uint64', 64, 'uint', BigUint64Array),
  info(DataType.COMPLEX64, 'complex64', 64, 'complex', Float32Array),
  info(DataType.COMPLEX128, 'complex128', 128, 'complex', Float64Array),
  info(DataType.BFLOAT16, 'bfloat16', 16, 'float', Uint16Array),
  info(DataType.FLOAT8E4M3FN, 'float8e4m3fn', 8, 'float', Uint8Array),
  info(DataType.FLOAT8E4M3FNUZ, 'float8e4m3fnuz', 8, 'float', Uint8Array),
  info(DataType.FLOAT8E5M2, 'float8e5m2', 8, 'float', Uint8Array),
  info(DataType.FLOAT8E5M2FNUZ, 'float8e5m2fnuz', 8, 'float', Uint8Array),
  info(DataType.UINT4, 'uint4', 4, 'uint', null),
  info(DataType.INT4, 'int4', 4, 'int', null),
  info(DataType.FLOAT4E2M1, 'float4e2m1', 4, 'float', null),
  info(DataType.FLOAT8E8M0, 'float8e8m0', 8, 'float', Uint8Array),
  info(DataType.UINT2, 'uint2', 2, 'uint', null),
  info(DataType.INT2, 'int2', 2, 'int', null),
];

export const ALL_DTYPES: readonly DataType[] = INFOS.map((i) => i.id).filter((d) => d !== DataType.UNDEFINED);

export function isKnownDType(n: number): n is DataType {
  return Number.isInteger(n) && n >= 0 && n < INFOS.length;
}

export function dtypeInfo(dtype: number): DTypeInfo {
  const i = INFOS[dtype];
  if (i === undefined) throw new RangeError(`unknown ONNX data type ${dtype}`);
  return i;
}

export function dtypeName(dtype: number): string {
  return isKnownDType(dtype) ? INFOS[dtype]!.name : `dtype(${dtype})`;
}

const BY_NAME = new Map<string, DataType>(INFOS.map((i) => [i.name, i.id]));
BY_NAME.set('float', DataType.FLOAT);
BY_NAME.set('double', DataType.DOUBLE);
BY_NAME.set('half', DataType.FLOAT16);
export function dtypeFromName(name: string): DataType | undefined {
  return BY_NAME.get(name.toLowerCase());
}

/** Number of raw_data bytes that `count` elements occupy (sub-byte types round up). */
export function byteSize(dtype: DataType, count: number): number {
  const bits = dtypeInfo(dtype).bits;
  if (bits === 0) throw new RangeError(`${dtypeName(dtype)} has no fixed byte size`);
  return Math.ceil((count * bits) / 8);
}

/** Number of elements of a shape; dims are non-negative integers. */
export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversions (bit patterns in Uint16Array <-> float32).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 -> float16 bits with round-to-nearest-even (as numpy and onnxruntime do). */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

export function bfloat16BitsToFloat32(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0]!;
}

/** float32 -> bfloat16 bits with round-to-nearest-even; NaN stays a quiet NaN. */
export function float32ToBfloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

// ---------------------------------------------------------------------------------------------
// 8-bit and 4-bit float decoding (for reading such tensors; encoders live with the kernels that
// need them).

export function float8BitsToFloat32(dtype: DataType, b: number): number {
  switch (dtype) {
    case DataType.FLOAT8E4M3FN: {
      const sign = b & 0x80 ? -1 : 1;
      const exp = (b >> 3) & 0xf;
      const m = b & 7;
      if (exp === 0xf && m === 7) return NaN;
      if (exp === 0) return sign * m * 2 ** -9;
      return sign * (1 + m / 8) * 2 ** (exp - 7);
    }
    case DataType.FLOAT8E4M3FNUZ: {
      if (b === 0x80) return NaN;
      const sign = b & 0x80 ? -1 : 1;
      const exp = (b >> 3) & 0xf;
      const m = b & 7;
      if (exp === 0) return sign * m * 2 ** -10;
      return sign * (1 + m / 8) * 2 ** (exp - 8);
    }
    case DataType.FLOAT8E5M2: {
      const sign = b & 0x80 ? -1 : 1;
      const exp = (b >> 2) & 0x1f;
      const m = b & 3;
      if (exp === 0x1f) return m ? NaN : sign * Infinity;
      if (exp === 0) return sign * m * 2 ** -16;
      return sign * (1 + m / 4) * 2 ** (exp - 15);
    }
    case DataType.FLOAT8E5M2FNUZ: {
      if (b === 0x80) return NaN;
      const sign = b & 0x80 ? -1 : 1;
      const exp = (b >> 2) & 0x1f;
      const m = b & 3;
      if (exp === 0) return sign * m * 2 ** -17;
      return sign * (1 + m / 4) * 2 ** (exp - 16);
    }
    case DataType.FLOAT8E8M0:
      return b === 0xff ? NaN : 2 ** (b - 127);
    default:
      throw new RangeError(`${dtypeName(dtype)} is not an 8-bit float type`);
  }
}

export function float4e2m1BitsToFloat32(nibble: number): number {
  const sign = nibble & 8 ? -1 : 1;
  const exp = (nibble >> 1) & 3;
  const m = nibble & 1;
  if (exp === 0) return sign * m * 0.5;
  return sign * (1 + m / 2) * 2 ** (exp - 1);
}

// ---------------------------------------------------------------------------------------------
// Sub-byte packing: element i lives in byte floor(i*bits/8), at bit (i*bits) % 8, low bits first.

/** Unpacks `count` int4/uint4/int2/uint2 elements into one Int8Array value each. */
export function unpackSubByte(packed: Uint8Array, count: number, bits: 2 | 4, signed: boolean): Int8Array {
  const out = new Int8Array(count);
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  const signBit = 1 << (bits - 1);
  for (let i = 0; i < count; i++) {
    const byte = packed[(i / perByte) | 0]!;
    let v = (byte >> ((i % perByte) * bits)) & mask;
    if (signed && v & signBit) v -= 1 << bits;
    out[i] = v;
  }
  return out;
}

/** Packs small integers (already in range) into int4/uint4/int2/uint2 raw bytes. */
export function packSubByte(values: ArrayLike<number>, bits: 2 | 4): Uint8Array {
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(Math.ceil(values.length / perByte));
  for (let i = 0; i < values.length; i++) {
    out[(i / perByte) | 0]! |= (values[i]! & mask) << ((i % perByte) * bits);
  }
  return out;
}

/** A typed-array view of raw little-endian bytes; copies only when the offset is misaligned. */
export function viewAs<T extends TypedArray>(ctor: TypedArrayCtor, bytes: Uint8Array): T {
  const size = ctor.BYTES_PER_ELEMENT;
  if (bytes.byteLength % size !== 0) throw new RangeError(`byte length ${bytes.byteLength} is not a multiple of ${size}`);
  if (bytes.byteOffset % size === 0) return new ctor(bytes.buffer, bytes.byteOffset, bytes.byteLength / size) as T;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new ctor(copy.buffer, 0, bytes.byteLength / size) as T;
}
