/**
 * fast-check arbitraries for random IR models that exercise everything the ONNX codec carries:
 * every dtype of ALL_DTYPES (float8, int4/uint4, int2/uint2 ...), random dims with zero-size
 * tensors and scalars, string tensors, every attribute kind (int64 extremes as bigint, floats with
 * -0/NaN/Inf), subgraphs with outer-scope references, local functions with ref attributes and
 * attribute defaults, metadata_props on model/graph/node/value/tensor, sparse initializers,
 * quantization annotations, value_info, and opaque training_info / device-configuration bytes.
 *
 * The arbitraries generate plain data (a spec) and `buildModel` turns a spec into a fresh Model
 * each time, so a property may mutate the model it gets. Every model is valid for `checkModel`
 * (unique names, topological order, outer-scope references only to enclosing graphs) and holds
 * only what ONNX can express (e.g. function inputs carry no types), so
 * decode(encode(m)) must equal m exactly.
 *
 * Reusable by pass tests: `arbModel(options)`, `arbTensor`, `arbTypeInfo`, `arbAttribute`.
 */
import fc from 'fast-check';
import type { Attribute } from '../src/ir/attribute.js';
import { ALL_DTYPES, byteSize, DataType, elementCount } from '../src/ir/dtype.js';
import { Graph, type Value } from '../src/ir/graph.js';
import { IrFunction, Model } from '../src/ir/model.js';
import { Tensor, type MetadataProps, type SparseTensor } from '../src/ir/tensor.js';
import type { Dim, TypeInfo } from '../src/ir/types.js';

export const INT64_MAX = 2n ** 63n - 1n;
export const INT64_MIN = -(2n ** 63n);

export interface ArbIrOptions {
  /** Nodes per graph (default 5). */
  maxNodes?: number;
  /** Subgraph nesting depth through graph attributes (default 2). */
  maxDepth?: number;
  /** Local functions per model (default 2). */
  maxFunctions?: number;
  /** Largest dimension of generated tensors (default 4). */
  maxDim?: number;
  /** Opaque training_info / configuration / device configuration bytes (default true). */
  opaqueBytes?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Leaves

/** Any Unicode text (no lone surrogates: protobuf strings are UTF-8). */
export const arbText = (maxLength = 6): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.string({ maxLength, unit: 'grapheme-ascii' }) },
    { weight: 1, arbitrary: fc.string({ maxLength, unit: 'binary' }) },
  );

const arbNonEmptyText = (maxLength = 6) => arbText(maxLength).filter((s) => s !== '');

export const arbMetadata = (maxLength = 2): fc.Arbitrary<MetadataProps> =>
  fc.array(fc.tuple(arbText(5), arbText(8)), { maxLength });

const arbDoc = fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 1, arbitrary: arbText(12) });

/** float32-representable numbers including -0, NaN, +-Inf, subnormals and extremes. */
export const arbFloat32: fc.Arbitrary<number> = fc.oneof(
  fc.float(),
  fc.constantFrom(-0, 0, NaN, Infinity, -Infinity, 3.4028234663852886e38, -3.4028234663852886e38, 1.401298464324817e-45),
);

export const arbInt64: fc.Arbitrary<bigint> = fc.oneof(
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }),
  fc.constantFrom(INT64_MAX, INT64_MIN, 0n, -1n, 1n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 31n, -(2n ** 31n) - 1n),
);

// ---------------------------------------------------------------------------------------------
// Tensors

export interface TensorSpec {
  name: string;
  dtype: DataType;
  dims: number[];
  /** raw bytes, or the elements of a string tensor */
  data: Uint8Array | Uint8Array[];
  docString: string;
  metadataProps: MetadataProps;
  /** 'offset': the bytes are a misaligned view into a larger buffer (as decoded models hold them). */
  layout: 'plain' | 'offset';
}

