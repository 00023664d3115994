/**
 * The ONNX protobuf schema, in protobufjs JSON-descriptor form.
 *
 * Why not onnx-proto's module: onnx-proto ships code generated from the ONNX 1.10 schema (IR v8);
 * it lacks fields that current models carry (node/graph/value_info/tensor metadata_props, node
 * overload and device configurations, function value_info/attribute_proto/overload, the
 * TYPE_PROTO attributes, multi-device model configuration) and decoding with it would silently
 * drop them. This descriptor is written from the current onnx.proto (ONNX 1.20, IR v12: data
 * types up to INT2 = 26) with the same field numbers and names; test/onnx-schema.test.ts checks it
 * against onnx-proto's generated code on every field the two share.
 *
 * Field names are camelCase (protobufjs' convention); packed-ness follows onnx.proto (proto2: only
 * the TensorProto *_data fields are packed), so re-encoded models look like those onnx writes.
 * Every message is marked `edition: 'proto2'` (see the end of the file): protobufjs reads a JSON
 * descriptor without an edition as proto3, whose implicit presence drops fields holding their
 * default value (an INT attribute 0, a FLOAT 0, an empty STRING attribute are not written, and
 * onnx.checker rejects "an attribute without a value field").
 */
import type { INamespace } from 'protobufjs';

const S = (id: number) => ({ type: 'string', id });
const I64 = (id: number) => ({ type: 'int64', id });
const I32 = (id: number) => ({ type: 'int32', id });
const Msg = (type: string, id: number) => ({ type, id });
const Rep = (type: string, id: number, packed?: boolean) =>
  packed === undefined ? { rule: 'repeated', type, id } : { rule: 'repeated', type, id, options: { packed } };

