/**
 * Elementwise kernels: unary math, broadcasting binary arithmetic, comparisons and logic,
 * variadic Min/Max/Sum/Mean, Where, Cast and CastLike.
 *
 * Floats are computed in float64 and rounded to the output type (float16/bfloat16 through
 * float32, as ONNX's reference does); integers follow C semantics (division truncates, results
 * wrap to the type's width); int64/uint64 use bigint so no precision is lost.
 */
import { DataType, dtypeInfo, dtypeName } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported, type Kernel } from './registry.js';
import { broadcastIndex, broadcastShapes, domainOf, fromBig, fromF64, input, NUMERIC, readBig, readF64, requireDtype } from './util.js';

const FLOATS = new Set<DataType>([DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16]);
const isFloat = (d: DataType) => FLOATS.has(d);

// ---------------------------------------------------------------------------------------------
// Unary

function erf(x: number): number {
  // Abramowitz-Stegun is not exact enough; use the series / continued fraction split.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
    let term = x;
    let sum = x;
    const x2 = x * x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for large |x|.
  const z = ax;
  let f = z;
  let c = z;
  let d = 0;
  const tiny = 1e-300;
  for (let i = 1; i < 300; i++) {
    const an = i / 2;
    d = z + an * d;
    d = d === 0 ? tiny : d;
    c = z + an / c;
    c = c === 0 ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-z * z) / (f * Math.sqrt(Math.PI));
  return Math.sign(x) * (1 - erfc);
}

type Unary = (x: number) => number;

function unary(op: string, f: Unary, allowed: ReadonlySet<DataType>, bigF?: (x: bigint) => bigint): Kernel {
  return (inputs) => {
    const x = input(op, inputs, 0);
    requireDtype(op, x, allowed);
    if (domainOf(x.dtype) === 'big') {
      if (!bigF) throw new KernelUnsupported(op, `${dtypeName(x.dtype)} input`);
      return [fromBig(x.dtype, x.dims, Array.from(readBig(x), bigF))];
    }
    const v = readF64(x);
    const out = new Float64Array(v.length);
    const round = x.dtype === DataType.DOUBLE ? (y: number) => y : Math.fround;
    for (let i = 0; i < v.length; i++) out[i] = isFloat(x.dtype) ? round(f(v[i]!)) : f(v[i]!);
    return [fromF64(x.dtype, x.dims, out)];
  };
}

const SIGNED_INTS = new Set<DataType>([DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64]);
const NUM_NO_BOOL = new Set([...NUMERIC].filter((d) => d !== DataType.BOOL));
const FLOAT_OR_SIGNED = new Set([...FLOATS, ...SIGNED_INTS]);

kernel('Neg', 6, unary('Neg', (x) => -x, FLOAT_OR_SIGNED, (x) => -x));
kernel('Abs', 6, unary('Abs', Math.abs, NUM_NO_BOOL, (x) => (x < 0n ? -x : x)));
kernel('Sqrt', 6, unary('Sqrt', Math.sqrt, FLOATS));
kernel('Reciprocal', 6, unary('Reciprocal', (x) => 1 / x, FLOATS));
kernel('Exp', 6, unary('Exp', Math.exp, FLOATS));
kernel('Log', 6, unary('Log', Math.log, FLOATS));
kernel('Erf', 9, unary('Erf', erf, NUM_NO_BOOL));
kernel('Tanh', 6, unary('Tanh', Math.tanh, FLOATS));
kernel('Sigmoid', 6, unary('Sigmoid', (x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))), FLOATS));
kernel('Relu', 6, unary('Relu', (x) => (x > 0 ? x : x === 0 ? 0 : Number.isNaN(x) ? x : 0), new Set([...FLOATS, ...SIGNED_INTS]), (x) => (x > 0n ? x : 0n)));
kernel('Floor', 6, unary('Floor', Math.floor, FLOATS));
kernel('Ceil', 6, unary('Ceil', Math.ceil, FLOATS));
kernel('Not', 1, unary('Not', (x) => (x ? 0 : 1), new Set([DataType.BOOL])));

// ---------------------------------------------------------------------------------------------
// Binary with broadcasting

