/**
 * ModelProto bytes -> IR.
 *
 * No weight bytes are copied: raw_data becomes a view into the input buffer and external data a
 * lazy reference (see external-data.ts). Every malformation (bad protobuf, a tensor whose data
 * does not match its dims, an unsafe external path) is a PeftcError naming the file and the
 * tensor, node or field.
 */
import { PeftcError, wrapError } from '../errors.js';
import { AttrType, type Attribute } from '../ir/attribute.js';
import { byteSize, DataType, dtypeInfo, dtypeName, isKnownDType, type TypedArray } from '../ir/dtype.js';
import { Graph, Node } from '../ir/graph.js';
import { IrFunction, Model, type OpsetImport } from '../ir/model.js';
import { Tensor, type MetadataProps, type SparseTensor } from '../ir/tensor.js';
import type { Dim, TypeInfo } from '../ir/types.js';
import { ExternalDataResolver } from './external-data.js';
import { DeviceConfigurationProto, has, ModelProto, NodeDeviceConfigurationProto, TensorProto, toBigInt, TrainingInfoProto, type Msg } from './proto.js';

export interface DecodeOptions {
  /** Name of the source, for error messages (a file path). */
  source?: string;
  /** Folder that external-data locations are relative to; without it, external data is refused. */
  baseDir?: string;
}

