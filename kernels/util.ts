/**
 * Shared helpers for the reference kernels: reading tensors as numbers, building outputs with
 * ONNX's rounding and wrapping rules, and numpy-style broadcasting with strided index walks.
 *
 * Arithmetic runs in one of two domains: 'f64' (every float type, and integers up to 32 bits,
 * which float64 holds exactly) or 'big' (int64/uint64 as bigint, so 2^63-1 stays exact).
 * float16/bfloat16 results are computed in float32 and rounded to nearest even, as ONNX's
 * reference implementation does.
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
  float8BitsToFloat32,
  type TypedArray,
} from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { KernelUnsupported } from './registry.js';

export type Domain = 'f64' | 'big';

export function domainOf(dtype: DataType): Domain {
  return dtype === DataType.INT64 || dtype === DataType.UINT64 ? 'big' : 'f64';
}

const FLOAT8 = new Set<DataType>([DataType.FLOAT8E4M3FN, DataType.FLOAT8E4M3FNUZ, DataType.FLOAT8E5M2, DataType.FLOAT8E5M2FNUZ, DataType.FLOAT8E8M0]);

/** Numeric dtypes the arithmetic kernels accept. */
export const NUMERIC = new Set<DataType>([
  DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16,
  DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64,
  DataType.UINT8, DataType.UINT16, DataType.UINT32, DataType.UINT64, DataType.BOOL,
]);

export function requireDtype(op: string, t: Tensor, allowed: ReadonlySet<DataType>): void {
  if (!allowed.has(t.dtype)) throw new KernelUnsupported(op, `input '${t.name}' of type ${dtypeName(t.dtype)}`);
}

/** Elements as float64 (exact for every type but int64/uint64 beyond 2^53). */
export function readF64(t: Tensor): Float64Array {
  switch (t.dtype) {
    case DataType.FLOAT16:
      return Float64Array.from(t.toTypedArray<Uint16Array>(), float16BitsToFloat32);
    case DataType.BFLOAT16:
      return Float64Array.from(t.toTypedArray<Uint16Array>(), bfloat16BitsToFloat32);
    case DataType.INT64:
    case DataType.UINT64:
      return Float64Array.from(t.toTypedArray<BigInt64Array>(), Number);
    default:
      if (FLOAT8.has(t.dtype)) return Float64Array.from(t.toTypedArray<Uint8Array>(), (b) => float8BitsToFloat32(t.dtype, b));
      if (!dtypeInfo(t.dtype).storage || t.dtype === DataType.COMPLEX64 || t.dtype === DataType.COMPLEX128) {
        throw new KernelUnsupported('read', `${dtypeName(t.dtype)} data`);
      }
      return Float64Array.from(t.toTypedArray() as ArrayLike<number>);
  }
}

/** Elements as bigint (integer and bool types only). */
export function readBig(t: Tensor): BigInt64Array | BigUint64Array {
  if (t.dtype === DataType.INT64) return t.toTypedArray<BigInt64Array>();
  if (t.dtype === DataType.UINT64) return t.toTypedArray<BigUint64Array>();
  const info = dtypeInfo(t.dtype);
  if (!info.isInteger && t.dtype !== DataType.BOOL) throw new KernelUnsupported('read', `${dtypeName(t.dtype)} as integers`);
  return BigInt64Array.from(t.toTypedArray() as ArrayLike<number>, (v) => BigInt(v));
}

/** Small integer inputs (shapes, axes, indices) as numbers. */
export function readInts(t: Tensor): number[] {
  if (t.dtype === DataType.INT64 || t.dtype === DataType.UINT64) return Array.from(t.toTypedArray<BigInt64Array>(), Number);
  if (!dtypeInfo(t.dtype).isInteger) throw new KernelUnsupported('read', `${dtypeName(t.dtype)} as indices`);
  return Array.from(t.toTypedArray() as ArrayLike<number>);
}

function wrapInt(v: number, dtype: DataType): number {
  // C-style conversion of an integral value into the type's range (two's complement wrap).
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

/** Builds a tensor of `dtype` from float64 values (floats rounded to the type, ints truncated/wrapped). */
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
    case DataType.FLOAT16:
      out = Uint16Array.from(values, (v) => float32ToFloat16Bits(Math.fround(v)));
      break;
    case DataType.BFLOAT16:
      out = Uint16Array.from(values, (v) => float32ToBfloat16Bits(Math.fround(v)));
      break;
    case DataType.BOOL:
      out = Uint8Array.from(values, (v) => (v !== 0 ? 1 : 0));
      break;
    case DataType.INT64:
      out = BigInt64Array.from({ length: n }, (_, i) => BigInt(Math.trunc(values[i]!)));
      break;
    case DataType.UINT64:
      out = BigUint64Array.from({ length: n }, (_, i) => BigInt.asUintN(64, BigInt(Math.trunc(values[i]!))));
      break;
    default: {
      const storage = dtypeInfo(dtype).storage;
      if (!storage || !dtypeInfo(dtype).isInteger) throw new KernelUnsupported('write', `${dtypeName(dtype)} results`);
      const arr = new (storage as unknown as new (n: number) => TypedArray)(n) as Int32Array;
      for (let i = 0; i < n; i++) arr[i] = wrapInt(Math.trunc(values[i]!), dtype);
      out = arr;
    }
  }
  return Tensor.fromTypedArray('', dtype, dims, out);
}

export function fromBig(dtype: DataType, dims: readonly number[], values: ArrayLike<bigint>): Tensor {
  if (dtype === DataType.INT64) return Tensor.fromTypedArray('', dtype, dims, BigInt64Array.from(values, (v) => BigInt.asIntN(64, v)));
  if (dtype === DataType.UINT64) return Tensor.fromTypedArray('', dtype, dims, BigUint64Array.from(values, (v) => BigInt.asUintN(64, v)));
  return fromF64(dtype, dims, Array.from(values, Number));
}

// ---------------------------------------------------------------------------------------------
// Broadcasting

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

/** Row-major strides of `shape` aligned to `outShape` (0 where broadcast). */
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

/** For each output element (row-major), the flat index into an input of `shape`. */
export function broadcastIndex(shape: readonly number[], outShape: readonly number[]): Int32Array | null {
  if (shape.length === outShape.length && shape.every((d, i) => d === outShape[i])) return null; // identity
  const n = elementCount(outShape);
  const idx = new Int32Array(n);
  const strides = broadcastStrides(shape, outShape);
  const rank = outShape.length;
  const counter = new Array<number>(rank).fill(0);
  let flat = 0;
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

export function normalizeAxis(node: Node, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= Math.max(rank, 1)) throw new KernelUnsupported(node.opType, `axis ${axis} for rank ${rank}`);
  return a;
}

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** Input `i` of a kernel call, required to be present. */
export function input(op: string, inputs: ReadonlyArray<Tensor | null>, i: number): Tensor {
  const t = inputs[i];
  if (!t) throw new KernelUnsupported(op, `a missing input ${i}`);
  return t;
}