export function arbTensorSpec(options: { maxDim?: number; dtypes?: readonly DataType[]; maxRank?: number } = {}): fc.Arbitrary<TensorSpec> {
  const dtypes = options.dtypes ?? ALL_DTYPES;
  const dims = fc.array(fc.integer({ min: 0, max: options.maxDim ?? 4 }), { maxLength: options.maxRank ?? 4 });
  return fc
    .record({
      name: arbText(),
      dtype: fc.constantFrom(...dtypes),
      dims,
      docString: arbDoc,
      metadataProps: arbMetadata(1),
      layout: fc.constantFrom('plain' as const, 'offset' as const),
    })
    .chain((base) => {
      const count = elementCount(base.dims);
      const data: fc.Arbitrary<Uint8Array | Uint8Array[]> =
        base.dtype === DataType.STRING
          ? fc.array(fc.uint8Array({ maxLength: 6 }), { minLength: count, maxLength: count })
          : fc.uint8Array({ minLength: byteSize(base.dtype, count), maxLength: byteSize(base.dtype, count) });
      return data.map((d) => ({ ...base, data: d }));
    });
}

export function buildTensor(spec: TensorSpec, name = spec.name): Tensor {
  let t: Tensor;
  if (spec.dtype === DataType.STRING) {
    t = Tensor.fromStrings(name, [...spec.dims], (spec.data as Uint8Array[]).map((s) => Uint8Array.from(s)));
  } else {
    const data = spec.data as Uint8Array;
    let bytes: Uint8Array;
    if (spec.layout === 'offset') {
      const buf = new Uint8Array(data.byteLength + 11);
      buf.fill(0xa5);
      buf.set(data, 3);
      bytes = buf.subarray(3, 3 + data.byteLength);
    } else {
      bytes = Uint8Array.from(data);
    }
    t = Tensor.fromBytes(name, spec.dtype, [...spec.dims], bytes);
  }
  t.docString = spec.docString;
  t.metadataProps = spec.metadataProps.map(([k, v]) => [k, v]);
  return t;
}

export const arbTensor = (options?: Parameters<typeof arbTensorSpec>[0]): fc.Arbitrary<Tensor> =>
  arbTensorSpec(options).map((s) => buildTensor(s));

export interface SparseSpec {
  label: string;
  values: TensorSpec;
  indices: TensorSpec;
  dims: number[];
}

const arbSparseSpec = (maxDim: number): fc.Arbitrary<SparseSpec> =>
  fc.record({
    label: arbText(),
    values: arbTensorSpec({ maxDim, maxRank: 1 }),
    indices: arbTensorSpec({ maxDim, maxRank: 2, dtypes: [DataType.INT64] }),
    dims: fc.array(fc.integer({ min: 0, max: 2 ** 40 }), { maxLength: 3 }),
  });

function buildSparse(spec: SparseSpec, valuesName: string): SparseTensor {
  return { values: buildTensor(spec.values, valuesName), indices: buildTensor(spec.indices), dims: [...spec.dims] };
}

// ---------------------------------------------------------------------------------------------
// Types (TypeProto). Objects are built with keys in a different order than the decoder uses, so
// a key-order-sensitive comparison would be caught.

const arbDim: fc.Arbitrary<Dim> = fc
  .tuple(
    fc.oneof(
      fc.integer({ min: -1, max: 64 }).map((value) => ({ value })),
      fc.maxSafeInteger().map((value) => ({ value })),
      arbText().map((param) => ({ param })),
      fc.constant({}),
    ),
    fc.option(arbNonEmptyText(), { nil: undefined }),
  )
  .map(([d, denotation]) => (denotation === undefined ? d : { denotation, ...d }));

const arbElemType = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...ALL_DTYPES) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 40 }) });

export function arbTypeInfo(depth = 2): fc.Arbitrary<TypeInfo> {
  const den = fc.option(arbNonEmptyText(), { nil: undefined });
  const withDen = <T extends object>(t: T, d: string | undefined): T => (d === undefined ? t : ({ denotation: d, ...t } as T));
  const tensorLike = fc
    .record({
      kind: fc.constantFrom('tensor' as const, 'sparse_tensor' as const),
      elemType: arbElemType,
      shape: fc.option(fc.array(arbDim, { maxLength: 4 }), { nil: undefined }),
      d: den,
    })
    .map(({ kind, elemType, shape, d }): TypeInfo => withDen(shape === undefined ? { elemType, kind } : { shape, elemType, kind }, d));
  const opaque = fc
    .record({ domain: arbText(), name: arbText(), d: den })
    .map(({ domain, name, d }): TypeInfo => withDen({ name, domain, kind: 'opaque' as const }, d));
  const none = den.map((d): TypeInfo => withDen({ kind: 'none' as const }, d));
  if (depth <= 0) return fc.oneof({ weight: 4, arbitrary: tensorLike }, opaque, none);
  const inner = fc.option(arbTypeInfo(depth - 1), { nil: undefined });
  const seqOrOpt = fc
    .record({ kind: fc.constantFrom('sequence' as const, 'optional' as const), elem: inner, d: den })
    .map(({ kind, elem, d }): TypeInfo => withDen(elem === undefined ? { kind } : { elem, kind }, d));
  const map = fc
    .record({ keyType: arbElemType, value: inner, d: den })
    .map(({ keyType, value, d }): TypeInfo => withDen(value === undefined ? { keyType, kind: 'map' as const } : { value, keyType, kind: 'map' as const }, d));
  return fc.oneof({ weight: 4, arbitrary: tensorLike }, seqOrOpt, map, opaque, none);
}

