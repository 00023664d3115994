/**
 * protobufjs message types for the ONNX schema (see schema.ts), built once.
 */
import protobuf from 'protobufjs';
import Long from 'long';
import { ONNX_SCHEMA } from './schema.js';

const root = protobuf.Root.fromJSON(ONNX_SCHEMA);
const type = (name: string) => root.lookupType(`onnx.${name}`);

export const ModelProto = type('ModelProto');
export const GraphProto = type('GraphProto');
export const NodeProto = type('NodeProto');
export const TensorProto = type('TensorProto');
export const AttributeProto = type('AttributeProto');
export const TrainingInfoProto = type('TrainingInfoProto');
export const DeviceConfigurationProto = type('DeviceConfigurationProto');
export const NodeDeviceConfigurationProto = type('NodeDeviceConfigurationProto');
export const FunctionProto = type('FunctionProto');

/** A decoded protobufjs message: fields by camelCase name; absent fields are not own properties. */
export type Msg = Record<string, any>;

export const has = (m: Msg, field: string): boolean => Object.prototype.hasOwnProperty.call(m, field) && m[field] != null;

export function toBigInt(v: Long | number | undefined | null): bigint {
  if (v == null) return 0n;
  if (typeof v === 'number') return BigInt(v);
  return BigInt(v.toString());
}

export function bigIntToLong(v: bigint, unsigned = false): Long {
  return Long.fromString(v.toString(), unsigned);
}
