/**
 * Elementwise kernels: unary math, broadcasting binary arithmetic, comparisons and logic,
 * variadic Min/Max/Sum/Mean, Where, and the cheap neighbours Clip, Mod, Round, Sign.
 * (Cast and CastLike live in cast.ts.)
 *
 * Floats are computed in float64 and rounded to the output type; float16/bfloat16 through
 * float32, which is what ONNX's reference (numpy) does for half precision: compute in float32,
 * round the result. Integers follow C semantics: division truncates toward zero, + - * wrap to
 * the type's width; int64/uint64 use bigint on BigInt64Array/BigUint64Array so nothing is lost.
 * Integer division by zero, integer Pow that overflows or has a negative exponent, and similar
 * cases where implementations disagree are refused (KernelUnsupported).
 */
import { DataType, dtypeInfo, dtypeName, elementCount, float32ToFloat16Bits } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported, type Kernel } from './registry.js';
import {
  broadcastIndex,
  broadcastShapes,
  checkAttributes,
  domainOf,
  float64ToFloat16Bits,
  FLOAT_TYPES,
  fromBig,
  fromF64,
  input,
  intRange,
  intRangeBig,
  isFloatType,
  NUMERIC,
  NUMERIC_NO_BOOL,
  readBig,
  readF64,
  requireDtype,
  roundHalfEven,
  roundToType,
  SIGNED_INT_TYPES,
} from './util.js';

const FLOAT_OR_SIGNED = new Set<DataType>([...FLOAT_TYPES, ...SIGNED_INT_TYPES]);
const BOOLS = new Set<DataType>([DataType.BOOL]);

// ---------------------------------------------------------------------------------------------
// erf, accurate to a few ulp of float64 (series for small |x|, continued fraction for erfc).

export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax < 2) {
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    let term = x;
    let sum = x;
    const x2 = x * x;
    for (let n = 1; n < 100; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) <= 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (ax > 6) return Math.sign(x); // erfc(6) ~ 2e-17: erf rounds to +-1 in float64
  // erfc(z) = exp(-z^2)/sqrt(pi) * 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))), Lentz's method.
  const z = ax;
  const tiny = 1e-300;
  let f = z;
  let c = z;
  let d = 0;
  for (let i = 1; i < 500; i++) {
    const an = i / 2;
    d = z + an * d;
    if (d === 0) d = tiny;
    c = z + an / c;
    if (c === 0) c = tiny;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-z * z) / (f * Math.sqrt(Math.PI));
  return Math.sign(x) * (1 - erfc);
}

// ---------------------------------------------------------------------------------------------
// Unary

interface UnarySpec {
  f: (x: number) => number;
  allowed: ReadonlySet<DataType>;
  /** int64/uint64 (and, where given, every integer type) through bigint. */
  big?: (x: bigint) => bigint;
  /** Integer inputs of at most 32 bits through this instead of `f` (result wrapped to the type). */
  int?: (x: number) => number;
}

function unaryKernel(op: string, spec: UnarySpec): Kernel {
  return (inputs) => {
    const x = input(op, inputs, 0);
    requireDtype(op, x, spec.allowed);
    if (domainOf(x.dtype) === 'big') {
      if (!spec.big) throw new KernelUnsupported(op, `${dtypeName(x.dtype)} input`);
      const v = readBig(x);
      const out = x.dtype === DataType.INT64 ? new BigInt64Array(v.length) : new BigUint64Array(v.length);
      for (let i = 0; i < v.length; i++) out[i] = spec.big(v[i]!);
      return [Tensor.fromTypedArray('', x.dtype, x.dims, out)];
    }
    const v = readF64(x);
    const out = new Float64Array(v.length);
    const f = isFloatType(x.dtype) ? spec.f : (spec.int ?? spec.f);
    for (let i = 0; i < v.length; i++) out[i] = f(v[i]!);
    return [fromF64(x.dtype, x.dims, out)];
  };
}

function unary(op: string, since: number, spec: UnarySpec): void {
  kernel(op, since, unaryKernel(op, spec));
}

const relu = (x: number) => (x > 0 || Number.isNaN(x) ? x : 0);
const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
const sign = (x: number) => {
  if (Number.isNaN(x)) throw new KernelUnsupported('Sign', 'NaN (onnxruntime gives 0 for float16, numpy NaN)');
  return x > 0 ? 1 : x < 0 ? -1 : 0;
};