// ---------------------------------------------------------------------------------------------
// Opaque bytes: valid protobuf wire data for TrainingInfoProto / DeviceConfigurationProto /
// NodeDeviceConfigurationProto, with fields out of order, repeated, and unknown to our schema.

function varintBytes(n: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

const keyBytes = (field: number, wire: number) => varintBytes(BigInt((field << 3) | wire));
const ld = (field: number, body: Uint8Array | number[]) => [...keyBytes(field, 2), ...varintBytes(BigInt(body.length)), ...body];
const utf8 = new TextEncoder();
const entry = (k: string, v: string) => [...ld(1, utf8.encode(k)), ...ld(2, utf8.encode(v))];

/** A minimal protobuf wire writer for hand-crafted (often malformed) messages. */
export const wire = {
  varint: (n: bigint | number): number[] => varintBytes(BigInt(n)),
  key: keyBytes,
  /** A varint field. */
  int: (field: number, n: bigint | number): number[] => [...keyBytes(field, 0), ...varintBytes(BigInt(n))],
  /** A length-delimited field with its true length. */
  ld: (field: number, body: Uint8Array | number[]): number[] => ld(field, body),
  /** A length-delimited field declaring `length` but carrying `body` (a lie when they differ). */
  ldLying: (field: number, length: bigint | number, body: Uint8Array | number[]): number[] => [...keyBytes(field, 2), ...varintBytes(BigInt(length)), ...body],
  str: (field: number, s: string): number[] => ld(field, utf8.encode(s)),
  bytes: (...parts: number[][]): Uint8Array => Uint8Array.from(parts.flat()),
};

/** One protobuf field whose number our schema does not know (any wire type). */
const arbUnknownField = (known: readonly number[]) =>
  fc
    .tuple(
      fc.integer({ min: 1, max: 3000 }).filter((f) => !known.includes(f) && (f < 19000 || f > 19999)),
      fc.oneof(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => ({ wire: 0, body: varintBytes(v) })),
        fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => ({ wire: 1, body: [...b] })),
        fc.uint8Array({ maxLength: 6 }).map((b) => ({ wire: 2, body: [...varintBytes(BigInt(b.length)), ...b] })),
        fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => ({ wire: 5, body: [...b] })),
      ),
    )
    .map(([field, { wire, body }]) => [...keyBytes(field, wire), ...body]);

/** TrainingInfoProto: initialization (1) / algorithm (2) graphs, bindings (3, 4). */
export const arbTrainingInfoBytes: fc.Arbitrary<Uint8Array> = fc
  .array(
    fc.oneof(
      fc.tuple(fc.constantFrom(1, 2), arbText()).map(([f, name]) => ld(f, ld(2, utf8.encode(name)))),
      fc.tuple(fc.constantFrom(3, 4), arbText(), arbText()).map(([f, k, v]) => ld(f, entry(k, v))),
      arbUnknownField([1, 2, 3, 4]),
    ),
    { maxLength: 4 },
  )
  .map((fields) => Uint8Array.from(fields.flat()));

/** DeviceConfigurationProto: name (1), num_devices (2), device (3). */
export const arbDeviceConfigurationBytes: fc.Arbitrary<Uint8Array> = fc
  .array(
    fc.oneof(
      fc.tuple(fc.constantFrom(1, 3), arbText()).map(([f, s]) => ld(f, utf8.encode(s))),
      fc.integer({ min: -5, max: 1 << 20 }).map((n) => [...keyBytes(2, 0), ...varintBytes(BigInt(n))]),
      arbUnknownField([1, 2, 3]),
    ),
    { maxLength: 4 },
  )
  .map((fields) => Uint8Array.from(fields.flat()));

