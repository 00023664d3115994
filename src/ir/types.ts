/**
 * Value types (ONNX TypeProto) in IR form. Dims are numbers (checked to be safe integers at
 * decode), symbolic names, or unknown.
 */
export interface Dim {
  value?: number;
  param?: string;
  denotation?: string;
}

export type TypeInfo = (
  | { kind: 'tensor'; elemType: number; shape?: Dim[] }
  | { kind: 'sparse_tensor'; elemType: number; shape?: Dim[] }
  | { kind: 'sequence'; elem?: TypeInfo }
  | { kind: 'map'; keyType: number; value?: TypeInfo }
  | { kind: 'optional'; elem?: TypeInfo }
  | { kind: 'opaque'; domain: string; name: string }
  | { kind: 'none' }
) & { denotation?: string };

export function tensorType(elemType: number, shape?: Array<number | string | null>): TypeInfo {
  return {
    kind: 'tensor',
    elemType,
    shape: shape?.map((d) => (typeof d === 'number' ? { value: d } : typeof d === 'string' ? { param: d } : {})),
  };
}

/** Shape as numbers, symbolic names or null (unknown); undefined when the rank is unknown. */
export function shapeOf(type: TypeInfo | undefined): Array<number | string | null> | undefined {
  if (!type || (type.kind !== 'tensor' && type.kind !== 'sparse_tensor') || !type.shape) return undefined;
  return type.shape.map((d) => (d.value !== undefined ? d.value : d.param !== undefined ? d.param : null));
}
