/**
 * protobufjs message types for the ONNX schema (see schema.ts), built once.
 */
import protobuf from 'protobufjs';
import Long from 'long';
import type { INamespace } from 'protobufjs';
import { ONNX_SCHEMA } from './schema.js';

/**
 * The codec reads the fields the IR keeps verbatim (ModelProto.training_info and configuration,
 * NodeProto.device_configurations) as `bytes`: on the wire a sub-message and a bytes field are the
 * same length-delimited record, so the bytes come back exactly as written (field order, fields
 * newer than our schema) instead of being parsed and re-serialized.
 */
function withVerbatimFields(schema: INamespace): INamespace {
  const copy = structuredClone(schema) as { nested: { onnx: { nested: Record<string, { fields: Record<string, unknown> }> } } };
  const onnx = copy.nested.onnx.nested;
  onnx.ModelProto!.fields.trainingInfo = { rule: 'repeated', type: 'bytes', id: 20 };
  onnx.ModelProto!.fields.configuration = { rule: 'repeated', type: 'bytes', id: 26 };
  onnx.NodeProto!.fields.deviceConfigurations = { rule: 'repeated', type: 'bytes', id: 10 };
  return copy as INamespace;
}

/** The schema as onnx.proto declares it (used to check the verbatim fields are well-formed). */
const root = protobuf.Root.fromJSON(ONNX_SCHEMA);
const codecRoot = protobuf.Root.fromJSON(withVerbatimFields(ONNX_SCHEMA));
const type = (name: string) => root.lookupType(`onnx.${name}`);
const codecType = (name: string) => codecRoot.lookupType(`onnx.${name}`);

export const ModelProto = codecType('ModelProto');
export const GraphProto = codecType('GraphProto');
export const NodeProto = codecType('NodeProto');
export const TensorProto = codecType('TensorProto');
export const AttributeProto = codecType('AttributeProto');
export const FunctionProto = codecType('FunctionProto');
export const TrainingInfoProto = type('TrainingInfoProto');
export const DeviceConfigurationProto = type('DeviceConfigurationProto');
export const NodeDeviceConfigurationProto = type('NodeDeviceConfigurationProto');

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