/** NodeDeviceConfigurationProto: configuration_id (1), sharding_spec (2), pipeline_stage (3). */
export const arbNodeDeviceConfigurationBytes: fc.Arbitrary<Uint8Array> = fc
  .array(
    fc.oneof(
      arbText().map((s) => ld(1, utf8.encode(s))),
      arbText().map((s) => ld(2, ld(1, utf8.encode(s)))),
      fc.integer({ min: 0, max: 1000 }).map((n) => [...keyBytes(3, 0), ...varintBytes(BigInt(n))]),
      arbUnknownField([1, 2, 3]),
    ),
    { maxLength: 4 },
  )
  .map((fields) => Uint8Array.from(fields.flat()));

// ---------------------------------------------------------------------------------------------
// Attributes and graphs (specs)

export type AttrSpec = { name: string; docString?: string } & (
  | { type: 'float'; value: number }
  | { type: 'int'; value: bigint }
  | { type: 'string'; value: Uint8Array }
  | { type: 'tensor'; value: TensorSpec }
  | { type: 'graph'; value: GraphSpec }
  | { type: 'sparse_tensor'; value: SparseSpec }
  | { type: 'type_proto'; value: TypeInfo }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: bigint[] }
  | { type: 'strings'; value: Uint8Array[] }
  | { type: 'tensors'; value: TensorSpec[] }
  | { type: 'graphs'; value: GraphSpec[] }
  | { type: 'sparse_tensors'; value: SparseSpec[] }
  | { type: 'type_protos'; value: TypeInfo[] }
  | { type: 'ref'; refAttrName: string; declaredType: number }
);

export interface ValueSpec {
  label: string;
  type: TypeInfo | undefined;
  docString: string;
  metadataProps: MetadataProps;
}

export interface NodeSpec {
  opType: string;
  domain: string;
  /** null: the node has no name */
  name: string | null;
  overload: string;
  docString: string;
  metadataProps: MetadataProps;
  deviceConfigurations: Uint8Array[];
  /** indices into the values visible at this point (mod their count); null = absent input */
  inputs: Array<number | null>;
  /** null = absent (empty-named) output */
  outputs: Array<ValueSpec | null>;
  attributes: AttrSpec[];
}

export interface GraphSpec {
  name: string;
  docString: string;
  metadataProps: MetadataProps;
  inputs: ValueSpec[];
  initializers: Array<{ tensor: TensorSpec; asInput: ValueSpec | null }>;
  sparseInitializers: SparseSpec[];
  nodes: NodeSpec[];
  /** indices into every value visible at the end (local and outer scope) */
  outputs: number[];
  /** indices into the graph's own values */
  valueInfos: number[];
  quantizationAnnotations: Array<{ tensorName: string; params: Array<[string, string]> }>;
}

export interface FunctionSpec {
  name: string;
  domain: string;
  overload: string;
  docString: string;
  metadataProps: MetadataProps;
  opsetImports: Array<{ domain: string; version: number }>;
  attributeNames: string[];
  attributeDefaults: AttrSpec[];
  inputs: string[];
  nodes: NodeSpec[];
  outputs: number[];
  valueInfos: Array<{ ref: number; value: ValueSpec }>;
}

export interface ModelSpec {
  irVersion: number;
  opsetImports: Array<{ domain: string; version: number }>;
  producerName: string;
  producerVersion: string;
  domain: string;
  modelVersion: number;
  docString: string;
  metadataProps: MetadataProps;
  trainingInfo: Uint8Array[];
  configuration: Uint8Array[];
  functions: FunctionSpec[];
  graph: GraphSpec;
}

interface Ctx {
  maxNodes: number;
  maxDim: number;
  opaque: boolean;
}

const arbValueSpec = (typed = true): fc.Arbitrary<ValueSpec> =>
  fc.record({
    label: arbText(),
    type: typed ? fc.option(arbTypeInfo(1), { nil: undefined, freq: 4 }) : fc.constant(undefined),
    docString: arbDoc,
    metadataProps: arbMetadata(1),
  });