interface BinaryOp {
  f64?: (a: number, b: number, dtype: DataType) => number;
  big?: (a: bigint, b: bigint) => bigint | boolean;
  /** Output dtype from the first input's dtype (default: same). */
  out?: (dtype: DataType) => DataType;
  allowed: ReadonlySet<DataType>;
}

function binaryCompute(op: string, a: Tensor, b: Tensor, spec: BinaryOp, outDtype: DataType): Tensor {
  const shape = broadcastShapes(op, a.dims, b.dims);
  const ia = broadcastIndex(a.dims, shape);
  const ib = broadcastIndex(b.dims, shape);
  const n = shape.reduce((x, y) => x * y, 1);
  if (domainOf(a.dtype) === 'big' || domainOf(b.dtype) === 'big') {
    if (!spec.big) throw new KernelUnsupported(op, `${dtypeName(a.dtype)} inputs`);
    const va = readBig(a);
    const vb = readBig(b);
    const out = new Array<bigint>(n);
    const bools = new Float64Array(outDtype === DataType.BOOL ? n : 0);
    for (let i = 0; i < n; i++) {
      const r = spec.big(va[ia ? ia[i]! : i]!, vb[ib ? ib[i]! : i]!);
      if (typeof r === 'boolean') bools[i] = r ? 1 : 0;
      else out[i] = r;
    }
    return outDtype === DataType.BOOL ? fromF64(DataType.BOOL, shape, bools) : fromBig(outDtype, shape, out);
  }
  if (!spec.f64) throw new KernelUnsupported(op, `${dtypeName(a.dtype)} inputs`);
  const va = readF64(a);
  const vb = readF64(b);
  const out = new Float64Array(n);
  const f = spec.f64;
  const dt = a.dtype;
  const rounding = isFloat(outDtype) && outDtype !== DataType.DOUBLE;
  for (let i = 0; i < n; i++) {
    const r = f(va[ia ? ia[i]! : i]!, vb[ib ? ib[i]! : i]!, dt);
    out[i] = rounding ? Math.fround(r) : r;
  }
  return fromF64(outDtype, shape, out);
}

function binary(op: string, spec: BinaryOp): Kernel {
  return (inputs) => {
    const a = input(op, inputs, 0);
    const b = input(op, inputs, 1);
    requireDtype(op, a, spec.allowed);
    requireDtype(op, b, spec.allowed);
    if (a.dtype !== b.dtype && op !== 'Pow') throw new KernelUnsupported(op, `mixed input types ${dtypeName(a.dtype)} and ${dtypeName(b.dtype)}`);
    return [binaryCompute(op, a, b, spec, spec.out ? spec.out(a.dtype) : a.dtype)];
  };
}

/** Integer results of + - * must wrap like C; float64 is exact below 2^53, so only int32 multiplication needs care. */
function intArith(f: (a: number, b: number) => number, dtype: DataType, a: number, b: number): number {
  if (isFloat(dtype)) return f(a, b);
  if (dtype === DataType.INT32 && f === mul) return Math.imul(a, b);
  if (dtype === DataType.UINT32 && f === mul) return Math.imul(a, b) >>> 0;
  return f(a, b);
}
const add = (a: number, b: number) => a + b;
const sub = (a: number, b: number) => a - b;
const mul = (a: number, b: number) => a * b;

const ARITH = NUM_NO_BOOL;
kernel('Add', 7, binary('Add', { f64: (a, b, d) => intArith(add, d, a, b), big: (a, b) => a + b, allowed: ARITH }));
kernel('Sub', 7, binary('Sub', { f64: (a, b, d) => intArith(sub, d, a, b), big: (a, b) => a - b, allowed: ARITH }));
kernel('Mul', 7, binary('Mul', { f64: (a, b, d) => intArith(mul, d, a, b), big: (a, b) => a * b, allowed: ARITH }));
kernel(
  'Div',
  7,
  binary('Div', {
    f64: (a, b, d) => {
      if (isFloat(d)) return a / b;
      if (b === 0) throw new KernelUnsupported('Div', 'integer division by zero');
      return Math.trunc(a / b);
    },
    big: (a, b) => {
      if (b === 0n) throw new KernelUnsupported('Div', 'integer division by zero');
      return a / b;
    },
    allowed: ARITH,
  }),
);