// Version 1 of these ops differs only by the legacy `consumed_inputs` hint, which does not change results.
unary('Neg', 1, { f: (x) => -x, allowed: FLOAT_OR_SIGNED, big: (x) => -x });
unary('Abs', 1, { f: Math.abs, allowed: NUMERIC_NO_BOOL, big: (x) => (x < 0n ? -x : x) });
unary('Sqrt', 1, { f: Math.sqrt, allowed: FLOAT_TYPES });
unary('Reciprocal', 1, { f: (x) => 1 / x, allowed: FLOAT_TYPES });
unary('Exp', 1, { f: Math.exp, allowed: FLOAT_TYPES });
unary('Log', 1, { f: Math.log, allowed: FLOAT_TYPES });
unary('Tanh', 1, { f: Math.tanh, allowed: FLOAT_TYPES });
unary('Sigmoid', 1, { f: sigmoid, allowed: FLOAT_TYPES });
unary('Relu', 1, { f: relu, allowed: FLOAT_OR_SIGNED, big: (x) => (x > 0n ? x : 0n) });
unary('Floor', 1, { f: Math.floor, allowed: FLOAT_TYPES });
unary('Ceil', 1, { f: Math.ceil, allowed: FLOAT_TYPES });
unary('Not', 1, { f: (x) => (x ? 0 : 1), allowed: BOOLS });
// erf of an integer, truncated back to the integer type (numpy's erf(x).astype): only |x| >= 6
// reaches +-1 in float64.
unary('Erf', 9, { f: erf, allowed: NUMERIC_NO_BOOL, int: (x) => (Math.abs(x) >= 6 ? Math.sign(x) : 0), big: (x) => (x >= 6n ? 1n : x <= -6n ? -1n : 0n) });
unary('Round', 11, { f: roundHalfEven, allowed: FLOAT_TYPES });
unary('Sign', 9, { f: sign, allowed: NUMERIC_NO_BOOL, big: (x) => (x > 0n ? 1n : x < 0n ? -1n : 0n) });

// ---------------------------------------------------------------------------------------------
// Binary with broadcasting

interface Broadcast {
  shape: number[];
  n: number;
  ia: Int32Array | null;
  ib: Int32Array | null;
}

function broadcast2(op: string, a: readonly number[], b: readonly number[]): Broadcast {
  const shape = broadcastShapes(op, a, b);
  return { shape, n: elementCount(shape), ia: broadcastIndex(a, shape), ib: broadcastIndex(b, shape) };
}

/** out[i] = f(a[ia[i]], b[ib[i]]) over a broadcast, in float64. */
function mapF64(bc: Broadcast, va: Float64Array, vb: Float64Array, f: (a: number, b: number) => number): Float64Array {
  const { n, ia, ib } = bc;
  const out = new Float64Array(n);
  if (!ia && !ib) for (let i = 0; i < n; i++) out[i] = f(va[i]!, vb[i]!);
  else for (let i = 0; i < n; i++) out[i] = f(va[ia ? ia[i]! : i]!, vb[ib ? ib[i]! : i]!);
  return out;
}

function mapBig(bc: Broadcast, va: ArrayLike<bigint>, vb: ArrayLike<bigint>, f: (a: bigint, b: bigint) => bigint, out: BigInt64Array | BigUint64Array): void {
  const { n, ia, ib } = bc;
  for (let i = 0; i < n; i++) out[i] = f(va[ia ? ia[i]! : i]!, vb[ib ? ib[i]! : i]!);
}

function sameType(op: string, a: Tensor, b: Tensor): void {
  if (a.dtype !== b.dtype) throw new KernelUnsupported(op, `mixed input types ${dtypeName(a.dtype)} and ${dtypeName(b.dtype)}`);
}

interface ArithSpec {
  /** Floats (float64 result, rounded to the type by the caller). */
  float: (a: number, b: number) => number;
  /** Integers of at most 32 bits: an exact integer result, wrapped to the type afterwards. */
  int: (a: number, b: number, dtype: DataType) => number;
  big: (a: bigint, b: bigint) => bigint;
  allowed: ReadonlySet<DataType>;
}

function arithmetic(op: string, spec: ArithSpec): Kernel {
  return (inputs) => {
    const a = input(op, inputs, 0);
    const b = input(op, inputs, 1);
    requireDtype(op, a, spec.allowed);
    sameType(op, a, b);
    const bc = broadcast2(op, a.dims, b.dims);
    const dt = a.dtype;
    if (domainOf(dt) === 'big') {
      const out = dt === DataType.INT64 ? new BigInt64Array(bc.n) : new BigUint64Array(bc.n);
      mapBig(bc, readBig(a), readBig(b), spec.big, out);
      return [Tensor.fromTypedArray('', dt, bc.shape, out)];
    }
    const va = readF64(a);
    const vb = readF64(b);
    const out = isFloatType(dt) ? mapF64(bc, va, vb, spec.float) : mapF64(bc, va, vb, (x, y) => spec.int(x, y, dt));
    return [fromF64(dt, bc.shape, out)];
  };
}

