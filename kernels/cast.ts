/**
 * Cast (opset 1: `to` as a type name; 6+: a type number; 19+: `saturate` for float8 targets;
 * 21+: int4/uint4) and CastLike (15+).
 *
 * Every numeric type converts to every other, where the result is the same in ONNX's reference
 * (numpy / ml_dtypes) and onnxruntime; the rest is refused:
 *  - float -> integer truncates toward zero; NaN, infinities and values outside the target's range
 *    are undefined behaviour in C and differ between implementations: KernelUnsupported;
 *  - integer -> integer wraps (two's complement, as numpy and C do); -> bool is `!= 0`;
 *  - float -> float rounds to nearest even; float64 -> float16/bfloat16/float8 (and integers
 *    beyond float32's exact range) are refused only where rounding directly and rounding through
 *    float32 (what onnxruntime does) give different results;
 *  - float8 targets follow ONNX's saturate table (see util.float8Encode);
 *  - int4/uint4/int2/uint2 targets take integral in-range values only (implementations clip and
 *    round or wrap differently beyond that);
 *  - strings, complex numbers and float8e8m0/float4e2m1 targets are not supported.
 */
import {
  bfloat16BitsToFloat32,
  DataType,
  dtypeInfo,
  dtypeName,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  packSubByte,
} from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported } from './registry.js';
import {
  checkAttributes,
  domainOf,
  FLOAT8_TYPES,
  float64ToFloat16Bits,
  float8Encode,
  FLOAT_TYPES,
  fromBig,
  fromF64,
  input,
  INT_TYPES,
  intRange,
  readBig,
  readF64,
  SUBBYTE_INT_TYPES,
} from './util.js';

/** Types Cast reads. */
const SOURCES = new Set<DataType>([...FLOAT_TYPES, ...INT_TYPES, ...FLOAT8_TYPES, ...SUBBYTE_INT_TYPES, DataType.BOOL, DataType.FLOAT8E8M0, DataType.FLOAT4E2M1]);
/** Types Cast writes. */
const TARGETS = new Set<DataType>([...FLOAT_TYPES, ...INT_TYPES, ...FLOAT8_TYPES, ...SUBBYTE_INT_TYPES, DataType.BOOL]);

/** Round a float64 to `mant` fraction bits, nearest even, with subnormals below 2^minExp; no overflow. */
function roundSignificand(v: number, mant: number, minExp: number): number {
  if (!Number.isFinite(v) || v === 0) return v;
  const a = Math.abs(v);
  let e = a >= 2 ** minExp ? Math.floor(Math.log2(a)) : minExp;
  if (a >= 2 ** minExp) {
    if (2 ** e > a) e--;
    else if (2 ** (e + 1) <= a) e++;
  }
  const q = 2 ** (e - mant);
  const n = a / q;
  const f = Math.floor(n);
  const d = n - f;
  const r = d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(v) * r * q;
}

const BF16_MAX = 3.3895313892515355e38;

/** float64 -> bfloat16 value, rounded once (no float32 step). */
function directBfloat16(v: number): number {
  const r = roundSignificand(v, 7, -126);
  return Math.abs(r) > BF16_MAX ? Math.sign(r) * Infinity : r;
}

function castTo(op: string, x: Tensor, to: DataType, saturate: boolean): Tensor {
  if (!SOURCES.has(x.dtype)) throw new KernelUnsupported(op, `casting from ${dtypeName(x.dtype)}`);
  if (!TARGETS.has(to)) throw new KernelUnsupported(op, `casting to ${dtypeName(to)}`);
  if (x.dtype === to) return Tensor.fromBytes('', to, x.dims, x.bytes());
  const n = x.elementCount;

  if (domainOf(x.dtype) === 'big') {
    const v = readBig(x);
    if (INT_TYPES.has(to) || to === DataType.BOOL) return fromBig(to, x.dims, v); // wraps
    // Integer -> float: exact below 2^53; beyond, Number() rounds once, which only float64 may keep.
    const f = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const d = Number(v[i]!);
      if (to !== DataType.DOUBLE && BigInt(d) !== v[i]!) throw new KernelUnsupported(op, `${v[i]} (${dtypeName(x.dtype)}) to ${dtypeName(to)}: double rounding`);
      f[i] = d;
    }
    return floatsTo(op, f, x.dims, to, saturate, true);
  }

  const v = readF64(x);
  const fromFloat = !dtypeInfo(x.dtype).isInteger && x.dtype !== DataType.BOOL;
  if (to === DataType.BOOL) return fromF64(to, x.dims, v);
  if (INT_TYPES.has(to) || SUBBYTE_INT_TYPES.has(to)) {
    const info = dtypeInfo(to);
    if (SUBBYTE_INT_TYPES.has(to)) {
      const [lo, hi] = intRange(to);
      for (const e of v) {
        if (!(Number.isInteger(e) && e >= lo && e <= hi)) throw new KernelUnsupported(op, `${e} to ${dtypeName(to)} (implementations round and clip differently)`);
      }
      return Tensor.fromBytes('', to, x.dims, packSubByte(v, info.bits as 2 | 4));
    }
    if (fromFloat) {
      const lo = info.isSigned ? -(2 ** (info.bits - 1)) : 0;
      const hiExclusive = info.isSigned ? 2 ** (info.bits - 1) : 2 ** info.bits;
      for (let i = 0; i < n; i++) {
        const t = Math.trunc(v[i]!);
        if (!(t >= lo && t < hiExclusive)) throw new KernelUnsupported(op, `${v[i]} to ${dtypeName(to)} (out of range; undefined in C)`);
        v[i] = t;
      }
    }
    if (domainOf(to) === 'big') {
      const out = to === DataType.INT64 ? new BigInt64Array(n) : new BigUint64Array(n);
      for (let i = 0; i < n; i++) out[i] = BigInt(v[i]!); // stores wrap (int32 -1 -> uint64 2^64-1, as C)
      return Tensor.fromTypedArray('', to, x.dims, out);
    }
    return fromF64(to, x.dims, v); // wraps integers to the width
  }
  // -> a float type. Sources other than float64 and 32-bit integers are exact in float32.
  const maybeInexact = x.dtype === DataType.DOUBLE || x.dtype === DataType.INT32 || x.dtype === DataType.UINT32;
  return floatsTo(op, v, x.dims, to, saturate, maybeInexact);
}