function powKernel(): Kernel {
  return (inputs) => {
    const a = input('Pow', inputs, 0);
    const b = input('Pow', inputs, 1);
    requireDtype('Pow', a, ARITH);
    requireDtype('Pow', b, ARITH);
    if ((domainOf(a.dtype) === 'big' || domainOf(b.dtype) === 'big') && !isFloat(a.dtype) && !isFloat(b.dtype)) {
      return [binaryCompute('Pow', a, b, {
        big: (x, y) => {
          if (y < 0n) throw new KernelUnsupported('Pow', 'negative integer exponents');
          return x ** y;
        },
        allowed: ARITH,
      }, a.dtype)];
    }
    // A float on either side: float64 pow (int64 operands of such tests are small), result in the base's type.
    const fa = domainOf(a.dtype) === 'big' ? fromF64(DataType.DOUBLE, a.dims, readF64(a)) : a;
    const fb = domainOf(b.dtype) === 'big' ? fromF64(DataType.DOUBLE, b.dims, readF64(b)) : b;
    const r = binaryCompute('Pow', fa, fb, { f64: (x, y) => (isFloat(a.dtype) ? Math.pow(x, y) : Math.trunc(Math.pow(x, y))), allowed: ARITH }, isFloat(a.dtype) ? a.dtype : DataType.DOUBLE);
    return [isFloat(a.dtype) ? r : fromF64(a.dtype, r.dims, readF64(r))];
  };
}
kernel('Pow', 7, powKernel());

const COMPARABLE = new Set([...NUMERIC]);
const toBool = () => DataType.BOOL as DataType;
kernel('Equal', 7, binary('Equal', { f64: (a, b) => (a === b ? 1 : 0), big: (a, b) => a === b, out: toBool, allowed: COMPARABLE }));
kernel('Less', 7, binary('Less', { f64: (a, b) => (a < b ? 1 : 0), big: (a, b) => a < b, out: toBool, allowed: COMPARABLE }));
kernel('LessOrEqual', 12, binary('LessOrEqual', { f64: (a, b) => (a <= b ? 1 : 0), big: (a, b) => a <= b, out: toBool, allowed: COMPARABLE }));
kernel('Greater', 7, binary('Greater', { f64: (a, b) => (a > b ? 1 : 0), big: (a, b) => a > b, out: toBool, allowed: COMPARABLE }));
kernel('GreaterOrEqual', 12, binary('GreaterOrEqual', { f64: (a, b) => (a >= b ? 1 : 0), big: (a, b) => a >= b, out: toBool, allowed: COMPARABLE }));
const BOOLS = new Set<DataType>([DataType.BOOL]);
kernel('And', 7, binary('And', { f64: (a, b) => (a && b ? 1 : 0), allowed: BOOLS }));
kernel('Or', 7, binary('Or', { f64: (a, b) => (a || b ? 1 : 0), allowed: BOOLS }));
kernel('Xor', 7, binary('Xor', { f64: (a, b) => ((a !== 0) !== (b !== 0) ? 1 : 0), allowed: BOOLS }));

// ---------------------------------------------------------------------------------------------
// Variadic

function variadic(op: string, f: (a: number, b: number) => number, fb: ((a: bigint, b: bigint) => bigint) | undefined, mean = false): Kernel {
  return (inputs) => {
    const present = inputs.filter((t): t is Tensor => t !== null);
    if (present.length === 0) throw new KernelUnsupported(op, 'no inputs');
    for (const t of present) {
      requireDtype(op, t, NUM_NO_BOOL);
      if (t.dtype !== present[0]!.dtype) throw new KernelUnsupported(op, 'mixed input types');
    }
    let acc = present[0]!;
    const spec: BinaryOp = { f64: (a, b) => f(a, b), big: fb, allowed: NUM_NO_BOOL };
    for (const t of present.slice(1)) acc = binaryCompute(op, acc, t, spec, acc.dtype);
    if (present.length === 1) acc = binaryCompute(op, acc, acc, { f64: (a) => a, big: (a) => a, allowed: NUM_NO_BOOL }, acc.dtype);
    if (mean) {
      if (!isFloat(acc.dtype)) throw new KernelUnsupported(op, 'integer inputs');
      const k = present.length;
      const v = readF64(acc).map((x) => x / k);
      acc = fromF64(acc.dtype, acc.dims, v);
    }
    return [acc];
  };
}
const nanMax = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b));
const nanMin = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b));
kernel('Max', 8, variadic('Max', nanMax, (a, b) => (a > b ? a : b)));
kernel('Min', 8, variadic('Min', nanMin, (a, b) => (a < b ? a : b)));
kernel('Sum', 8, variadic('Sum', (a, b) => a + b, (a, b) => a + b));
kernel('Mean', 8, variadic('Mean', (a, b) => a + b, undefined, true));

