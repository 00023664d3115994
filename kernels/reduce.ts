/**
 * Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
 * ReduceSumSquare, ReduceLogSum, ReduceLogSumExp.
 *
 * Axes come from the `axes` attribute before the version that made them an input (ReduceSum 13,
 * the others 18); from then on an absent or empty axes input reduces everything, unless
 * noop_with_empty_axes=1, which returns the input unchanged. Negative axes count from the end.
 *
 * Floats accumulate in float64 and are rounded to the type once (ReduceLogSumExp as
 * max + log(sum(exp(x - max))), like ONNX's reference). Integer reductions are exact (bigint);
 * a result that does not fit the type is refused, since numpy wraps and onnxruntime saturates.
 * Also refused: NaN in a float max/min, squares or running products that overflow a float type
 * part way (see checkFloatInputs), the mean of an empty set of integers.
 * Reducing an empty set gives the spec's identities (0 for sums, 1 for products, -inf / the
 * type's minimum for max, +inf / maximum for min).
 */
import { DataType, dtypeInfo, dtypeName, elementCount } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported, type Kernel } from './registry.js';
import {
  checkAttributes,
  domainOf,
  fromBig,
  fromF64,
  input,
  intRange,
  intRangeBig,
  isFloatType,
  roundToType,
  normalizeAxis,
  NUMERIC_NO_BOOL,
  readBig,
  readF64,
  readInts,
  requireDtype,
  stridedIndex,
  stridesOf,
} from './util.js';

type Reducer = 'sum' | 'mean' | 'max' | 'min' | 'prod' | 'l1' | 'l2' | 'sumsquare' | 'logsum' | 'logsumexp';

interface Plan {
  /** Output dims (keepdims applied). */
  dims: number[];
  nOut: number;
  /** Number of input elements per output element. */
  count: number;
  /** For each input element (row-major), its output element. */
  map: Int32Array;
}

/** Reduced axes, or null for "return the input unchanged" (noop_with_empty_axes). */
function reduceAxes(node: Node, inputs: ReadonlyArray<Tensor | null>, x: Tensor, axesInputFrom: number, opset: number): number[] | null {
  const r = x.dims.length;
  let axes: number[] | undefined;
  if (opset >= axesInputFrom) {
    checkAttributes(node, ['keepdims', 'noop_with_empty_axes']);
    const t = inputs[1];
    axes = t ? readInts(t) : undefined;
    if ((!axes || axes.length === 0) && node.attrInt('noop_with_empty_axes', 0) === 1) return null;
  } else {
    checkAttributes(node, ['keepdims', 'axes']);
    axes = node.attrInts('axes');
  }
  if (!axes || axes.length === 0) return x.dims.map((_, i) => i);
  const out = [...new Set(axes.map((a) => normalizeAxis(node, a, r)))];
  if (r === 0) return [];
  return out;
}

function plan(x: Tensor, axes: readonly number[], keep: boolean): Plan {
  const reduced = x.dims.map((_, i) => axes.includes(i));
  const keepShape = x.dims.map((d, i) => (reduced[i] ? 1 : d));
  const os = stridesOf(keepShape);
  const map = stridedIndex(x.dims, x.dims.map((_, i) => (reduced[i] ? 0 : os[i]!)));
  const nOut = elementCount(keepShape);
  const count = elementCount(x.dims.filter((_, i) => reduced[i]));
  return { dims: keep ? keepShape : x.dims.filter((_, i) => !reduced[i]), nOut, count, map };
}

const FLOAT_INIT: Record<Reducer, number> = { sum: 0, mean: 0, max: -Infinity, min: Infinity, prod: 1, l1: 0, l2: 0, sumsquare: 0, logsum: 0, logsumexp: 0 };