/**
 * Float values (exact) -> a float type. `maybeInexact`: values need not be exact float32 values,
 * so a half-precision or float8 result is checked to be the same whether rounded directly or
 * through float32.
 */
function floatsTo(op: string, v: Float64Array, dims: readonly number[], to: DataType, saturate: boolean, maybeInexact: boolean): Tensor {
  const n = v.length;
  const ambiguous = (e: number) => new KernelUnsupported(op, `${e} to ${dtypeName(to)}: rounding directly and through float32 differ`);
  switch (to) {
    case DataType.DOUBLE:
      return Tensor.fromTypedArray('', to, dims, Float64Array.from(v));
    case DataType.FLOAT:
      return Tensor.fromTypedArray('', to, dims, Float32Array.from(v));
    case DataType.FLOAT16: {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const e = v[i]!;
        out[i] = float64ToFloat16Bits(e);
        if (maybeInexact && !Number.isNaN(e) && out[i] !== float32ToFloat16Bits(Math.fround(e))) throw ambiguous(e);
      }
      return Tensor.fromTypedArray('', to, dims, out);
    }
    case DataType.BFLOAT16: {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const e = v[i]!;
        out[i] = float32ToBfloat16Bits(Math.fround(e));
        if (maybeInexact && !Number.isNaN(e) && bfloat16BitsToFloat32(out[i]!) !== directBfloat16(e)) throw ambiguous(e);
      }
      return Tensor.fromTypedArray('', to, dims, out);
    }
    default: {
      if (!FLOAT8_TYPES.has(to)) throw new KernelUnsupported(op, `casting to ${dtypeName(to)}`);
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const e = v[i]!;
        out[i] = float8Encode(to, e, saturate);
        if (maybeInexact && Math.fround(e) !== e && float8Encode(to, Math.fround(e), saturate) !== out[i]) throw ambiguous(e);
      }
      return Tensor.fromTypedArray('', to, dims, out);
    }
  }
}

function saturateOf(node: Node, opset: number): boolean {
  return opset >= 19 ? node.attrInt('saturate', 1) !== 0 : true;
}

kernel('Cast', 1, (inputs, node, ctx) => {
  checkAttributes(node, ['to', 'saturate']);
  const x = input('Cast', inputs, 0);
  const a = node.attribute('to');
  let to: number | undefined;
  if (a?.type === 'int') to = Number(a.value);
  else if (a?.type === 'string') {
    // Cast-1 names the type ("FLOAT", "INT64", ...).
    const name = new TextDecoder().decode(a.value).toUpperCase();
    to = (DataType as Record<string, number>)[name === 'FLOAT32' ? 'FLOAT' : name];
  }
  if (to === undefined) throw new KernelUnsupported('Cast', 'a missing or unknown "to" attribute');
  return [castTo('Cast', x, to as DataType, saturateOf(node, ctx.opsetVersion))];
});

kernel('CastLike', 15, (inputs, node, ctx) => {
  checkAttributes(node, ['saturate']);
  const x = input('CastLike', inputs, 0);
  const like = input('CastLike', inputs, 1);
  return [castTo('CastLike', x, like.dtype, saturateOf(node, ctx.opsetVersion))];
});

/** Casts a tensor as the Cast kernel does (for other kernels and passes). */
export function castTensor(x: Tensor, to: DataType, saturate = true): Tensor {
  return castTo('Cast', x, to, saturate);
}