function arbAttrSpec(ctx: Ctx, depth: number, inFunction: boolean): fc.Arbitrary<AttrSpec> {
  const name = arbText();
  const doc = fc.option(arbNonEmptyText(8), { nil: undefined, freq: 3 });
  const t = arbTensorSpec({ maxDim: ctx.maxDim });
  const sp = arbSparseSpec(ctx.maxDim);
  const kinds: Array<fc.Arbitrary<Omit<AttrSpec, 'name' | 'docString'>>> = [
    arbFloat32.map((value) => ({ type: 'float' as const, value })),
    arbInt64.map((value) => ({ type: 'int' as const, value })),
    fc.uint8Array({ maxLength: 8 }).map((value) => ({ type: 'string' as const, value })),
    t.map((value) => ({ type: 'tensor' as const, value })),
    sp.map((value) => ({ type: 'sparse_tensor' as const, value })),
    arbTypeInfo(2).map((value) => ({ type: 'type_proto' as const, value })),
    fc.array(arbFloat32, { maxLength: 4 }).map((value) => ({ type: 'floats' as const, value })),
    fc.array(arbInt64, { maxLength: 4 }).map((value) => ({ type: 'ints' as const, value })),
    fc.array(fc.uint8Array({ maxLength: 5 }), { maxLength: 3 }).map((value) => ({ type: 'strings' as const, value })),
    fc.array(t, { maxLength: 2 }).map((value) => ({ type: 'tensors' as const, value })),
    fc.array(sp, { maxLength: 2 }).map((value) => ({ type: 'sparse_tensors' as const, value })),
    fc.array(arbTypeInfo(1), { maxLength: 2 }).map((value) => ({ type: 'type_protos' as const, value })),
  ];
  if (depth > 0) {
    const g = arbGraphSpec(ctx, depth - 1, inFunction);
    kinds.push(g.map((value) => ({ type: 'graph' as const, value })));
    kinds.push(fc.array(g, { maxLength: 2 }).map((value) => ({ type: 'graphs' as const, value })));
  }
  if (inFunction) {
    kinds.push(
      fc.record({ refAttrName: arbNonEmptyText(), declaredType: fc.integer({ min: 0, max: 14 }) }).map((r) => ({ type: 'ref' as const, ...r })),
    );
  }
  return fc.tuple(name, doc, fc.oneof(...kinds)).map(([n, d, k]) => ({ name: n, ...(d === undefined ? {} : { docString: d }), ...k }) as AttrSpec);
}

function arbNodeSpec(ctx: Ctx, depth: number, inFunction: boolean): fc.Arbitrary<NodeSpec> {
  return fc.record({
    opType: fc.oneof(fc.constantFrom('Add', 'If', 'Loop', 'Scan', 'MatMul', 'Custom'), arbText()),
    domain: fc.oneof(fc.constantFrom('', 'ai.onnx', 'ai.onnx.ml', 'com.microsoft', 'local.fn'), arbText()),
    name: fc.option(arbText(), { nil: null }),
    overload: fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 1, arbitrary: arbText() }),
    docString: arbDoc,
    metadataProps: arbMetadata(1),
    deviceConfigurations: ctx.opaque ? fc.array(arbNodeDeviceConfigurationBytes, { maxLength: 1 }) : fc.constant([]),
    inputs: fc.array(fc.option(fc.nat(), { nil: null, freq: 6 }), { maxLength: 4 }),
    outputs: fc.array(fc.option(arbValueSpec(), { nil: null, freq: 6 }), { maxLength: 3 }),
    attributes: fc.array(arbAttrSpec(ctx, depth, inFunction), { maxLength: 3 }),
  });
}

function arbGraphSpec(ctx: Ctx, depth: number, inFunction: boolean): fc.Arbitrary<GraphSpec> {
  return fc.record({
    name: arbText(),
    docString: arbDoc,
    metadataProps: arbMetadata(),
    inputs: fc.array(arbValueSpec(), { maxLength: 3 }),
    initializers: fc.array(
      fc.record({ tensor: arbTensorSpec({ maxDim: ctx.maxDim }), asInput: fc.option(arbValueSpec(), { nil: null, freq: 3 }) }),
      { maxLength: 3 },
    ),
    sparseInitializers: fc.array(arbSparseSpec(ctx.maxDim), { maxLength: 1 }),
    nodes: fc.array(arbNodeSpec(ctx, depth, inFunction), { maxLength: depth > 0 ? ctx.maxNodes : Math.min(ctx.maxNodes, 2) }),
    outputs: fc.array(fc.nat(), { maxLength: 3 }),
    valueInfos: fc.array(fc.nat(), { maxLength: 3 }),
    quantizationAnnotations: fc.array(fc.record({ tensorName: arbText(), params: arbMetadata(2) }), { maxLength: 1 }),
  });
}

