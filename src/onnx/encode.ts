/**
 * IR -> ModelProto bytes, streamed tensor by tensor.
 *
 * The top-level graph's initializers are not built into one protobuf buffer: the encoder writes
 * the model's other fields with protobufjs, then each initializer's header followed by its bytes,
 * chunk by chunk from wherever they live (a view of the input model, a computed array, or an
 * external file). So a model is written without holding all its weights in memory at once, and
 * weights a pass did not change are never copied into a new buffer.
 *
 * External data: initializers can go to a side file next to the model (`location`), aligned so
 * onnxruntime can map them. With the default policy ('auto') tensors that were external stay
 * external and, if the protobuf would pass protobuf's 2 GiB limit, every initializer of at least
 * `threshold` bytes moves out.
 */
import type Long from 'long';
import { PeftcError } from '../errors.js';
import { AttrType, type Attribute } from '../ir/attribute.js';
import { DataType, dtypeName, isKnownDType } from '../ir/dtype.js';
import type { Graph, Value } from '../ir/graph.js';
import type { IrFunction, Model, OpsetImport } from '../ir/model.js';
import type { MetadataProps, SparseTensor, Tensor } from '../ir/tensor.js';
import type { Dim, TypeInfo } from '../ir/types.js';
import {
  bigIntToLong,
  GraphProto,
  ModelProto,
  TensorProto,
  type Msg,
} from './proto.js';

export type ExternalPolicy = 'auto' | 'all' | 'none';

export interface EncodeOptions {
  /** 'auto' (default): keep external tensors external, move all out past 2 GiB. 'all': every
   * initializer >= threshold goes out. 'none': everything inline (fails past 2 GiB). */
  externalData?: ExternalPolicy;
  /** Side-file name relative to the model's folder. Required unless everything stays inline. */
  location?: string;
  /** Initializers smaller than this stay inline (bytes, default 1024). */
  threshold?: number;
  /** Alignment of large tensors in the side file (default 64 KiB, the mapping granularity). */
  alignment?: number;
}

/** Protobuf messages cannot exceed 2 GiB; keep a margin for the fields written around tensors. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;

export type Part = Uint8Array | { readonly tensor: Tensor };

export interface EncodePlan {
  /** The model file's content, in order: encoded bytes and tensor payloads streamed in place. */
  parts: Part[];
  modelBytes: number;
  /** Tensors for the side file, at their offsets. */
  external: Array<{ tensor: Tensor; offset: number }>;
  externalBytes: number;
  location: string | undefined;
}

export function planEncoding(model: Model, options: EncodeOptions = {}): EncodePlan {
  const policy = options.externalData ?? 'auto';
  const threshold = options.threshold ?? 1024;
  const goesOut = (t: Tensor, everyLarge: boolean): boolean =>
    t.dtype !== DataType.STRING && ((everyLarge && t.byteLength >= threshold) || (policy === 'auto' && t.prefersExternal));

  let plan = buildPlan(model, options, (t) => policy !== 'none' && goesOut(t, policy === 'all'));
  if (plan.modelBytes > PROTOBUF_LIMIT && policy === 'auto') {
    plan = buildPlan(model, options, (t) => goesOut(t, true));
  }
  if (plan.modelBytes > PROTOBUF_LIMIT) {
    throw new PeftcError(
      `the model would be ${plan.modelBytes} bytes, over protobuf's 2 GiB limit; write its weights as external data` +
        (policy === 'none' ? ' (external data was turned off)' : ` (threshold ${threshold} bytes leaves too much inline)`),
    );
  }
  return plan;
}

