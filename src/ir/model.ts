/**
 * Model (ONNX ModelProto) and local functions (FunctionProto) in IR form.
 * Fields that no pass interprets but that must survive a round trip (training_info, multi-device
 * configuration) are kept as their encoded protobuf bytes.
 */
import type { Attribute } from './attribute.js';
import { Graph } from './graph.js';
import type { MetadataProps } from './tensor.js';

export interface OpsetImport {
  domain: string;
  version: number;
}

/** A model-local function: its body is a Graph whose inputs/outputs are the formal parameters. */
export class IrFunction {
  name = '';
  domain = '';
  overload = '';
  docString = '';
  metadataProps: MetadataProps = [];
  opsetImports: OpsetImport[] = [];
  /** Names of the attributes the function takes (FunctionProto.attribute). */
  attributeNames: string[] = [];
  /** Attributes with default values (FunctionProto.attribute_proto). */
  attributeDefaults: Attribute[] = [];
  readonly body = new Graph();

  get key(): string {
    return `${this.domain}::${this.name}${this.overload ? `::${this.overload}` : ''}`;
  }
}

export class Model {
  irVersion = 10;
  opsetImports: OpsetImport[] = [{ domain: '', version: 21 }];
  producerName = '';
  producerVersion = '';
  domain = '';
  modelVersion = 0;
  docString = '';
  metadataProps: MetadataProps = [];
  graph: Graph = new Graph();
  functions: IrFunction[] = [];
  /** ModelProto.training_info entries, encoded (kept verbatim). */
  trainingInfo: Uint8Array[] = [];
  /** ModelProto.configuration entries (DeviceConfigurationProto), encoded (kept verbatim). */
  configuration: Uint8Array[] = [];

  /** Version of an opset domain ('' and 'ai.onnx' are the same), or undefined if not imported. */
  opsetVersion(domain: string): number | undefined {
    const d = domain === 'ai.onnx' ? '' : domain;
    return this.opsetImports.find((o) => (o.domain === 'ai.onnx' ? '' : o.domain) === d)?.version;
  }
}