function arbFunctionSpec(ctx: Ctx, depth: number): fc.Arbitrary<FunctionSpec> {
  return fc.record({
    name: arbText(),
    domain: fc.oneof(fc.constant('local.fn'), arbText()),
    overload: fc.oneof(fc.constant(''), arbText()),
    docString: arbDoc,
    metadataProps: arbMetadata(),
    opsetImports: fc.array(fc.record({ domain: arbText(), version: fc.integer({ min: 0, max: 30 }) }), { maxLength: 2 }),
    attributeNames: fc.array(arbText(), { maxLength: 3 }),
    // Defaults are constants: a graph-valued default gets no outer scope.
    attributeDefaults: fc.array(arbAttrSpec(ctx, Math.min(depth, 1), false), { maxLength: 2 }),
    inputs: fc.array(arbText(), { maxLength: 3 }),
    nodes: fc.array(arbNodeSpec(ctx, depth, true), { maxLength: ctx.maxNodes }),
    outputs: fc.array(fc.nat(), { maxLength: 2 }),
    valueInfos: fc.array(fc.record({ ref: fc.nat(), value: arbValueSpec() }), { maxLength: 2 }),
  });
}

export function arbModelSpec(options: ArbIrOptions = {}): fc.Arbitrary<ModelSpec> {
  const ctx: Ctx = { maxNodes: options.maxNodes ?? 5, maxDim: options.maxDim ?? 4, opaque: options.opaqueBytes ?? true };
  const depth = options.maxDepth ?? 2;
  return fc.record({
    irVersion: fc.integer({ min: 0, max: 12 }),
    opsetImports: fc.array(
      fc.record({
        domain: fc.oneof(fc.constantFrom('', 'ai.onnx', 'ai.onnx.ml', 'com.microsoft'), arbText()),
        version: fc.oneof(fc.integer({ min: 1, max: 25 }), fc.maxSafeInteger()),
      }),
      { maxLength: 3 },
    ),
    producerName: arbText(),
    producerVersion: arbText(),
    domain: arbText(),
    modelVersion: fc.oneof(fc.constant(0), fc.maxSafeInteger()),
    docString: arbDoc,
    metadataProps: arbMetadata(3),
    trainingInfo: ctx.opaque ? fc.array(arbTrainingInfoBytes, { maxLength: 2 }) : fc.constant([]),
    configuration: ctx.opaque ? fc.array(arbDeviceConfigurationBytes, { maxLength: 2 }) : fc.constant([]),
    functions: fc.array(arbFunctionSpec(ctx, Math.min(depth, 1)), { maxLength: options.maxFunctions ?? 2 }),
    graph: arbGraphSpec(ctx, depth, false),
  });
}

// ---------------------------------------------------------------------------------------------
// Building

class Names {
  private readonly used = new Set<string>();
  private n = 0;
  /** A model-wide unique, non-empty name derived from `label`. */
  fresh(label: string): string {
    for (;;) {
      const s = `${label}~${this.n++}`;
      if (!this.used.has(s)) {
        this.used.add(s);
        return s;
      }
    }
  }
}

function applyValueSpec(v: Value, s: ValueSpec): void {
  v.type = s.type === undefined ? undefined : structuredClone(s.type);
  v.docString = s.docString;
  v.metadataProps = s.metadataProps.map(([k, x]) => [k, x]);
}