export function decodeModel(bytes: Uint8Array, options: DecodeOptions = {}): Model {
  const source = options.source ?? '<bytes>';
  let msg: Msg;
  try {
    msg = ModelProto.decode(bytes) as Msg;
  } catch (err) {
    throw wrapError(`${source}: not a valid ONNX model (protobuf decoding failed)`, err);
  }
  try {
    return new Decoder(source, options.baseDir).model(msg);
  } catch (err) {
    throw wrapError(source, err);
  }
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function safeNumber(v: unknown, what: string): number {
  const n = typeof v === 'number' ? v : Number(toBigInt(v as never));
  if (!Number.isSafeInteger(n) || Math.abs(n) > MAX_SAFE) throw new PeftcError(`${what}: ${String(v)} is out of range`);
  return n;
}

/**
 * A field the IR keeps as encoded bytes (read as `bytes`, see proto.ts): checked to be a
 * well-formed message of its type, then copied exactly as written.
 */
function verbatim(type: { decode(b: Uint8Array): unknown }, bytes: Uint8Array, what: string): Uint8Array {
  try {
    type.decode(bytes);
  } catch (err) {
    throw wrapError(`${what} is malformed`, err);
  }
  return Uint8Array.from(bytes);
}

function metadata(list: Msg[] | undefined): MetadataProps {
  return (list ?? []).map((e) => [e.key ?? '', e.value ?? ''] as [string, string]);
}

class Decoder {
  private readonly external: ExternalDataResolver | undefined;

  constructor(
    private readonly source: string,
    baseDir: string | undefined,
  ) {
    this.external = baseDir !== undefined ? new ExternalDataResolver(baseDir, source) : undefined;
  }

  model(m: Msg): Model {
    const model = new Model();
    model.irVersion = safeNumber(m.irVersion ?? 0, 'ir_version');
    model.opsetImports = (m.opsetImport ?? []).map((o: Msg) => this.opset(o));
    model.producerName = m.producerName ?? '';
    model.producerVersion = m.producerVersion ?? '';
    model.domain = m.domain ?? '';
    model.modelVersion = safeNumber(m.modelVersion ?? 0, 'model_version');
    model.docString = m.docString ?? '';
    model.metadataProps = metadata(m.metadataProps);
    model.trainingInfo = (m.trainingInfo ?? []).map((b: Uint8Array, i: number) => verbatim(TrainingInfoProto, b, `training_info[${i}]`));
    model.configuration = (m.configuration ?? []).map((b: Uint8Array, i: number) => verbatim(DeviceConfigurationProto, b, `configuration[${i}]`));
    model.functions = (m.functions ?? []).map((f: Msg) => this.function(f));
    if (!has(m, 'graph')) throw new PeftcError('the model has no graph');
    model.graph = this.graph(m.graph, null, 'graph');
    return model;
  }

  private opset(o: Msg): OpsetImport {
    return { domain: o.domain ?? '', version: safeNumber(o.version ?? 0, `opset_import '${o.domain ?? ''}'`) };
  }

  private function(f: Msg): IrFunction {
    const fn = new IrFunction();
    fn.name = f.name ?? '';
    fn.domain = f.domain ?? '';
    fn.overload = f.overload ?? '';
    fn.docString = f.docString ?? '';
    fn.metadataProps = metadata(f.metadataProps);
    fn.opsetImports = (f.opsetImport ?? []).map((o: Msg) => this.opset(o));
    fn.attributeNames = [...(f.attribute ?? [])];
    const where = `function '${fn.domain}::${fn.name}'`;
    const body = fn.body;
    body.name = fn.name;
    fn.attributeDefaults = (f.attributeProto ?? []).map((a: Msg) => this.attribute(a, body, where));
    for (const name of f.input ?? []) body.inputs.push(this.define(body, name, where));
    this.nodesAndValues(body, f.node ?? [], f.valueInfo ?? [], f.output ?? [], where);
    return fn;
  }

  private define(g: Graph, name: string, where: string) {
    if (g.localValue(name)) throw new PeftcError(`${where}: value '${name}' is defined twice`);
    return g.createValue(name);
  }

  private graph(m: Msg, parent: Graph | null, where: string): Graph {
    const g = new Graph(parent);
    g.name = m.name ?? '';
    where = parent ? `${where} '${g.name}'` : where;
    g.docString = m.docString ?? '';
    g.metadataProps = metadata(m.metadataProps);
    for (const vi of m.input ?? []) {
      const v = this.define(g, vi.name ?? '', where);
      this.valueInfo(v, vi);
      g.inputs.push(v);
    }
    for (const t of m.initializer ?? []) {
      const tensor = this.tensor(t, `${where}: initializer '${t.name ?? ''}'`, true);
      const v = g.localValue(tensor.name) ?? g.createValue(tensor.name);
      if (v.initializer || v.sparseInitializer) throw new PeftcError(`${where}: initializer '${tensor.name}' is defined twice`);
      v.initializer = tensor;
      g.initializers.push(v);
    }
    for (const s of m.sparseInitializer ?? []) {
      const sparse = this.sparse(s, `${where}: sparse initializer`);
      const name = sparse.values.name;
      const v = g.localValue(name) ?? g.createValue(name);
      if (v.initializer || v.sparseInitializer) throw new PeftcError(`${where}: sparse initializer '${name}' is defined twice`);
      v.sparseInitializer = sparse;
      g.sparseInitializers.push(v);
    }
    g.quantizationAnnotations = (m.quantizationAnnotation ?? []).map((q: Msg) => ({
      tensorName: q.tensorName ?? '',
      params: metadata(q.quantParameterTensorNames),
    }));
    this.nodesAndValues(g, m.node ?? [], m.valueInfo ?? [], m.output ?? [], where);
    return g;
  }

  /** Shared by graphs and function bodies: defines node outputs, builds nodes, binds value_info and outputs. */
  private nodesAndValues(g: Graph, nodes: Msg[], valueInfos: Msg[], outputs: Array<Msg | string>, where: string): void {
    // Define every node output first, so subgraphs can refer to any value of this graph.
    for (const n of nodes) for (const name of n.output ?? []) if (name !== '') this.define(g, name, `${where}: node '${n.name ?? ''}' output`);
    for (const n of nodes) g.appendNode(this.node(n, g, where));
    for (const vi of valueInfos) {
      const v = g.localValue(vi.name ?? '') ?? g.createValue(vi.name ?? '');
      this.valueInfo(v, vi);
      g.valueInfos.push(v);
    }
    for (const o of outputs) {
      const name = typeof o === 'string' ? o : (o.name ?? '');
      const v = g.lookup(name) ?? g.createValue(name);
      if (typeof o !== 'string') this.valueInfo(v, o);
      g.outputs.push(v);
    }
  }

  private valueInfo(v: import('../ir/graph.js').Value, vi: Msg): void {
    if (has(vi, 'type')) v.type = this.type(vi.type, `value '${v.name}'`);
    if (vi.docString) v.docString = vi.docString;
    if (vi.metadataProps?.length) v.metadataProps = metadata(vi.metadataProps);
  }

  private node(n: Msg, g: Graph, where: string): Node {
    const node = new Node(g, n.opType ?? '', n.domain ?? '', n.name ?? '');
    const label = `${where}: node '${node.name || node.opType}'`;
    node.overload = n.overload ?? '';
    node.docString = n.docString ?? '';
    node.metadataProps = metadata(n.metadataProps);
    node.deviceConfigurations = (n.deviceConfigurations ?? []).map((b: Uint8Array, i: number) =>
      verbatim(NodeDeviceConfigurationProto, b, `${label}: device_configurations[${i}]`),
    );
    node.attributes = (n.attribute ?? []).map((a: Msg) => this.attribute(a, g, label));
    (n.input ?? []).forEach((name: string, i: number) => {
      node.setInput(i, name === '' ? null : (g.lookup(name) ?? g.createValue(name)));
    });
    (n.output ?? []).forEach((name: string, i: number) => node.setOutput(i, name === '' ? null : g.localValue(name)!));
    return node;
  }

  private attribute(a: Msg, g: Graph, where: string): Attribute {
    const name: string = a.name ?? '';
    const label = `${where} attribute '${name}'`;
    const base = { name, ...(a.docString ? { docString: a.docString as string } : {}) };
    if (a.refAttrName) return { ...base, type: 'ref', refAttrName: a.refAttrName, declaredType: a.type ?? 0 };
    const type: number = a.type || this.inferAttrType(a, label);
    switch (type) {
      case AttrType.FLOAT:
        return { ...base, type: 'float', value: a.f ?? 0 };
      case AttrType.INT:
        return { ...base, type: 'int', value: toBigInt(a.i) };
      case AttrType.STRING:
        return { ...base, type: 'string', value: has(a, 's') ? a.s : new Uint8Array(0) };
      case AttrType.TENSOR:
        if (!has(a, 't')) throw new PeftcError(`${label}: TENSOR attribute without a tensor`);
        return { ...base, type: 'tensor', value: this.tensor(a.t, `${label} tensor`, false) };
      case AttrType.GRAPH:
        if (!has(a, 'g')) throw new PeftcError(`${label}: GRAPH attribute without a graph`);
        return { ...base, type: 'graph', value: this.graph(a.g, g, `${label} graph`) };
      case AttrType.SPARSE_TENSOR:
        return { ...base, type: 'sparse_tensor', value: this.sparse(a.sparseTensor ?? {}, label) };
      case AttrType.TYPE_PROTO:
        return { ...base, type: 'type_proto', value: this.type(a.tp ?? {}, label) };
      case AttrType.FLOATS:
        return { ...base, type: 'floats', value: [...(a.floats ?? [])] };
      case AttrType.INTS:
        return { ...base, type: 'ints', value: (a.ints ?? []).map(toBigInt) };
      case AttrType.STRINGS:
        return { ...base, type: 'strings', value: [...(a.strings ?? [])] };
      case AttrType.TENSORS:
        return { ...base, type: 'tensors', value: (a.tensors ?? []).map((t: Msg) => this.tensor(t, `${label} tensor`, false)) };
      case AttrType.GRAPHS:
        return { ...base, type: 'graphs', value: (a.graphs ?? []).map((x: Msg) => this.graph(x, g, `${label} graph`)) };
      case AttrType.SPARSE_TENSORS:
        return { ...base, type: 'sparse_tensors', value: (a.sparseTensors ?? []).map((s: Msg) => this.sparse(s, label)) };
      case AttrType.TYPE_PROTOS:
        return { ...base, type: 'type_protos', value: (a.typeProtos ?? []).map((t: Msg) => this.type(t, label)) };
      default:
        throw new PeftcError(`${label}: unknown attribute type ${type}`);
    }
  }

  /** IR v1 models may omit AttributeProto.type; infer it from the field that is set. */
  private inferAttrType(a: Msg, label: string): number {
    const order: Array<[string, number]> = [
      ['f', AttrType.FLOAT], ['i', AttrType.INT], ['s', AttrType.STRING], ['t', AttrType.TENSOR], ['g', AttrType.GRAPH],
      ['sparseTensor', AttrType.SPARSE_TENSOR], ['tp', AttrType.TYPE_PROTO],
    ];
    for (const [field, t] of order) if (has(a, field)) return t;
    const lists: Array<[string, number]> = [
      ['floats', AttrType.FLOATS], ['ints', AttrType.INTS], ['strings', AttrType.STRINGS], ['tensors', AttrType.TENSORS],
      ['graphs', AttrType.GRAPHS], ['sparseTensors', AttrType.SPARSE_TENSORS], ['typeProtos', AttrType.TYPE_PROTOS],
    ];
    for (const [field, t] of lists) if (a[field]?.length) return t;
    throw new PeftcError(`${label}: attribute has no type and no value`);
  }

  private type(t: Msg, what: string): TypeInfo {
    const den = t.denotation ? { denotation: t.denotation as string } : {};
    const shape = (s: Msg | undefined): Dim[] | undefined =>
      s === undefined || s === null
        ? undefined
        : (s.dim ?? []).map((d: Msg) => {
            const dim: Dim = {};
            if (has(d, 'dimValue')) dim.value = safeNumber(d.dimValue, `${what}: dimension`);
            else if (has(d, 'dimParam')) dim.param = d.dimParam;
            if (d.denotation) dim.denotation = d.denotation;
            return dim;
          });
    const tensorLike = (kind: 'tensor' | 'sparse_tensor', x: Msg): TypeInfo => {
      const s = has(x, 'shape') ? shape(x.shape) : undefined;
      return { kind, elemType: x.elemType ?? 0, ...(s ? { shape: s } : {}), ...den };
    };
    const elem = (x: Msg, field: string): { elem?: TypeInfo } => (has(x, field) ? { elem: this.type(x[field], what) } : {});
    if (has(t, 'tensorType')) return tensorLike('tensor', t.tensorType);
    if (has(t, 'sparseTensorType')) return tensorLike('sparse_tensor', t.sparseTensorType);
    if (has(t, 'sequenceType')) return { kind: 'sequence', ...elem(t.sequenceType, 'elemType'), ...den };
    if (has(t, 'optionalType')) return { kind: 'optional', ...elem(t.optionalType, 'elemType'), ...den };
    if (has(t, 'mapType')) {
      const m = t.mapType;
      return { kind: 'map', keyType: m.keyType ?? 0, ...(has(m, 'valueType') ? { value: this.type(m.valueType, what) } : {}), ...den };
    }
    if (has(t, 'opaqueType')) return { kind: 'opaque', domain: t.opaqueType.domain ?? '', name: t.opaqueType.name ?? '', ...den };
    return { kind: 'none', ...den };
  }

  private sparse(s: Msg, where: string): SparseTensor {
    if (!has(s, 'values') || !has(s, 'indices')) throw new PeftcError(`${where}: sparse tensor needs values and indices`);
    return {
      values: this.tensor(s.values, `${where} values`, false),
      indices: this.tensor(s.indices, `${where} indices`, false),
      dims: (s.dims ?? []).map((d: unknown) => safeNumber(d, `${where}: dimension`)),
    };
  }

  tensor(t: Msg, where: string, allowExternal: boolean): Tensor {
    const name: string = t.name ?? '';
    const dtypeNum: number = t.dataType ?? 0;
    if (!isKnownDType(dtypeNum) || dtypeNum === DataType.UNDEFINED) throw new PeftcError(`${where}: unknown data type ${dtypeNum}`);
    const dtype = dtypeNum as DataType;
    const dims = (t.dims ?? []).map((d: unknown) => {
      const n = safeNumber(d, `${where}: dimension`);
      if (n < 0) throw new PeftcError(`${where}: negative dimension ${n}`);
      return n;
    });
    let count = 1;
    for (const d of dims) {
      count *= d;
      if (count > MAX_SAFE) throw new PeftcError(`${where}: element count overflows`);
    }
    if (has(t, 'segment')) throw new PeftcError(`${where}: segmented tensors (TensorProto.segment) are not supported`);
    const finish = (tensor: Tensor): Tensor => {
      tensor.docString = t.docString ?? '';
      tensor.metadataProps = metadata(t.metadataProps);
      return tensor;
    };

    if (t.dataLocation === 1) {
      if (!allowExternal && !this.external) throw new PeftcError(`${where}: external data needs the model's folder (load the model from a file)`);
      if (!this.external) throw new PeftcError(`${where}: the model uses external data; load it from a file so its folder is known`);
      if (dtype === DataType.STRING) throw new PeftcError(`${where}: string tensors cannot use external data`);
      const ref = this.external.resolve(metadata(t.externalData), byteSize(dtype, count), `${where}`);
      return finish(new Tensor(name, dtype, dims, { kind: 'external', ref }));
    }
    if (dtype === DataType.STRING) {
      const strings: Uint8Array[] = [...(t.stringData ?? [])];
      if (strings.length !== count) throw new PeftcError(`${where}: ${strings.length} strings for ${count} elements`);
      return finish(Tensor.fromStrings(name, dims, strings));
    }
    const expected = byteSize(dtype, count);
    if (has(t, 'rawData')) {
      const raw: Uint8Array = t.rawData;
      if (raw.byteLength !== expected) {
        throw new PeftcError(`${where}: raw_data has ${raw.byteLength} bytes, ${dtypeName(dtype)}[${dims.join(',')}] needs ${expected}`);
      }
      return finish(Tensor.fromBytes(name, dtype, dims, raw));
    }
    return finish(Tensor.fromBytes(name, dtype, dims, typedFieldBytes(t, dtype, count, expected, where)));
  }
}

/** Converts the typed *_data fields to raw little-endian bytes (the IR's one in-memory form). */
function typedFieldBytes(t: Msg, dtype: DataType, count: number, expected: number, where: string): Uint8Array {
  const info = dtypeInfo(dtype);
  const fields = ['floatData', 'int32Data', 'int64Data', 'doubleData', 'uint64Data'].filter((f) => t[f]?.length);
  if (fields.length === 0) {
    if (count === 0) return new Uint8Array(0);
    throw new PeftcError(`${where}: ${dtypeName(dtype)}[${(t.dims ?? []).join(',')}] has no data`);
  }
  const values: ArrayLike<unknown> = t[fields[0]!];
  // Complex numbers store two values per element; sub-byte types store one packed byte per int32.
  const perElement = dtype === DataType.COMPLEX64 || dtype === DataType.COMPLEX128 ? 2 : 1;
  const wantValues = info.bits < 8 ? expected : count * perElement;
  if (values.length !== wantValues) {
    throw new PeftcError(`${where}: ${fields[0]} holds ${values.length} values, ${dtypeName(dtype)}[${(t.dims ?? []).join(',')}] needs ${wantValues}`);
  }
  let out: TypedArray;
  switch (dtype) {
    case DataType.FLOAT:
    case DataType.COMPLEX64:
      out = Float32Array.from(values as ArrayLike<number>);
      break;
    case DataType.DOUBLE:
    case DataType.COMPLEX128:
      out = Float64Array.from(values as ArrayLike<number>);
      break;
    case DataType.INT64:
      out = BigInt64Array.from(values as ArrayLike<never>, (v) => BigInt.asIntN(64, toBigInt(v)));
      break;
    case DataType.UINT64:
      out = BigUint64Array.from(values as ArrayLike<never>, (v) => BigInt.asUintN(64, toBigInt(v)));
      break;
    case DataType.UINT32:
      out = Uint32Array.from(values as ArrayLike<never>, (v) => Number(BigInt.asUintN(32, toBigInt(v))));
      break;
    default: {
      if (info.bits < 8) {
        out = Uint8Array.from(values as ArrayLike<number>);
      } else if (info.storage) {
        const Ctor = info.storage as unknown as { from(v: ArrayLike<number>): TypedArray };
        out = Ctor.from(values as ArrayLike<number>);
      } else {
        throw new PeftcError(`${where}: cannot read ${dtypeName(dtype)} from ${fields[0]}`);
      }
    }
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Decodes a serialized TensorProto (as in ONNX test_data_set_N/input_K.pb files). */
export function decodeTensor(bytes: Uint8Array, options: DecodeOptions = {}): Tensor {
  const source = options.source ?? '<bytes>';
  let msg: Msg;
  try {
    msg = TensorProto.decode(bytes) as Msg;
  } catch (err) {
    throw wrapError(`${source}: not a valid TensorProto`, err);
  }
  try {
    return new Decoder(source, options.baseDir).tensor(msg, `tensor '${msg.name ?? ''}'`, true);
  } catch (err) {
    throw wrapError(source, err);
  }
}