function buildPlan(model: Model, options: EncodeOptions, external: (t: Tensor) => boolean): EncodePlan {
  const align = options.alignment ?? 65536;
  const ext: Array<{ tensor: Tensor; offset: number }> = [];
  let extBytes = 0;
  const initParts: Part[] = [];
  let initBytes = 0;
  for (const v of model.graph.initializers) {
    const t = v.initializer!;
    if (external(t)) {
      if (options.location === undefined) throw new PeftcError(`tensor '${t.name}' must go to external data, but no external-data location was given`);
      // Large tensors start on an alignment boundary so onnxruntime can map them.
      if (t.byteLength >= 1 << 20) extBytes = Math.ceil(extBytes / align) * align;
      ext.push({ tensor: t, offset: extBytes });
      const msg = tensorMsg(t, { location: options.location, offset: extBytes, length: t.byteLength });
      extBytes += t.byteLength;
      const part = embedded(5, TensorProto.encode(msg).finish());
      initParts.push(part);
      initBytes += part.byteLength;
    } else if (t.dtype === DataType.STRING) {
      const part = embedded(5, TensorProto.encode(tensorMsg(t, 'inline')).finish());
      initParts.push(part);
      initBytes += part.byteLength;
    } else {
      // Header without raw_data, then raw_data's key and length, then the payload streamed.
      const header = TensorProto.encode(tensorMsg(t, 'header')).finish();
      const n = t.byteLength;
      const rawKey = lengthDelimitedKey(9, n);
      const head = concat([lengthDelimitedKey(5, header.byteLength + rawKey.byteLength + n), header, rawKey]);
      initParts.push(head, { tensor: t });
      initBytes += head.byteLength + n;
    }
  }
  const graphRest = GraphProto.encode(graphMsg(model.graph, false)).finish();
  const graphLen = graphRest.byteLength + initBytes;
  const modelRest = ModelProto.encode(modelMsg(model)).finish();
  const graphKey = lengthDelimitedKey(7, graphLen);
  const parts: Part[] = [modelRest, graphKey, graphRest, ...initParts];
  return {
    parts,
    modelBytes: modelRest.byteLength + graphKey.byteLength + graphLen,
    external: ext,
    externalBytes: extBytes,
    location: ext.length ? options.location : undefined,
  };
}

