/**
 * What fusions read from values: element types, shapes (as shape inference left them), constant
 * data as numbers, and the few op-specific facts several patterns share (reduction axes across
 * opsets, scopes of node names for messages).
 */
import { bfloat16BitsToFloat32, DataType, dtypeName, float16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits } from '../../src/ir/dtype.js';
import type { Node, Value } from '../../src/ir/graph.js';
import { Tensor } from '../../src/ir/tensor.js';
import { shapeOf } from '../../src/ir/types.js';
import { constantInts, constantTensor } from '../constants.js';

export type Dim = number | string | null;

/** Element type: the value's type, or a constant's dtype (initializers often carry no type). */
export function elemType(v: Value | null | undefined): number | undefined {
  if (v?.type?.kind === 'tensor') return v.type.elemType;
  return constantTensor(v)?.dtype;
}

/** Shape as shape inference left it, or a constant's dims. */
export function shape(v: Value | null | undefined): Dim[] | undefined {
  const s = shapeOf(v?.type ?? undefined);
  if (s) return s;
  const t = constantTensor(v);
  return t ? [...t.dims] : undefined;
}

export const rank = (v: Value | null | undefined): number | undefined => shape(v)?.length;

/** The dims when every one is a known number. */
export function staticShape(v: Value | null | undefined): number[] | undefined {
  const s = shape(v);
  return s && s.every((d) => typeof d === 'number') ? (s as number[]) : undefined;
}

/** Two dims that are certainly equal: the same number or the same symbolic name. */
export const sameDim = (a: Dim | undefined, b: Dim | undefined): boolean => a !== null && a !== undefined && a === b;

export const typeName = (v: Value | null | undefined): string => {
  const t = elemType(v);
  return t === undefined ? 'unknown' : dtypeName(t);
};

export const showShape = (s: readonly Dim[] | undefined): string => (s ? `[${s.map((d) => (d === null ? '?' : d)).join(', ')}]` : 'unknown');

/** A float tensor's elements as float64 (float32, float64, float16, bfloat16 data); undefined for other types. */
export function floatData(t: Tensor): Float64Array | undefined {
  switch (t.dtype) {
    case DataType.FLOAT:
    case DataType.DOUBLE:
      return Float64Array.from(t.toTypedArray() as Float32Array | Float64Array);
    case DataType.FLOAT16:
      return Float64Array.from(t.toTypedArray<Uint16Array>(), float16BitsToFloat32);
    case DataType.BFLOAT16:
      return Float64Array.from(t.toTypedArray<Uint16Array>(), bfloat16BitsToFloat32);
    default:
      return undefined;
  }
}

/** A tensor of a float `dtype` (float32, float64, float16, bfloat16) holding `values` (rounded to it). */
export function floatTensor(name: string, dtype: number, dims: readonly number[], values: ArrayLike<number>): Tensor {
  switch (dtype) {
    case DataType.FLOAT:
      return Tensor.fromTypedArray(name, DataType.FLOAT, dims, Float32Array.from(values));
    case DataType.DOUBLE:
      return Tensor.fromTypedArray(name, DataType.DOUBLE, dims, Float64Array.from(values));
    case DataType.FLOAT16:
      return Tensor.fromTypedArray(name, DataType.FLOAT16, dims, Uint16Array.from(values, float32ToFloat16Bits));
    case DataType.BFLOAT16:
      return Tensor.fromTypedArray(name, DataType.BFLOAT16, dims, Uint16Array.from(values, float32ToBfloat16Bits));
    default:
      throw new Error(`internal: fusion cannot write ${dtypeName(dtype)} constants`);
  }
}

/** The value of a one-element numeric constant, or undefined. */
export function scalarConstant(v: Value | null | undefined): number | undefined {
  const t = constantTensor(v);
  if (!t || t.elementCount !== 1) return undefined;
  const f = floatData(t);
  if (f) return f[0];
  const ints = constantInts(v, 1);
  return ints?.[0];
}

/** Why `v` is not a constant, for messages ("computed by 'x' (Div)", "a graph input"). */
export function whyNotConstant(v: Value): string {
  if (v.producer) return `computed by '${v.producer.name}' (${v.producer.opType})`;
  if (v.isGraphInput) return `graph input '${v.name}'`;
  return `'${v.name}'`;
}

/**
 * The axes a Reduce* node reduces, normalized to non-negative, sorted; 'all' when it reduces every
 * axis; undefined when they are not known (axes computed at run time, or rank unknown for
 * negative axes). Axes are an attribute before opset 18 (ReduceSum: 13) and an input from then on.
 */
export function reduceAxes(node: Node): number[] | 'all' | undefined {
  const r = rank(node.inputs[0]);
  let axes: number[] | undefined;
  const attr = node.attrInts('axes');
  if (attr) axes = attr;
  else if (node.inputs[1]) {
    axes = constantInts(node.inputs[1]);
    if (!axes) return undefined;
  }
  if (!axes || axes.length === 0) return node.attrInt('noop_with_empty_axes', 0) === 1 ? [] : 'all';
  if (axes.some((a) => a < 0) && r === undefined) return undefined;
  return [...new Set(axes.map((a) => (a < 0 ? a + r! : a)))].sort((a, b) => a - b);
}

/** True when the Reduce* node reduces exactly the last axis and keeps it (keepdims=1). */
export function reducesLastAxisOnly(node: Node): string | undefined {
  const r = rank(node.inputs[0]);
  const axes = reduceAxes(node);
  if (node.attrInt('keepdims', 1) !== 1) return `'${node.name}' (${node.opType}) drops the reduced axis (keepdims=0)`;
  if (axes === undefined) return `'${node.name}' (${node.opType}) reduces axes that are not known before run time`;
  if (r === undefined) return `the rank of '${node.name}' (${node.opType})'s input is unknown`;
  if (axes === 'all') return r === 1 ? undefined : `'${node.name}' (${node.opType}) reduces every axis, not only the last`;
  if (axes.length !== 1 || axes[0] !== r - 1) return `'${node.name}' (${node.opType}) reduces axes [${axes.join(', ')}], not only the last axis (${r - 1})`;
  return undefined;
}

/** "/encoder/layer.3/attention/" from "/encoder/layer.3/attention/self/MatMul": where a node sits, for messages. */
export function scopeOf(names: readonly string[]): string {
  const dirs = names.filter((n) => n.includes('/')).map((n) => n.slice(0, n.lastIndexOf('/') + 1));
  if (dirs.length === 0) return names[0] ?? '';
  let prefix = dirs[0]!;
  for (const d of dirs) {
    while (!d.startsWith(prefix)) {
      const cut = prefix.lastIndexOf('/', prefix.length - 2);
      prefix = cut <= 0 ? '' : prefix.slice(0, cut + 1);
    }
  }
  return prefix || '/';
}

/** Relative closeness used for the constants patterns expect (sqrt(2), 0.5, 0.044715...): float32 rounding passes. */
export const near = (a: number, b: number, rel = 1e-4): boolean => Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-30);