// ---------------------------------------------------------------------------------------------
// Where

kernel('Where', 9, (inputs) => {
  const c = input('Where', inputs, 0);
  const x = input('Where', inputs, 1);
  const y = input('Where', inputs, 2);
  if (c.dtype !== DataType.BOOL) throw new KernelUnsupported('Where', `condition of type ${dtypeName(c.dtype)}`);
  if (x.dtype !== y.dtype) throw new KernelUnsupported('Where', 'mixed value types');
  if (x.dtype === DataType.STRING || dtypeInfo(x.dtype).bits < 8) throw new KernelUnsupported('Where', `${dtypeName(x.dtype)} values`);
  const shape = broadcastShapes('Where', c.dims, x.dims, y.dims);
  const n = shape.reduce((a, b) => a * b, 1);
  const ic = broadcastIndex(c.dims, shape);
  const ix = broadcastIndex(x.dims, shape);
  const iy = broadcastIndex(y.dims, shape);
  const cv = c.toTypedArray<Uint8Array>();
  // Byte-level selection: works for every fixed-size dtype without conversion.
  const size = dtypeInfo(x.dtype).bits / 8;
  const xb = x.bytes();
  const yb = y.bytes();
  const out = new Uint8Array(n * size);
  for (let i = 0; i < n; i++) {
    const take = cv[ic ? ic[i]! : i] ? xb : yb;
    const j = (take === xb ? (ix ? ix[i]! : i) : iy ? iy[i]! : i) * size;
    out.set(take.subarray(j, j + size), i * size);
  }
  return [Tensor.fromBytes('', x.dtype, shape, out)];
});

// ---------------------------------------------------------------------------------------------
// Cast / CastLike

const CASTABLE = new Set([...NUMERIC]);

function castTo(node: Node, x: Tensor, to: DataType): Tensor {
  requireDtype(node.opType, x, CASTABLE);
  if (!CASTABLE.has(to)) throw new KernelUnsupported(node.opType, `casting to ${dtypeName(to)}`);
  if (x.dtype === to) return x;
  const toFloat = isFloat(to);
  if (domainOf(x.dtype) === 'big') {
    const v = readBig(x);
    if (domainOf(to) === 'big') return fromBig(to, x.dims, v);
    if (toFloat) return fromF64(to, x.dims, Array.from(v, Number));
    return fromBig(to, x.dims, v); // narrowing integer casts wrap
  }
  const v = readF64(x);
  if (!toFloat && to !== DataType.BOOL && isFloat(x.dtype)) {
    // Float -> integer: C truncation; NaN/Inf/out-of-range is implementation-defined, so refuse.
    const info = dtypeInfo(to);
    const lo = info.isSigned ? -(2 ** (info.bits - 1)) : 0;
    const hi = info.isSigned ? 2 ** (info.bits - 1) - 1 : 2 ** info.bits - 1;
    for (const e of v) if (!(Math.trunc(e) >= lo && Math.trunc(e) <= hi)) throw new KernelUnsupported(node.opType, `casting ${e} to ${dtypeName(to)} (out of range)`);
    if (domainOf(to) === 'big') return fromBig(to, x.dims, Array.from(v, (e) => BigInt(Math.trunc(e))));
  }
  if (domainOf(to) === 'big') return fromBig(to, x.dims, Array.from(v, (e) => BigInt(Math.trunc(e))));
  return fromF64(to, x.dims, v);
}

kernel('Cast', 6, (inputs, node) => {
  const x = input('Cast', inputs, 0);
  const to = node.attrInt('to');
  if (to === undefined) throw new KernelUnsupported('Cast', 'a missing "to" attribute');
  return [castTo(node, x, to as DataType)];
});

kernel('CastLike', 15, (inputs, node) => {
  const x = input('CastLike', inputs, 0);
  const like = input('CastLike', inputs, 1);
  return [castTo(node, x, like.dtype)];
});