/** Encodes a model into one buffer, every tensor inline (for small models and tests). */
export function encodeModel(model: Model): Uint8Array {
  const plan = planEncoding(model, { externalData: 'none' });
  const out = Buffer.allocUnsafe(plan.modelBytes);
  let at = 0;
  for (const p of plan.parts) {
    if (p instanceof Uint8Array) {
      out.set(p, at);
      at += p.byteLength;
    } else {
      for (const c of p.tensor.chunks(undefined, true)) {
        out.set(c, at);
        at += c.byteLength;
      }
    }
  }
  if (at !== plan.modelBytes) throw new Error(`internal: encoded ${at} bytes, planned ${plan.modelBytes}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Wire helpers

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

function lengthDelimitedKey(field: number, length: number): Uint8Array {
  return Uint8Array.from([...varint((field << 3) | 2), ...varint(length)]);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  return Buffer.concat(chunks);
}

/** A length-delimited field holding already-encoded bytes. */
function embedded(field: number, body: Uint8Array): Uint8Array {
  return concat([lengthDelimitedKey(field, body.byteLength), body]);
}

// ---------------------------------------------------------------------------------------------
// IR -> protobufjs plain messages. Empty strings and lists are left out, as onnx writes them.

const meta = (m: MetadataProps): Msg[] | undefined => (m.length ? m.map(([key, value]) => ({ key, value })) : undefined);

function clean(o: Msg): Msg {
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v === undefined || v === '' || (Array.isArray(v) && v.length === 0)) delete o[k];
  }
  return o;
}

function opsets(list: OpsetImport[]): Msg[] {
  return list.map((o) => clean({ domain: o.domain, version: o.version }));
}

function modelMsg(model: Model): Msg {
  return clean({
    irVersion: model.irVersion,
    opsetImport: opsets(model.opsetImports),
    producerName: model.producerName,
    producerVersion: model.producerVersion,
    domain: model.domain,
    modelVersion: model.modelVersion || undefined,
    docString: model.docString,
    metadataProps: meta(model.metadataProps),
    trainingInfo: model.trainingInfo, // kept verbatim (bytes fields, see proto.ts)
    functions: model.functions.map(functionMsg),
    configuration: model.configuration,
  });
}

function functionMsg(fn: IrFunction): Msg {
  if (fn.body.initializers.length || fn.body.sparseInitializers.length) {
    throw new PeftcError(`function '${fn.key}': a FunctionProto cannot hold initializers (use Constant nodes in its body)`);
  }
  return clean({
    name: fn.name,
    input: fn.body.inputs.map((v) => v.name),
    output: fn.body.outputs.map((v) => v.name),
    attribute: fn.attributeNames,
    attributeProto: fn.attributeDefaults.map(attributeMsg),
    node: nodesMsg(fn.body),
    docString: fn.docString,
    opsetImport: opsets(fn.opsetImports),
    domain: fn.domain,
    overload: fn.overload,
    valueInfo: fn.body.valueInfos.map(valueInfoMsg),
    metadataProps: meta(fn.metadataProps),
  });
}

function graphMsg(g: Graph, withInitializers: boolean): Msg {
  return clean({
    node: nodesMsg(g),
    name: g.name,
    initializer: withInitializers ? g.initializers.map((v) => tensorMsg(v.initializer!, 'inline')) : undefined,
    sparseInitializer: g.sparseInitializers.map((v) => sparseMsg(v.sparseInitializer!)),
    docString: g.docString,
    input: g.inputs.map(valueInfoMsg),
    output: g.outputs.map(valueInfoMsg),
    valueInfo: g.valueInfos.map(valueInfoMsg),
    quantizationAnnotation: g.quantizationAnnotations.map((q) =>
      clean({ tensorName: q.tensorName, quantParameterTensorNames: meta(q.params) }),
    ),
    metadataProps: meta(g.metadataProps),
  });
}

function nodesMsg(g: Graph): Msg[] {
  return g.nodes.map((n) =>
    clean({
      input: n.inputs.map((v) => v?.name ?? ''),
      output: n.outputs.map((v) => v?.name ?? ''),
      name: n.name,
      opType: n.opType,
      domain: n.domain,
      overload: n.overload,
      attribute: n.attributes.map(attributeMsg),
      docString: n.docString,
      metadataProps: meta(n.metadataProps),
      deviceConfigurations: n.deviceConfigurations,
    }),
  );
}

function valueInfoMsg(v: Value): Msg {
  return clean({ name: v.name, type: v.type ? typeMsg(v.type) : undefined, docString: v.docString, metadataProps: meta(v.metadataProps) });
}

function shapeMsg(shape: Dim[]): Msg {
  return {
    dim: shape.map((d) => {
      const m: Msg = {};
      if (d.value !== undefined) m.dimValue = d.value;
      else if (d.param !== undefined) m.dimParam = d.param;
      if (d.denotation) m.denotation = d.denotation;
      return m;
    }),
  };
}

function typeMsg(t: TypeInfo): Msg {
  const m: Msg = {};
  switch (t.kind) {
    case 'tensor':
    case 'sparse_tensor': {
      const inner: Msg = { elemType: t.elemType };
      if (t.shape) inner.shape = shapeMsg(t.shape);
      m[t.kind === 'tensor' ? 'tensorType' : 'sparseTensorType'] = inner;
      break;
    }
    case 'sequence':
      m.sequenceType = t.elem ? { elemType: typeMsg(t.elem) } : {};
      break;
    case 'optional':
      m.optionalType = t.elem ? { elemType: typeMsg(t.elem) } : {};
      break;
    case 'map':
      m.mapType = { keyType: t.keyType, ...(t.value ? { valueType: typeMsg(t.value) } : {}) };
      break;
    case 'opaque':
      m.opaqueType = clean({ domain: t.domain, name: t.name });
      break;
    case 'none':
      break;
  }
  if (t.denotation) m.denotation = t.denotation;
  return m;
}

function sparseMsg(s: SparseTensor): Msg {
  return { values: tensorMsg(s.values, 'inline'), indices: tensorMsg(s.indices, 'inline'), dims: s.dims };
}

/**
 * 'inline': data as raw_data (strings as string_data); 'header': everything but raw_data (the
 * payload is streamed after it); an external placement: data_location EXTERNAL + external_data.
 */
function tensorMsg(t: Tensor, mode: 'inline' | 'header' | { location: string; offset: number; length: number }): Msg {
  checkTensor(t);
  const m: Msg = clean({
    dims: t.dims.length ? [...t.dims] : undefined,
    dataType: t.dtype,
    name: t.name,
    docString: t.docString,
    metadataProps: meta(t.metadataProps),
  });
  if (t.dtype === DataType.STRING) {
    m.stringData = [...t.strings()];
  } else if (mode === 'inline') {
    m.rawData = t.bytes();
  } else if (mode !== 'header') {
    m.dataLocation = 1;
    m.externalData = [
      { key: 'location', value: mode.location },
      { key: 'offset', value: String(mode.offset) },
      { key: 'length', value: String(mode.length) },
    ];
  }
  return m;
}

/**
 * Refuses a tensor whose data does not fit its dtype and dims (a pass bug), which would otherwise
 * be written as a corrupt model, or break the streamed encoding's planned lengths.
 */
function checkTensor(t: Tensor): void {
  const s = t.source;
  const what = () => `tensor '${t.name}' (${dtypeName(t.dtype)}[${t.dims.join(',')}])`;
  for (const d of t.dims) if (!Number.isSafeInteger(d) || d < 0) throw new PeftcError(`${what()}: dimension ${d} is not a non-negative integer`);
  if (t.dtype === DataType.STRING) {
    if (s.kind !== 'strings') throw new PeftcError(`${what()}: a string tensor needs string elements`);
    if (s.strings.length !== t.elementCount) throw new PeftcError(`${what()}: ${s.strings.length} strings for ${t.elementCount} elements`);
  } else {
    if (!isKnownDType(t.dtype) || t.dtype === DataType.UNDEFINED) throw new PeftcError(`${what()}: unknown data type ${t.dtype}`);
    if (s.kind === 'strings') throw new PeftcError(`${what()}: holds strings`);
    if (s.kind === 'bytes' && s.bytes.byteLength !== t.byteLength) {
      throw new PeftcError(`${what()}: holds ${s.bytes.byteLength} bytes of data, its dims need ${t.byteLength}`);
    }
  }
}

function int64(v: bigint, what: string): Long {
  if (BigInt.asIntN(64, v) !== v) throw new PeftcError(`${what}: ${v} does not fit in int64`);
  return bigIntToLong(v);
}

function attributeMsg(a: Attribute): Msg {
  const m: Msg = { name: a.name };
  if (a.docString) m.docString = a.docString;
  switch (a.type) {
    case 'ref':
      m.refAttrName = a.refAttrName;
      m.type = a.declaredType;
      return m;
    case 'float':
      return { ...m, type: AttrType.FLOAT, f: a.value };
    case 'int':
      return { ...m, type: AttrType.INT, i: int64(a.value, `attribute '${a.name}'`) };
    case 'string':
      return { ...m, type: AttrType.STRING, s: a.value };
    case 'tensor':
      return { ...m, type: AttrType.TENSOR, t: tensorMsg(a.value, 'inline') };
    case 'graph':
      return { ...m, type: AttrType.GRAPH, g: graphMsg(a.value, true) };
    case 'sparse_tensor':
      return { ...m, type: AttrType.SPARSE_TENSOR, sparseTensor: sparseMsg(a.value) };
    case 'type_proto':
      return { ...m, type: AttrType.TYPE_PROTO, tp: typeMsg(a.value) };
    case 'floats':
      return { ...m, type: AttrType.FLOATS, floats: a.value };
    case 'ints':
      return { ...m, type: AttrType.INTS, ints: a.value.map((v) => int64(v, `attribute '${a.name}'`)) };
    case 'strings':
      return { ...m, type: AttrType.STRINGS, strings: a.value };
    case 'tensors':
      return { ...m, type: AttrType.TENSORS, tensors: a.value.map((t) => tensorMsg(t, 'inline')) };
    case 'graphs':
      return { ...m, type: AttrType.GRAPHS, graphs: a.value.map((g) => graphMsg(g, true)) };
    case 'sparse_tensors':
      return { ...m, type: AttrType.SPARSE_TENSORS, sparseTensors: a.value.map(sparseMsg) };
    case 'type_protos':
      return { ...m, type: AttrType.TYPE_PROTOS, typeProtos: a.value.map(typeMsg) };
  }
}