function reduceFloat(kind: Reducer, v: Float64Array, p: Plan): Float64Array {
  const { map, nOut } = p;
  const acc = new Float64Array(nOut).fill(FLOAT_INIT[kind]);
  const n = v.length;
  switch (kind) {
    case 'sum':
    case 'mean':
    case 'logsum':
      for (let i = 0; i < n; i++) acc[map[i]!]! += v[i]!;
      break;
    case 'prod':
      for (let i = 0; i < n; i++) acc[map[i]!]! *= v[i]!;
      break;
    case 'l1':
      for (let i = 0; i < n; i++) acc[map[i]!]! += Math.abs(v[i]!);
      break;
    case 'l2':
    case 'sumsquare':
      for (let i = 0; i < n; i++) acc[map[i]!]! += v[i]! * v[i]!;
      break;
    case 'max':
      for (let i = 0; i < n; i++) {
        const o = map[i]!;
        const e = v[i]!;
        if (e > acc[o]! || Number.isNaN(e)) acc[o] = e;
      }
      break;
    case 'min':
      for (let i = 0; i < n; i++) {
        const o = map[i]!;
        const e = v[i]!;
        if (e < acc[o]! || Number.isNaN(e)) acc[o] = e;
      }
      break;
    case 'logsumexp': {
      // max + log(sum(exp(x - max))): no overflow for large inputs.
      const max = reduceFloat('max', v, p);
      for (let i = 0; i < n; i++) {
        const m = max[map[i]!]!;
        if (Number.isFinite(m)) acc[map[i]!]! += Math.exp(v[i]! - m);
      }
      // A non-finite maximum (-inf: empty or all -inf; +inf; NaN) is the result itself.
      for (let o = 0; o < nOut; o++) acc[o] = Number.isFinite(max[o]!) ? max[o]! + Math.log(acc[o]!) : max[o]!;
      return acc;
    }
  }
  if (kind === 'mean') for (let o = 0; o < nOut; o++) acc[o] = acc[o]! / p.count;
  if (kind === 'l2') for (let o = 0; o < nOut; o++) acc[o] = Math.sqrt(acc[o]!);
  if (kind === 'logsum') for (let o = 0; o < nOut; o++) acc[o] = Math.log(acc[o]!);
  return acc;
}

/**
 * Integers (and bool for max/min), exactly: a sum, product or mean whose exact value does not fit
 * the type is refused (numpy wraps, onnxruntime saturates).
 */
