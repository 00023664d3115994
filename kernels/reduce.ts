/**
 * Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/SumSquare/LogSumExp over the axes given by attribute (older opsets) or
 * input (ReduceSum from 13, the others from 18), with keepdims and noop_with_empty_axes.
 * Accumulation is float64 (bigint for int64), rounded to the input type at the end.
 */
import { DataType, dtypeName, elementCount } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported, type Kernel } from './registry.js';
import { domainOf, fromBig, fromF64, input, normalizeAxis, NUMERIC, readBig, readF64, readInts, requireDtype, stridesOf } from './util.js';

type Reducer = 'sum' | 'mean' | 'max' | 'min' | 'prod' | 'l1' | 'l2' | 'sumsquare' | 'logsumexp';

const INIT: Record<Reducer, number> = { sum: 0, mean: 0, max: -Infinity, min: Infinity, prod: 1, l1: 0, l2: 0, sumsquare: 0, logsumexp: 0 };

function reduceAxes(node: Node, inputs: ReadonlyArray<Tensor | null>, x: Tensor, axesInputFrom: number, opset: number): number[] | null {
  const r = x.dims.length;
  let axes: number[] | undefined;
  if (opset >= axesInputFrom) axes = inputs[1] ? readInts(inputs[1]) : undefined;
  else axes = node.attrInts('axes');
  const noop = node.attrInt('noop_with_empty_axes', 0) === 1;
  if (!axes || axes.length === 0) return noop && opset >= axesInputFrom ? null : x.dims.map((_, i) => i);
  return [...new Set(axes.map((a) => normalizeAxis(node, a, r)))];
}

function reducer(op: string, kind: Reducer, axesInputFrom: number): Kernel {
  return (inputs, node, ctx) => {
    const x = input(op, inputs, 0);
    requireDtype(op, x, NUMERIC);
    if (x.dtype === DataType.BOOL) throw new KernelUnsupported(op, 'bool input');
    const axes = reduceAxes(node, inputs, x, axesInputFrom, ctx.opsetVersion);
    if (axes === null) return [x];
    const keep = node.attrInt('keepdims', 1) === 1;
    const outKeep = x.dims.map((d, i) => (axes.includes(i) ? 1 : d));
    const dims = keep ? outKeep : x.dims.filter((_, i) => !axes.includes(i));
    const nOut = elementCount(outKeep);
    const os = stridesOf(outKeep);
    const r = x.dims.length;
    const counter = new Array<number>(r).fill(0);
    const total = x.elementCount;
    const count = total / Math.max(nOut, 1);
    if (domainOf(x.dtype) === 'big') {
      if (kind !== 'sum' && kind !== 'prod' && kind !== 'max' && kind !== 'min') throw new KernelUnsupported(op, `${dtypeName(x.dtype)} input`);
      const v = readBig(x);
      const acc: Array<bigint | undefined> = new Array(nOut).fill(kind === 'sum' ? 0n : kind === 'prod' ? 1n : undefined);
      for (let i = 0; i < total; i++) {
        let o = 0;
        for (let d = 0; d < r; d++) if (!axes.includes(d)) o += counter[d]! * os[d]!;
        const a = acc[o];
        const e = v[i]!;
        acc[o] = kind === 'sum' ? a! + e : kind === 'prod' ? a! * e : a === undefined ? e : kind === 'max' ? (e > a ? e : a) : e < a ? e : a;
        for (let d = r - 1; d >= 0; d--) {
          if (++counter[d]! < x.dims[d]!) break;
          counter[d] = 0;
        }
      }
      if (acc.some((a) => a === undefined)) throw new KernelUnsupported(op, 'an empty max/min reduction of int64');
      return [fromBig(x.dtype, dims, acc as bigint[])];
    }
    const v = readF64(x);
    const acc = new Float64Array(nOut).fill(INIT[kind]);
    for (let i = 0; i < total; i++) {
      let o = 0;
      for (let d = 0; d < r; d++) if (!axes.includes(d)) o += counter[d]! * os[d]!;
      const e = v[i]!;
      switch (kind) {
        case 'sum':
        case 'mean':
          acc[o]! += e;
          break;
        case 'prod':
          acc[o]! *= e;
          break;
        case 'max':
          acc[o] = Number.isNaN(e) || e > acc[o]! ? e : acc[o]!;
          break;
        case 'min':
          acc[o] = Number.isNaN(e) || e < acc[o]! ? e : acc[o]!;
          break;
        case 'l1':
          acc[o]! += Math.abs(e);
          break;
        case 'l2':
        case 'sumsquare':
          acc[o]! += e * e;
          break;
        case 'logsumexp':
          acc[o]! += Math.exp(e);
          break;
      }
      for (let d = r - 1; d >= 0; d--) {
        if (++counter[d]! < x.dims[d]!) break;
        counter[d] = 0;
      }
    }
    if (kind === 'mean') for (let o = 0; o < nOut; o++) acc[o] = acc[o]! / count;
    if (kind === 'l2') for (let o = 0; o < nOut; o++) acc[o] = Math.sqrt(acc[o]!);
    if (kind === 'logsumexp') for (let o = 0; o < nOut; o++) acc[o] = Math.log(acc[o]!);
    return [fromF64(x.dtype, dims, acc)];
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
kernel('ReduceLogSumExp', 1, reducer('ReduceLogSumExp', 'logsumexp', 18));
