/**
 * Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
 * ReduceSumSquare, ReduceLogSum, ReduceLogSumExp.
 *
 * Axes come from the `axes` attribute before the version that made them an input (ReduceSum 13,
 * the others 18); from then on an absent or empty axes input reduces everything, unless
 * noop_with_empty_axes=1, which returns the input unchanged. Negative axes count from the end.
 *
 * Floats accumulate in float64 and are rounded to the type once. Integer sums and products are
 * exact modulo the type's width (what numpy's wider accumulator cast back and onnxruntime's
 * wrapping accumulator both give); int64/uint64 accumulate as bigints in BigInt64Array storage.
 * Reducing an empty set gives the spec's identities (0 for sums, 1 for products, -inf / the
 * type's minimum for max, +inf / maximum for min); an empty or overflowing integer mean is refused.
 */
import { DataType, dtypeName, elementCount } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported, type Kernel } from './registry.js';
import {
  checkAttributes,
  domainOf,
  fromF64,
  input,
  intRange,
  intRangeBig,
  isFloatType,
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

/** Integers of at most 32 bits (and bool for max/min): exact, results wrapped by fromF64. */
function reduceSmallInt(op: string, kind: Reducer, x: Tensor, p: Plan): Tensor {
  const v = readF64(x);
  const { map, nOut } = p;
  const n = v.length;
  const acc = new Float64Array(nOut);
  const [lo, hi] = intRange(x.dtype);
  switch (kind) {
    case 'sum':
    case 'mean':
    case 'l1':
    case 'sumsquare': {
      for (let i = 0; i < n; i++) {
        const e = v[i]!;
        acc[map[i]!]! += kind === 'l1' ? Math.abs(e) : kind === 'sumsquare' ? e * e : e;
      }
      for (const s of acc) if (Math.abs(s) > 2 ** 53) throw new KernelUnsupported(op, 'an integer sum beyond 2^53');
      if (kind === 'mean') {
        if (p.count === 0) throw new KernelUnsupported(op, 'the mean of an empty set of integers');
        for (let o = 0; o < nOut; o++) {
          const s = acc[o]!;
          if (s < lo || s > hi) throw new KernelUnsupported(op, `an integer mean whose sum overflows ${dtypeName(x.dtype)}`);
          acc[o] = Math.trunc(s / p.count);
        }
      }
      break;
    }
    case 'prod': {
      acc.fill(1);
      for (let i = 0; i < n; i++) {
        const o = map[i]!;
        acc[o] = x.dtype === DataType.UINT32 ? Math.imul(acc[o]!, v[i]!) >>> 0 : Math.imul(acc[o]!, v[i]!);
      }
      break;
    }
    case 'max':
      acc.fill(lo);
      for (let i = 0; i < n; i++) if (v[i]! > acc[map[i]!]!) acc[map[i]!] = v[i]!;
      break;
    case 'min':
      acc.fill(hi);
      for (let i = 0; i < n; i++) if (v[i]! < acc[map[i]!]!) acc[map[i]!] = v[i]!;
      break;
    default:
      throw new KernelUnsupported(op, `${dtypeName(x.dtype)} input`);
  }
  return fromF64(x.dtype, p.dims, acc);
}

function reduceBig(op: string, kind: Reducer, x: Tensor, p: Plan): Tensor {
  const v = readBig(x);
  const { map, nOut } = p;
  const n = v.length;
  const acc = x.dtype === DataType.INT64 ? new BigInt64Array(nOut) : new BigUint64Array(nOut);
  const [lo, hi] = intRangeBig(x.dtype);
  switch (kind) {
    case 'sum':
      for (let i = 0; i < n; i++) acc[map[i]!] = acc[map[i]!]! + v[i]!; // stores wrap modulo 2^64
      break;
    case 'l1':
      for (let i = 0; i < n; i++) acc[map[i]!] = acc[map[i]!]! + (v[i]! < 0n ? -v[i]! : v[i]!);
      break;
    case 'sumsquare':
      for (let i = 0; i < n; i++) acc[map[i]!] = acc[map[i]!]! + v[i]! * v[i]!;
      break;
    case 'prod':
      acc.fill(1n);
      for (let i = 0; i < n; i++) acc[map[i]!] = acc[map[i]!]! * v[i]!;
      break;
    case 'max':
      acc.fill(lo);
      for (let i = 0; i < n; i++) if (v[i]! > acc[map[i]!]!) acc[map[i]!] = v[i]!;
      break;
    case 'min':
      acc.fill(hi);
      for (let i = 0; i < n; i++) if (v[i]! < acc[map[i]!]!) acc[map[i]!] = v[i]!;
      break;
    default:
      throw new KernelUnsupported(op, `${dtypeName(x.dtype)} input`);
  }
  return Tensor.fromTypedArray('', x.dtype, p.dims, acc);
}

function reducer(op: string, kind: Reducer, axesInputFrom: number): Kernel {
  const boolOk = kind === 'max' || kind === 'min';
  return (inputs, node, ctx) => {
    const x = input(op, inputs, 0);
    if (!(boolOk && x.dtype === DataType.BOOL)) requireDtype(op, x, NUMERIC_NO_BOOL);
    const axes = reduceAxes(node, inputs, x, axesInputFrom, ctx.opsetVersion);
    if (axes === null) return [Tensor.fromBytes('', x.dtype, x.dims, x.bytes())];
    const p = plan(x, axes, node.attrInt('keepdims', 1) === 1);
    if (isFloatType(x.dtype)) return [fromF64(x.dtype, p.dims, reduceFloat(kind, readF64(x), p))];
    if (domainOf(x.dtype) === 'big') return [reduceBig(op, kind, x, p)];
    return [reduceSmallInt(op, kind, x, p)];
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