function reduceInt(op: string, kind: Reducer, x: Tensor, p: Plan): Tensor {
  const { map, nOut } = p;
  const n = x.elementCount;
  if (kind === 'max' || kind === 'min') {
    if (domainOf(x.dtype) === 'big') {
      const v = readBig(x);
      const [lo, hi] = intRangeBig(x.dtype);
      const acc = x.dtype === DataType.INT64 ? new BigInt64Array(nOut) : new BigUint64Array(nOut);
      acc.fill(kind === 'max' ? lo : hi);
      if (kind === 'max') {
        for (let i = 0; i < n; i++) if (v[i]! > acc[map[i]!]!) acc[map[i]!] = v[i]!;
      } else {
        for (let i = 0; i < n; i++) if (v[i]! < acc[map[i]!]!) acc[map[i]!] = v[i]!;
      }
      return Tensor.fromTypedArray('', x.dtype, p.dims, acc);
    }
    const v = readF64(x);
    const [lo, hi] = intRange(x.dtype);
    const acc = new Float64Array(nOut).fill(kind === 'max' ? lo : hi);
    if (kind === 'max') {
      for (let i = 0; i < n; i++) if (v[i]! > acc[map[i]!]!) acc[map[i]!] = v[i]!;
    } else {
      for (let i = 0; i < n; i++) if (v[i]! < acc[map[i]!]!) acc[map[i]!] = v[i]!;
    }
    return fromF64(x.dtype, p.dims, acc);
  }
  if (!(kind === 'sum' || kind === 'mean' || kind === 'prod' || kind === 'l1' || kind === 'sumsquare')) {
    throw new KernelUnsupported(op, `${dtypeName(x.dtype)} input`);
  }
  const [lo, hi] = intRangeBig(x.dtype);
  const v = readBig(x);
  // Exact bigint accumulation; results that do not fit the type are refused below.
  const acc: bigint[] = new Array<bigint>(nOut).fill(kind === 'prod' ? 1n : 0n);
  const limit = 1n << 130n; // beyond every type's range: keeps products bounded (a later 0 still gives 0)
  for (let i = 0; i < n; i++) {
    const o = map[i]!;
    const e = v[i]!;
    if (kind === 'prod') {
      const a = acc[o]! * e;
      acc[o] = a > limit ? limit : a < -limit ? -limit : a;
    } else if (kind === 'l1') acc[o] = acc[o]! + (e < 0n ? -e : e);
    else if (kind === 'sumsquare') acc[o] = acc[o]! + e * e;
    else acc[o] = acc[o]! + e;
  }
  if (dtypeInfo(x.dtype).bits === 64) {
    // onnxruntime's 64-bit reductions are not exact beyond 2^53 (they differ from the exact
    // result even when it fits): refuse once the magnitudes involved pass 2^53.
    const bound = new Array<bigint>(nOut).fill(kind === 'prod' ? 1n : 0n);
    for (let i = 0; i < n; i++) {
      const o = map[i]!;
      const e = v[i]! < 0n ? -v[i]! : v[i]!;
      bound[o] = kind === 'prod' ? (bound[o]! * e > limit ? limit : bound[o]! * e) : bound[o]! + (kind === 'sumsquare' ? e * e : e);
    }
    if (bound.some((b) => b > 2n ** 53n)) throw new KernelUnsupported(op, `a ${dtypeName(x.dtype)} ${kind} with magnitudes beyond 2^53 (onnxruntime is inexact there)`);
  }
  for (let o = 0; o < nOut; o++) {
    const a = acc[o]!;
    if (a < lo || a > hi) throw new KernelUnsupported(op, `a ${kind} that overflows ${dtypeName(x.dtype)} (implementations wrap or saturate)`);
    if (kind === 'mean') {
      if (p.count === 0) throw new KernelUnsupported(op, 'the mean of an empty set of integers');
      // Beyond 2^52 a float64 mean (numpy, onnxruntime) is no longer the exact quotient.
      if (a > 2n ** 52n || a < -(2n ** 52n)) throw new KernelUnsupported(op, 'an integer mean of a sum beyond 2^52');
      acc[o] = a / BigInt(p.count); // truncates toward zero, as C's division and numpy's cast back do
    }
  }
  return fromBig(x.dtype, p.dims, acc);
}

/**
 * Refuses float reductions whose result depends on the implementation: NaN in a max/min (numpy
 * propagates it, onnxruntime skips it), sums (of squares) that may overflow the type part way,
 * non-finite LogSumExp inputs, and products whose running value overflows or underflows the type part way (numpy and
 * onnxruntime multiply in the type) while the exact product does not, or the reverse.
 */