/** Exact low 32 bits of an integer product (float64 products of 32-bit values can exceed 2^53). */
function intMul(a: number, b: number, dtype: DataType): number {
  if (dtype === DataType.INT32) return Math.imul(a, b);
  if (dtype === DataType.UINT32) return Math.imul(a, b) >>> 0;
  return a * b; // <= 16-bit operands: exact
}

function intDiv(op: string) {
  return (a: number, b: number): number => {
    if (b === 0) throw new KernelUnsupported(op, 'integer division by zero');
    return Math.trunc(a / b); // exact for 32-bit operands
  };
}

function bigDiv(op: string) {
  return (a: bigint, b: bigint): bigint => {
    if (b === 0n) throw new KernelUnsupported(op, 'integer division by zero');
    return a / b;
  };
}

// Add/Sub/Mul/Div 1 and 6 use the legacy broadcast/axis attributes; from 7 numpy broadcasting.
kernel('Add', 7, arithmetic('Add', { float: (a, b) => a + b, int: (a, b) => a + b, big: (a, b) => a + b, allowed: NUMERIC_NO_BOOL }));
kernel('Sub', 7, arithmetic('Sub', { float: (a, b) => a - b, int: (a, b) => a - b, big: (a, b) => a - b, allowed: NUMERIC_NO_BOOL }));
kernel('Mul', 7, arithmetic('Mul', { float: (a, b) => a * b, int: intMul, big: (a, b) => a * b, allowed: NUMERIC_NO_BOOL }));
kernel('Div', 7, arithmetic('Div', { float: (a, b) => a / b, int: intDiv('Div'), big: bigDiv('Div'), allowed: NUMERIC_NO_BOOL }));

// Mod: fmod=0 takes the divisor's sign (integers only, like Python's %); fmod=1 the dividend's (C fmod).
kernel('Mod', 10, (inputs, node) => {
  checkAttributes(node, ['fmod']);
  const fmod = node.attrInt('fmod', 0) === 1;
  const a = input('Mod', inputs, 0);
  const b = input('Mod', inputs, 1);
  requireDtype('Mod', a, NUMERIC_NO_BOOL);
  sameType('Mod', a, b);
  if (isFloatType(a.dtype) && !fmod) throw new KernelUnsupported('Mod', 'fmod=0 on floats (invalid)');
  const spec: ArithSpec = {
    float: (x, y) => x % y,
    int: (x, y) => {
      if (y === 0) throw new KernelUnsupported('Mod', 'integer modulo by zero');
      const r = x % y;
      return fmod || r === 0 || (r < 0) === (y < 0) ? r : r + y;
    },
    big: (x, y) => {
      if (y === 0n) throw new KernelUnsupported('Mod', 'integer modulo by zero');
      const r = x % y;
      return fmod || r === 0n || (r < 0n) === (y < 0n) ? r : r + y;
    },
    allowed: NUMERIC_NO_BOOL,
  };
  return arithmetic('Mod', spec)([a, b], node, { opsetVersion: 10 });
});

// ---------------------------------------------------------------------------------------------
// Pow: the result has the base's type; the exponent may be any numeric type (from opset 12).

/** C pow where JavaScript's Math.pow differs (1^y and (-1)^+-inf are 1 in C). */
function cPow(x: number, y: number): number {
  if (x === 1) return 1;
  if (x === -1 && (y === Infinity || y === -Infinity)) return 1;
  return Math.pow(x, y);
}

function intPow(base: bigint, exp: bigint, dtype: DataType): bigint {
  if (exp < 0n) {
    if (base === 1n) return 1n;
    if (base === -1n) return exp % 2n === 0n ? 1n : -1n;
    throw new KernelUnsupported('Pow', 'an integer base with a negative integer exponent');
  }
  const [lo, hi] = intRangeBig(dtype);
  if (base === 0n || base === 1n) return exp === 0n ? 1n : base;
  if (base === -1n) return exp % 2n === 0n ? 1n : -1n;
  if (exp >= 64n) throw new KernelUnsupported('Pow', `an integer power that overflows ${dtypeName(dtype)}`);
  const r = base ** exp;
  if (r < lo || r > hi) throw new KernelUnsupported('Pow', `an integer power that overflows ${dtypeName(dtype)}`);
  return r;
}

