/**
 * Reading constant values during passes: a value is constant when it is bound to an initializer
 * that is not also a graph input (graph inputs can be overridden at run time), or when a Constant
 * node produces it from a `value` tensor attribute.
 */
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';

export function constantTensor(v: Value | null | undefined): Tensor | undefined {
  if (!v) return undefined;
  if (v.initializer && !v.isGraphInput) return v.initializer;
  const p = v.producer;
  if (p && p.opType === 'Constant' && (p.domain === '' || p.domain === 'ai.onnx')) {
    const a = p.attribute('value');
    if (a?.type === 'tensor') return a.value;
  }
  return undefined;
}

/** Small integer constants (shapes, axes, indices) as numbers; undefined if not constant ints. */
export function constantInts(v: Value | null | undefined, maxElements = 4096): number[] | undefined {
  const t = constantTensor(v);
  if (!t || t.elementCount > maxElements) return undefined;
  switch (t.dtype) {
    case DataType.INT64:
      return Array.from(t.toTypedArray<BigInt64Array>(), Number);
    case DataType.INT32:
    case DataType.INT16:
    case DataType.INT8:
    case DataType.UINT8:
    case DataType.UINT16:
    case DataType.UINT32:
    case DataType.BOOL:
      return Array.from(t.toTypedArray() as ArrayLike<number>);
    default:
      return undefined;
  }
}