function buildAttribute(a: AttrSpec, g: Graph, outer: Value[], names: Names): Attribute {
  const base = { name: a.name, ...(a.docString !== undefined ? { docString: a.docString } : {}) };
  const sub = (spec: GraphSpec): Graph => {
    const s = new Graph(g);
    buildGraph(spec, s, outer, names);
    return s;
  };
  switch (a.type) {
    case 'float':
    case 'int':
      return { ...base, type: a.type, value: a.value } as Attribute;
    case 'string':
      return { ...base, type: 'string', value: Uint8Array.from(a.value) };
    case 'floats':
      return { ...base, type: 'floats', value: [...a.value] };
    case 'ints':
      return { ...base, type: 'ints', value: [...a.value] };
    case 'strings':
      return { ...base, type: 'strings', value: a.value.map((s) => Uint8Array.from(s)) };
    case 'tensor':
      return { ...base, type: 'tensor', value: buildTensor(a.value) };
    case 'tensors':
      return { ...base, type: 'tensors', value: a.value.map((t) => buildTensor(t)) };
    case 'sparse_tensor':
      return { ...base, type: 'sparse_tensor', value: buildSparse(a.value, a.value.values.name) };
    case 'sparse_tensors':
      return { ...base, type: 'sparse_tensors', value: a.value.map((s) => buildSparse(s, s.values.name)) };
    case 'type_proto':
      return { ...base, type: 'type_proto', value: structuredClone(a.value) };
    case 'type_protos':
      return { ...base, type: 'type_protos', value: a.value.map((t) => structuredClone(t)) };
    case 'graph':
      return { ...base, type: 'graph', value: sub(a.value) };
    case 'graphs':
      return { ...base, type: 'graphs', value: a.value.map(sub) };
    case 'ref':
      return { ...base, type: 'ref', refAttrName: a.refAttrName, declaredType: a.declaredType };
  }
}

/** Builds nodes into `g`; `visible` holds every value they may use and grows with their outputs. */
function buildNodes(nodes: NodeSpec[], g: Graph, visible: Value[], names: Names): void {
  for (const ns of nodes) {
    const inputs = ns.inputs.map((r) => (r === null || visible.length === 0 ? null : visible[r % visible.length]!));
    const attributes = ns.attributes.map((a) => buildAttribute(a, g, [...visible], names));
    const node = g.addNode(
      ns.opType,
      inputs,
      ns.outputs.map((o) => (o === null ? '' : names.fresh(o.label))),
      { domain: ns.domain, name: ns.name === null ? '' : names.fresh(ns.name), attributes },
    );
    node.overload = ns.overload;
    node.docString = ns.docString;
    node.metadataProps = ns.metadataProps.map(([k, v]) => [k, v]);
    node.deviceConfigurations = ns.deviceConfigurations.map((b) => Uint8Array.from(b));
    node.outputs.forEach((v, i) => {
      if (!v) return;
      applyValueSpec(v, ns.outputs[i]!);
      visible.push(v);
    });
  }
}

function buildGraph(spec: GraphSpec, g: Graph, outer: Value[], names: Names): void {
  g.name = spec.name;
  g.docString = spec.docString;
  g.metadataProps = spec.metadataProps.map(([k, v]) => [k, v]);
  const local: Value[] = [];
  for (const vs of spec.inputs) {
    const v = g.createValue(names.fresh(vs.label));
    applyValueSpec(v, vs);
    g.inputs.push(v);
    local.push(v);
  }
  for (const init of spec.initializers) {
    const name = names.fresh(init.tensor.name);
    const v = g.createValue(name);
    v.initializer = buildTensor(init.tensor, name);
    if (init.asInput) {
      applyValueSpec(v, init.asInput);
      g.inputs.push(v);
    }
    g.initializers.push(v);
    local.push(v);
  }
  for (const sp of spec.sparseInitializers) {
    const name = names.fresh(sp.label);
    const v = g.createValue(name);
    v.sparseInitializer = buildSparse(sp, name);
    g.sparseInitializers.push(v);
    local.push(v);
  }
  const visible = [...outer, ...local];
  buildNodes(spec.nodes, g, visible, names);
  const own = visible.slice(outer.length);
  g.outputs = visible.length ? spec.outputs.map((r) => visible[r % visible.length]!) : [];
  g.valueInfos = own.length ? spec.valueInfos.map((r) => own[r % own.length]!) : [];
  g.quantizationAnnotations = spec.quantizationAnnotations.map((q) => ({ tensorName: q.tensorName, params: q.params.map(([k, v]) => [k, v]) }));
}