kernel('Pow', 7, (inputs, node, ctx) => {
  const a = input('Pow', inputs, 0);
  const b = input('Pow', inputs, 1);
  requireDtype('Pow', a, NUMERIC_NO_BOOL);
  requireDtype('Pow', b, NUMERIC_NO_BOOL);
  if (ctx.opsetVersion < 12) sameType('Pow', a, b);
  checkAttributes(node, []);
  const bc = broadcast2('Pow', a.dims, b.dims);
  const dt = a.dtype;
  if (!isFloatType(dt) && !isFloatType(b.dtype)) {
    // Integer ** integer: exact, refusing overflow (numpy wraps, C pow rounds through double).
    const va = readBig(a);
    const vb = readBig(b);
    const out = new BigInt64Array(bc.n);
    mapBig(bc, va, vb, (x, y) => intPow(x, y, dt), out);
    return [fromBig(dt, bc.shape, out)];
  }
  const va = readF64(a);
  const vb = readF64(b);
  if (domainOf(b.dtype) === 'big') for (const e of readBig(b)) if (BigInt(Number(e)) !== e) throw new KernelUnsupported('Pow', 'int64 exponents beyond 2^53');
  if (domainOf(dt) === 'big') for (const e of va) if (Math.abs(e) > 2 ** 53) throw new KernelUnsupported('Pow', 'int64 bases beyond 2^53');
  const out = mapF64(bc, va, vb, cPow);
  if (isFloatType(dt)) {
    // A half-precision base with an exponent of another type: numpy computes in float64 and
    // rounds once, onnxruntime in float32; refuse the rare results where the two roundings differ.
    if (dt === DataType.BFLOAT16 && b.dtype !== dt) throw new KernelUnsupported('Pow', 'a bfloat16 base with an exponent of another type');
    if (dt === DataType.FLOAT16 && b.dtype !== dt) {
      for (const r of out) {
        if (!Number.isNaN(r) && float64ToFloat16Bits(r) !== float32ToFloat16Bits(Math.fround(r))) {
          throw new KernelUnsupported('Pow', `a float16 result (${r}) whose rounding depends on the implementation`);
        }
      }
    }
    return [fromF64(dt, bc.shape, out)];
  }
  // Integer base, float exponent: the float result truncated into the base's type.
  const [lo, hi] = domainOf(dt) === 'big' ? [-(2 ** 63), 2 ** 63] : intRange(dt);
  for (let i = 0; i < out.length; i++) {
    const t = Math.trunc(out[i]!);
    if (!(t >= lo && t <= hi) || Math.abs(t) > 2 ** 53) throw new KernelUnsupported('Pow', `result ${out[i]} does not fit ${dtypeName(dt)}`);
    out[i] = t;
  }
  return [fromF64(dt, bc.shape, out)];
});

// ---------------------------------------------------------------------------------------------
// Comparisons and logic (bool output)

function compare(op: string, f: (a: number, b: number) => boolean, fb: (a: bigint, b: bigint) => boolean, allowed: ReadonlySet<DataType>): Kernel {
  return (inputs) => {
    const a = input(op, inputs, 0);
    const b = input(op, inputs, 1);
    sameType(op, a, b);
    if (a.dtype === DataType.STRING && op === 'Equal') return [stringEqual(a, b)];
    requireDtype(op, a, allowed);
    const bc = broadcast2(op, a.dims, b.dims);
    const { n, ia, ib } = bc;
    const out = new Uint8Array(n);
    if (domainOf(a.dtype) === 'big') {
      const va = readBig(a);
      const vb = readBig(b);
      for (let i = 0; i < n; i++) out[i] = fb(va[ia ? ia[i]! : i]!, vb[ib ? ib[i]! : i]!) ? 1 : 0;
    } else {
      const va = readF64(a);
      const vb = readF64(b);
      for (let i = 0; i < n; i++) out[i] = f(va[ia ? ia[i]! : i]!, vb[ib ? ib[i]! : i]!) ? 1 : 0;
    }
    return [Tensor.fromTypedArray('', DataType.BOOL, bc.shape, out)];
  };
}

