/**
 * Typed node attributes (ONNX AttributeProto). Integers are bigint so INT64_MAX survives;
 * strings are bytes, as ONNX stores them (`attrText` decodes UTF-8).
 */
import type { Graph } from './graph.js';
import type { SparseTensor, Tensor } from './tensor.js';
import type { TypeInfo } from './types.js';

/** AttributeProto.AttributeType numbers. */
export const AttrType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
  SPARSE_TENSOR: 11,
  SPARSE_TENSORS: 12,
  TYPE_PROTO: 13,
  TYPE_PROTOS: 14,
} as const;

export type AttrValue =
  | { type: 'float'; value: number }
  | { type: 'int'; value: bigint }
  | { type: 'string'; value: Uint8Array }
  | { type: 'tensor'; value: Tensor }
  | { type: 'graph'; value: Graph }
  | { type: 'sparse_tensor'; value: SparseTensor }
  | { type: 'type_proto'; value: TypeInfo }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: bigint[] }
  | { type: 'strings'; value: Uint8Array[] }
  | { type: 'tensors'; value: Tensor[] }
  | { type: 'graphs'; value: Graph[] }
  | { type: 'sparse_tensors'; value: SparseTensor[] }
  | { type: 'type_protos'; value: TypeInfo[] }
  /** A reference to an attribute of the enclosing function (`ref_attr_name`), of the declared type. */
  | { type: 'ref'; refAttrName: string; declaredType: number };

export type Attribute = AttrValue & { name: string; docString?: string };

const utf8 = new TextDecoder();
const utf8Enc = new TextEncoder();

export function textBytes(s: string): Uint8Array {
  return utf8Enc.encode(s);
}

export function bytesText(b: Uint8Array): string {
  return utf8.decode(b);
}

/** The graphs an attribute holds (for walking subgraphs). */
export function attributeGraphs(a: Attribute): Graph[] {
  if (a.type === 'graph') return [a.value];
  if (a.type === 'graphs') return a.value;
  return [];
}