function buildFunction(spec: FunctionSpec, names: Names): IrFunction {
  const fn = new IrFunction();
  fn.name = spec.name;
  fn.domain = spec.domain;
  fn.overload = spec.overload;
  fn.docString = spec.docString;
  fn.metadataProps = spec.metadataProps.map(([k, v]) => [k, v]);
  fn.opsetImports = spec.opsetImports.map((o) => ({ ...o }));
  fn.attributeNames = [...spec.attributeNames];
  const body = fn.body;
  body.name = fn.name; // FunctionProto has no graph name: the body is named after the function
  fn.attributeDefaults = spec.attributeDefaults.map((a) => buildAttribute(a, body, [], names));
  const visible: Value[] = [];
  for (const label of spec.inputs) {
    const v = body.createValue(names.fresh(label));
    body.inputs.push(v);
    visible.push(v);
  }
  buildNodes(spec.nodes, body, visible, names);
  body.outputs = visible.length ? spec.outputs.map((r) => visible[r % visible.length]!) : [];
  body.valueInfos = visible.length
    ? spec.valueInfos.map(({ ref, value }) => {
        const v = visible[ref % visible.length]!;
        applyValueSpec(v, value);
        return v;
      })
    : [];
  return fn;
}

/** Every graph of a model: the main graph, function bodies, and all graphs nested in attributes. */
export function allGraphs(model: Model): Array<{ graph: Graph; isFunctionBody: boolean }> {
  const out: Array<{ graph: Graph; isFunctionBody: boolean }> = [];
  const visitAttrs = (attrs: Attribute[]) => {
    for (const a of attrs) {
      if (a.type === 'graph') visit(a.value, false);
      if (a.type === 'graphs') a.value.forEach((g) => visit(g, false));
    }
  };
  const visit = (g: Graph, isFunctionBody: boolean) => {
    out.push({ graph: g, isFunctionBody });
    for (const n of g.nodes) visitAttrs(n.attributes);
  };
  visit(model.graph, false);
  for (const fn of model.functions) {
    visit(fn.body, true);
    visitAttrs(fn.attributeDefaults);
  }
  return out;
}

/**
 * Types, doc strings and metadata of a value live in ValueInfoProtos; a value that no graph
 * lists (as input, output or value_info) cannot carry them, so they are cleared.
 */
function dropUnlistedValueInfo(model: Model): void {
  const graphs = allGraphs(model);
  const listed = new Set<Value>();
  for (const { graph, isFunctionBody } of graphs) {
    if (!isFunctionBody) {
      graph.inputs.forEach((v) => listed.add(v));
      graph.outputs.forEach((v) => listed.add(v));
    }
    graph.valueInfos.forEach((v) => listed.add(v));
  }
  for (const { graph } of graphs) {
    for (const v of graph.allValues()) {
      if (listed.has(v)) continue;
      v.type = undefined;
      v.docString = '';
      v.metadataProps = [];
    }
  }
}

export function buildModel(spec: ModelSpec): Model {
  const names = new Names();
  const m = new Model();
  m.irVersion = spec.irVersion;
  m.opsetImports = spec.opsetImports.map((o) => ({ ...o }));
  m.producerName = spec.producerName;
  m.producerVersion = spec.producerVersion;
  m.domain = spec.domain;
  m.modelVersion = spec.modelVersion;
  m.docString = spec.docString;
  m.metadataProps = spec.metadataProps.map(([k, v]) => [k, v]);
  m.trainingInfo = spec.trainingInfo.map((b) => Uint8Array.from(b));
  m.configuration = spec.configuration.map((b) => Uint8Array.from(b));
  m.functions = spec.functions.map((f) => buildFunction(f, names));
  buildGraph(spec.graph, m.graph, [], names);
  dropUnlistedValueInfo(m);
  return m;
}

/** Random IR models; each generated value is a freshly built Model. */
export const arbModel = (options: ArbIrOptions = {}): fc.Arbitrary<Model> => arbModelSpec(options).map(buildModel);

/** A random attribute (for pass tests that need one); graph kinds get a fresh top-level parent. */
export const arbAttribute = (options: { maxDim?: number } = {}): fc.Arbitrary<Attribute> =>
  arbAttrSpec({ maxNodes: 3, maxDim: options.maxDim ?? 4, opaque: false }, 1, false).map((a) => buildAttribute(a, new Graph(), [], new Names()));