function stringEqual(a: Tensor, b: Tensor): Tensor {
  const bc = broadcast2('Equal', a.dims, b.dims);
  const sa = a.strings();
  const sb = b.strings();
  const out = new Uint8Array(bc.n);
  for (let i = 0; i < bc.n; i++) {
    const x = sa[bc.ia ? bc.ia[i]! : i]!;
    const y = sb[bc.ib ? bc.ib[i]! : i]!;
    out[i] = x.length === y.length && x.every((c, k) => c === y[k]) ? 1 : 0;
  }
  return Tensor.fromTypedArray('', DataType.BOOL, bc.shape, out);
}

// Version 1 of these took the legacy broadcast/axis attributes; from 7 numpy broadcasting.
kernel('Equal', 7, compare('Equal', (a, b) => a === b, (a, b) => a === b, NUMERIC));
kernel('Less', 7, compare('Less', (a, b) => a < b, (a, b) => a < b, NUMERIC));
kernel('LessOrEqual', 12, compare('LessOrEqual', (a, b) => a <= b, (a, b) => a <= b, NUMERIC));
kernel('Greater', 7, compare('Greater', (a, b) => a > b, (a, b) => a > b, NUMERIC));
kernel('GreaterOrEqual', 12, compare('GreaterOrEqual', (a, b) => a >= b, (a, b) => a >= b, NUMERIC));

function logic(op: string, f: (a: number, b: number) => number): Kernel {
  return (inputs) => {
    const a = input(op, inputs, 0);
    const b = input(op, inputs, 1);
    requireDtype(op, a, BOOLS);
    requireDtype(op, b, BOOLS);
    const bc = broadcast2(op, a.dims, b.dims);
    const va = a.toTypedArray<Uint8Array>();
    const vb = b.toTypedArray<Uint8Array>();
    const out = new Uint8Array(bc.n);
    const { ia, ib } = bc;
    for (let i = 0; i < bc.n; i++) out[i] = f(va[ia ? ia[i]! : i]! ? 1 : 0, vb[ib ? ib[i]! : i]! ? 1 : 0);
    return [Tensor.fromTypedArray('', DataType.BOOL, bc.shape, out)];
  };
}
kernel('And', 7, logic('And', (a, b) => a & b));
kernel('Or', 7, logic('Or', (a, b) => a | b));
kernel('Xor', 7, logic('Xor', (a, b) => a ^ b));

// ---------------------------------------------------------------------------------------------
// Variadic Max/Min/Sum/Mean: folded left to right with broadcasting, each step rounded to the
// type (as numpy's in-place accumulation does), Mean divided at the end.

const nanMax = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b));
const nanMin = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b));

function variadic(op: string, f: (a: number, b: number) => number, fb: ((a: bigint, b: bigint) => bigint) | null, allowed: ReadonlySet<DataType>, mean = false): Kernel {
  return (inputs) => {
    const present = inputs.filter((t): t is Tensor => t !== null);
    if (present.length === 0) throw new KernelUnsupported(op, 'no inputs');
    const dt = present[0]!.dtype;
    for (const t of present) {
      requireDtype(op, t, allowed);
      sameType(op, present[0]!, t);
    }
    let shape = [...present[0]!.dims];
    if (domainOf(dt) === 'big') {
      if (!fb) throw new KernelUnsupported(op, `${dtypeName(dt)} inputs`);
      let acc: BigInt64Array | BigUint64Array = readBig(present[0]!).slice();
      for (const t of present.slice(1)) {
        const bc = broadcast2(op, shape, t.dims);
        const out = dt === DataType.INT64 ? new BigInt64Array(bc.n) : new BigUint64Array(bc.n);
        mapBig(bc, acc, readBig(t), fb, out);
        acc = out;
        shape = bc.shape;
      }
      return [Tensor.fromTypedArray('', dt, shape, acc)];
    }
    const float = isFloatType(dt);
    const step = float ? (a: number, b: number) => roundToType(dt, f(a, b)) : f;
    let acc = readF64(present[0]!);
    for (const t of present.slice(1)) {
      const bc = broadcast2(op, shape, t.dims);
      acc = mapF64(bc, acc, readF64(t), step);
      if (!float) acc = readF64(fromF64(dt, bc.shape, acc)); // wrap like the integer type
      shape = bc.shape;
    }
    if (mean) {
      const k = present.length;
      for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! / k;
    }
    return [fromF64(dt, shape, acc)];
  };
}