function checkFloatInputs(op: string, kind: Reducer, dtype: DataType, v: Float64Array, p: Plan): void {
  if (kind === 'max' || kind === 'min') {
    if (v.some(Number.isNaN)) throw new KernelUnsupported(op, 'NaN inputs (implementations differ)');
  } else if ((kind === 'sum' || kind === 'mean' || kind === 'l1' || kind === 'logsum' || kind === 'sumsquare' || kind === 'l2') && dtype !== DataType.DOUBLE) {
    // Running sums that may overflow the type part way depend on the order and precision of the
    // accumulation: refuse when the sum of magnitudes (of squares) of finite terms comes close.
    const limit = (dtype === DataType.FLOAT16 ? 65504 : 3.4028234663852886e38) / 2;
    const squares = kind === 'sumsquare' || kind === 'l2';
    const bound = new Float64Array(p.nOut);
    for (let i = 0; i < v.length; i++) {
      const t = squares ? v[i]! * v[i]! : Math.abs(v[i]!);
      if (Number.isFinite(v[i]!)) bound[p.map[i]!]! += t;
    }
    if (bound.some((b) => b > limit)) throw new KernelUnsupported(op, `${dtypeName(dtype)} sums that may overflow part way`);
  } else if (kind === 'logsumexp') {
    // Infinities and NaN: ONNX's reference masks infinities out of the maximum, onnxruntime does
    // not. onnxruntime's half-precision kernel also exponentiates without subtracting the maximum.
    if (!v.every(Number.isFinite)) throw new KernelUnsupported(op, 'non-finite inputs (implementations differ)');
    if ((dtype === DataType.FLOAT16 || dtype === DataType.BFLOAT16) && v.some((e) => e > 88)) throw new KernelUnsupported(op, `${dtypeName(dtype)} inputs whose exp overflows float32`);
  } else if (kind === 'prod' && dtype !== DataType.DOUBLE) {
    // Whatever order an implementation multiplies in, each running product lies between the
    // product of the factors' magnitudes clamped to <= 1 and the one clamped to >= 1. Refuse
    // when that range reaches overflow or the subnormals of the type.
    const [tiny, huge] = dtype === DataType.FLOAT16 ? [2 ** -14, 65504] : [2 ** -126, 3.4028234663852886e38];
    const big = new Float64Array(p.nOut).fill(1);
    const small = new Float64Array(p.nOut).fill(1);
    for (let i = 0; i < v.length; i++) {
      const a = Math.abs(v[i]!);
      if (!Number.isFinite(a) || a === 0) continue;
      const o = p.map[i]!;
      if (a > 1) big[o] = big[o]! * a;
      else small[o] = small[o]! * a;
    }
    for (let o = 0; o < p.nOut; o++) {
      if (big[o]! > huge / 2 || small[o]! < tiny * 2) throw new KernelUnsupported(op, `a ${dtypeName(dtype)} product that may overflow or underflow part way`);
    }
  }
}

function reducer(op: string, kind: Reducer, axesInputFrom: number): Kernel {
  const boolOk = kind === 'max' || kind === 'min';
  return (inputs, node, ctx) => {
    const x = input(op, inputs, 0);
    if (!(boolOk && x.dtype === DataType.BOOL)) requireDtype(op, x, NUMERIC_NO_BOOL);
    const axes = reduceAxes(node, inputs, x, axesInputFrom, ctx.opsetVersion);
    if (axes === null) return [Tensor.fromBytes('', x.dtype, x.dims, x.bytes())];
    const p = plan(x, axes, node.attrInt('keepdims', 1) === 1);
    if (!isFloatType(x.dtype)) return [reduceInt(op, kind, x, p)];
    const v = readF64(x);
    checkFloatInputs(op, kind, x.dtype, v, p);
    return [fromF64(x.dtype, p.dims, reduceFloat(kind, v, p))];
  };
}

kernel('ReduceSum', 1, reducer('ReduceSum', 'sum', 13));
kernel('ReduceMean', 1, reducer('ReduceMean', 'mean', 18));
kernel('ReduceMax', 1, reducer('ReduceMax', 'max', 18));
kernel('ReduceMin', 1, reducer('ReduceMin', 'min', 18));
kernel('ReduceProd', 1, reducer('ReduceProd', 'prod', 18));
kernel('ReduceL1', 1, reducer('ReduceL1', 'l1', 18));
kernel('ReduceL2', 1, reducer('ReduceL2', 'l2', 18));
kernel('ReduceSumSquare', 1, reducer('ReduceSumSquare', 'sumsquare', 18));
kernel('ReduceLogSum', 1, reducer('ReduceLogSum', 'logsum', 18));
kernel('ReduceLogSumExp', 1, reducer('ReduceLogSumExp', 'logsumexp', 18));