export const ONNX_SCHEMA: INamespace = {
  nested: {
    onnx: {
      nested: {
        AttributeProto: {
          fields: {
            name: S(1),
            refAttrName: S(21),
            docString: S(13),
            type: { type: 'AttributeType', id: 20 },
            f: { type: 'float', id: 2 },
            i: I64(3),
            s: { type: 'bytes', id: 4 },
            t: Msg('TensorProto', 5),
            g: Msg('GraphProto', 6),
            sparseTensor: Msg('SparseTensorProto', 22),
            tp: Msg('TypeProto', 14),
            floats: Rep('float', 7, false),
            ints: Rep('int64', 8, false),
            strings: Rep('bytes', 9),
            tensors: Rep('TensorProto', 10),
            graphs: Rep('GraphProto', 11),
            sparseTensors: Rep('SparseTensorProto', 23),
            typeProtos: Rep('TypeProto', 15),
          },
          nested: {
            AttributeType: {
              values: {
                UNDEFINED: 0, FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, SPARSE_TENSOR: 11, TYPE_PROTO: 13,
                FLOATS: 6, INTS: 7, STRINGS: 8, TENSORS: 9, GRAPHS: 10, SPARSE_TENSORS: 12, TYPE_PROTOS: 14,
              },
            },
          },
        },
        ValueInfoProto: {
          fields: { name: S(1), type: Msg('TypeProto', 2), docString: S(3), metadataProps: Rep('StringStringEntryProto', 4) },
        },
        NodeProto: {
          fields: {
            input: Rep('string', 1),
            output: Rep('string', 2),
            name: S(3),
            opType: S(4),
            domain: S(7),
            overload: S(8),
            attribute: Rep('AttributeProto', 5),
            docString: S(6),
            metadataProps: Rep('StringStringEntryProto', 9),
            deviceConfigurations: Rep('NodeDeviceConfigurationProto', 10),
          },
        },
        IntIntListEntryProto: { fields: { key: I64(1), value: Rep('int64', 2, false) } },
        NodeDeviceConfigurationProto: {
          fields: { configurationId: S(1), shardingSpec: Rep('ShardingSpecProto', 2), pipelineStage: I32(3) },
        },
        ShardingSpecProto: {
          fields: {
            tensorName: S(1),
            device: Rep('int64', 2, false),
            indexToDeviceGroupMap: Rep('IntIntListEntryProto', 3),
            shardedDim: Rep('ShardedDimProto', 4),
          },
        },
        ShardedDimProto: { fields: { axis: I64(1), simpleSharding: Rep('SimpleShardedDimProto', 2) } },
        SimpleShardedDimProto: {
          oneofs: { dim: { oneof: ['dimValue', 'dimParam'] } },
          fields: { dimValue: I64(1), dimParam: S(2), numShards: I64(3) },
        },
        TrainingInfoProto: {
          fields: {
            initialization: Msg('GraphProto', 1),
            algorithm: Msg('GraphProto', 2),
            initializationBinding: Rep('StringStringEntryProto', 3),
            updateBinding: Rep('StringStringEntryProto', 4),
          },
        },
        ModelProto: {
          fields: {
            irVersion: I64(1),
            opsetImport: Rep('OperatorSetIdProto', 8),
            producerName: S(2),
            producerVersion: S(3),
            domain: S(4),
            modelVersion: I64(5),
            docString: S(6),
            graph: Msg('GraphProto', 7),
            metadataProps: Rep('StringStringEntryProto', 14),
            trainingInfo: Rep('TrainingInfoProto', 20),
            functions: Rep('FunctionProto', 25),
            configuration: Rep('DeviceConfigurationProto', 26),
          },
        },
        DeviceConfigurationProto: { fields: { name: S(1), numDevices: I32(2), device: Rep('string', 3) } },
        StringStringEntryProto: { fields: { key: S(1), value: S(2) } },
        TensorAnnotation: {
          fields: { tensorName: S(1), quantParameterTensorNames: Rep('StringStringEntryProto', 2) },
        },
        GraphProto: {
          fields: {
            node: Rep('NodeProto', 1),
            name: S(2),
            initializer: Rep('TensorProto', 5),
            sparseInitializer: Rep('SparseTensorProto', 15),
            docString: S(10),
            input: Rep('ValueInfoProto', 11),
            output: Rep('ValueInfoProto', 12),
            valueInfo: Rep('ValueInfoProto', 13),
            quantizationAnnotation: Rep('TensorAnnotation', 14),
            metadataProps: Rep('StringStringEntryProto', 16),
          },
        },
        TensorProto: {
          fields: {
            dims: Rep('int64', 1, false),
            dataType: I32(2),
            segment: Msg('Segment', 3),
            floatData: Rep('float', 4, true),
            int32Data: Rep('int32', 5, true),
            stringData: Rep('bytes', 6),
            int64Data: Rep('int64', 7, true),
            name: S(8),
            docString: S(12),
            rawData: { type: 'bytes', id: 9 },
            externalData: Rep('StringStringEntryProto', 13),
            dataLocation: { type: 'DataLocation', id: 14 },
            doubleData: Rep('double', 10, true),
            uint64Data: Rep('uint64', 11, true),
            metadataProps: Rep('StringStringEntryProto', 16),
          },
          nested: {
            Segment: { fields: { begin: I64(1), end: I64(2) } },
            DataLocation: { values: { DEFAULT: 0, EXTERNAL: 1 } },
          },
        },
        SparseTensorProto: {
          fields: { values: Msg('TensorProto', 1), indices: Msg('TensorProto', 2), dims: Rep('int64', 3, false) },
        },
        TensorShapeProto: {
          fields: { dim: Rep('Dimension', 1) },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ['dimValue', 'dimParam'] } },
              fields: { dimValue: I64(1), dimParam: S(2), denotation: S(3) },
            },
          },
        },
        TypeProto: {
          oneofs: {
            value: { oneof: ['tensorType', 'sequenceType', 'mapType', 'optionalType', 'sparseTensorType', 'opaqueType'] },
          },
          fields: {
            tensorType: Msg('Tensor', 1),
            sequenceType: Msg('Sequence', 4),
            mapType: Msg('Map', 5),
            optionalType: Msg('Optional', 9),
            sparseTensorType: Msg('SparseTensor', 8),
            opaqueType: Msg('Opaque', 7),
            denotation: S(6),
          },
          nested: {
            Tensor: { fields: { elemType: I32(1), shape: Msg('TensorShapeProto', 2) } },
            Sequence: { fields: { elemType: Msg('TypeProto', 1) } },
            Map: { fields: { keyType: I32(1), valueType: Msg('TypeProto', 2) } },
            Optional: { fields: { elemType: Msg('TypeProto', 1) } },
            SparseTensor: { fields: { elemType: I32(1), shape: Msg('TensorShapeProto', 2) } },
            Opaque: { fields: { domain: S(1), name: S(2) } },
          },
        },
        OperatorSetIdProto: { fields: { domain: S(1), version: I64(2) } },
        FunctionProto: {
          fields: {
            name: S(1),
            input: Rep('string', 4),
            output: Rep('string', 5),
            attribute: Rep('string', 6),
            attributeProto: Rep('AttributeProto', 11),
            node: Rep('NodeProto', 7),
            docString: S(8),
            opsetImport: Rep('OperatorSetIdProto', 9),
            domain: S(10),
            overload: S(13),
            valueInfo: Rep('ValueInfoProto', 12),
            metadataProps: Rep('StringStringEntryProto', 14),
          },
        },
      },
    },
  },
};

// onnx.proto is proto2: explicit field presence, closed enums, unpacked repeated scalars unless
// marked packed. Nested types inherit the edition from their parent message.
for (const t of Object.values((ONNX_SCHEMA.nested!.onnx as INamespace).nested!)) (t as { edition?: string }).edition = 'proto2';