// Max/Min/Sum/Mean 1 and 6 required equal shapes, which broadcasting computes the same way.
kernel('Max', 1, variadic('Max', nanMax, (a, b) => (a > b ? a : b), NUMERIC_NO_BOOL));
kernel('Min', 1, variadic('Min', nanMin, (a, b) => (a < b ? a : b), NUMERIC_NO_BOOL));
kernel('Sum', 1, variadic('Sum', (a, b) => a + b, (a, b) => a + b, NUMERIC_NO_BOOL));
kernel('Mean', 1, variadic('Mean', (a, b) => a + b, null, FLOAT_TYPES, true));

// ---------------------------------------------------------------------------------------------
// Clip: min/max attributes before opset 11, optional inputs from 11.

kernel('Clip', 6, (inputs, node, ctx) => {
  const x = input('Clip', inputs, 0);
  requireDtype('Clip', x, NUMERIC_NO_BOOL);
  let lo: number | bigint | null = null;
  let hi: number | bigint | null = null;
  if (ctx.opsetVersion < 11) {
    checkAttributes(node, ['min', 'max']);
    requireDtype('Clip', x, FLOAT_TYPES);
    lo = node.attrFloat('min', -3.4028234663852886e38);
    hi = node.attrFloat('max', 3.4028234663852886e38);
  } else {
    checkAttributes(node, []);
    const bound = (t: Tensor | null | undefined): number | bigint | null => {
      if (!t) return null;
      sameType('Clip', x, t);
      if (t.elementCount !== 1) throw new KernelUnsupported('Clip', 'non-scalar bounds');
      return domainOf(t.dtype) === 'big' ? readBig(t)[0]! : readF64(t)[0]!;
    };
    lo = bound(inputs[1]);
    hi = bound(inputs[2]);
  }
  if (domainOf(x.dtype) === 'big') {
    const v = readBig(x);
    const out = x.dtype === DataType.INT64 ? new BigInt64Array(v.length) : new BigUint64Array(v.length);
    for (let i = 0; i < v.length; i++) {
      let e = v[i]!;
      if (lo !== null && e < (lo as bigint)) e = lo as bigint;
      if (hi !== null && e > (hi as bigint)) e = hi as bigint;
      out[i] = e;
    }
    return [Tensor.fromTypedArray('', x.dtype, x.dims, out)];
  }
  const v = readF64(x);
  const out = new Float64Array(v.length);
  // numpy's clip: minimum(maximum(x, lo), hi), so hi wins when lo > hi; NaN stays NaN.
  for (let i = 0; i < v.length; i++) {
    let e = v[i]!;
    if (lo !== null && e < (lo as number)) e = lo as number;
    if (hi !== null && e > (hi as number)) e = hi as number;
    out[i] = e;
  }
  return [fromF64(x.dtype, x.dims, out)];
});

// ---------------------------------------------------------------------------------------------
// Where: selects whole elements, so every fixed-size dtype and strings work without conversion.

kernel('Where', 9, (inputs) => {
  const c = input('Where', inputs, 0);
  const x = input('Where', inputs, 1);
  const y = input('Where', inputs, 2);
  if (c.dtype !== DataType.BOOL) throw new KernelUnsupported('Where', `condition of type ${dtypeName(c.dtype)}`);
  sameType('Where', x, y);
  const shape = broadcastShapes('Where', c.dims, x.dims, y.dims);
  const n = elementCount(shape);
  const ic = broadcastIndex(c.dims, shape);
  const ix = broadcastIndex(x.dims, shape);
  const iy = broadcastIndex(y.dims, shape);
  const cv = c.toTypedArray<Uint8Array>();
  if (x.dtype === DataType.STRING) {
    const sx = x.strings();
    const sy = y.strings();
    const out: Uint8Array[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = cv[ic ? ic[i]! : i] ? sx[ix ? ix[i]! : i]! : sy[iy ? iy[i]! : i]!;
    return [Tensor.fromStrings('', shape, out)];
  }
  const bits = dtypeInfo(x.dtype).bits;
  if (bits < 8) throw new KernelUnsupported('Where', `${dtypeName(x.dtype)} values`);
  const size = bits / 8;
  const xb = x.bytes();
  const yb = y.bytes();
  const out = new Uint8Array(n * size);
  for (let i = 0; i < n; i++) {
    const j = cv[ic ? ic[i]! : i] ? (ix ? ix[i]! : i) * size : -1;
    if (j >= 0) out.set(xb.subarray(j, j + size), i * size);
    else {
      const k = (iy ? iy[i]! : i) * size;
      out.set(yb.subarray(k, k + size), i * size);
    }
  }
  return [Tensor.fromBytes('', x.dtype, shape, out)];
});

