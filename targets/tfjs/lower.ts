/**
 * Lowering an ONNX graph (after cleanup, with static shapes) to a TensorFlow GraphDef that
 * tfjs-converter executes. Each ONNX node is lowered by its rule in the op table (ops.ts); this
 * file holds what the rules share:
 *
 *  - Values: an ONNX value maps to a TF tensor reference in its ONNX layout ("plain") and/or, for
 *    4-D values, in NHWC layout. Conv, pooling, BatchNormalization and global pooling work in NHWC
 *    (TF.js's convolution layout); elementwise ops and Concat keep NHWC when their image-shaped
 *    inputs already are; any other reader asks for the plain form. A value is converted at most
 *    once in each direction (cached), so a CNN gets one Transpose where its input enters the
 *    NHWC region and one where a value leaves it, not one around every op.
 *  - Types: int64 becomes int32 (TF.js has no int64; constants are checked to fit), float32 and
 *    bool stay; graph inputs and outputs keep their ONNX names as the signature's keys.
 *  - Constants: ONNX initializers become Const nodes whose data the weights writer reads lazily
 *    (converted, or permuted for NHWC / HWIO filters, only then); small integer constants the
 *    lowering makes (axes, shapes) are shared by value.
 */
import { PeftcError } from '../../src/errors.js';
import { DataType, dtypeName } from '../../src/ir/dtype.js';
import type { Node, Value } from '../../src/ir/graph.js';
import type { Model } from '../../src/ir/model.js';
import { shapeOf } from '../../src/ir/types.js';
import { topologicalOrder } from '../../passes/shape-inference.js';
import { attr, TfGraphBuilder, type TfAttr, type TfDtype } from './graphdef.js';

/** NCHW -> NHWC and back. */
export const TO_NHWC = [0, 2, 3, 1] as const;
export const TO_NCHW = [0, 3, 1, 2] as const;

/** The TF.js element type an ONNX element type lowers to, or undefined (not representable). */
export function tfDtypeOf(onnxType: number): TfDtype | undefined {
  switch (onnxType) {
    case DataType.FLOAT:
      return 'float32';
    case DataType.INT64:
    case DataType.INT32:
      return 'int32';
    case DataType.BOOL:
      return 'bool';
    default:
      return undefined;
  }
}

export const elemTypeOf = (v: Value): number | undefined => (v.type?.kind === 'tensor' ? v.type.elemType : v.initializer?.dtype);

/** The static shape of a value (numbers only), or undefined when any dimension is unknown or symbolic. */
export function staticShape(v: Value): number[] | undefined {
  if (v.initializer) return [...v.initializer.dims];
  const s = shapeOf(v.type);
  if (!s || s.some((d) => typeof d !== 'number')) return undefined;
  return s as number[];
}

export class LoweringError extends PeftcError {}

/** An N-d transpose of a typed array (row-major). */
export function transposeArray<T extends Float32Array | Int32Array | Uint8Array>(data: T, dims: readonly number[], perm: readonly number[]): T {
  const rank = dims.length;
  const out = new (data.constructor as new (n: number) => T)(data.length);
  const outDims = perm.map((p) => dims[p]!);
  const inStrides = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) inStrides[i] = inStrides[i + 1]! * dims[i + 1]!;
  const strideOf = perm.map((p) => inStrides[p]!);
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = data[src]!;
    for (let a = rank - 1; a >= 0; a--) {
      idx[a]!++;
      src += strideOf[a]!;
      if (idx[a]! < outDims[a]!) break;
      src -= strideOf[a]! * outDims[a]!;
      idx[a] = 0;
    }
  }
  return out;
}

/** Whether transposing `dims` by `perm` keeps the element order (only size-1 axes move): a Reshape does it. */
export function transposeIsReshape(dims: readonly number[], perm: readonly number[]): boolean {
  let last = -1;
  for (const p of perm) {
    if (dims[p] === 1) continue;
    if (p < last) return false;
    last = p;
  }
  return true;
}

export interface LoweredIo {
  /** The ONNX name (the signature key). */
  name: string;
  /** The TF node that holds it (Placeholder for inputs, Identity for outputs). */
  node: string;
  dtype: TfDtype;
  /** The ONNX element type (number), so runners hand back what the ONNX model would. */
  onnxType: number;
  shape: number[];
}

export interface LoweredGraph {
  graph: TfGraphBuilder;
  inputs: LoweredIo[];
  outputs: LoweredIo[];
  /** Layout conversions inserted between NCHW and NHWC (Transpose or, when equivalent, Reshape). */
  layoutConversions: number;
  /** ONNX nodes lowered, by op. */
  onnxOps: Record<string, number>;
}

type Layout = 'plain' | 'nhwc';

/** What rules see: the model, typed/shaped values, constants, layouts, and node emission. */
export class Lowering {
  readonly g = new TfGraphBuilder();
  private readonly refs = { plain: new Map<Value, string>(), nhwc: new Map<Value, string>() };
  private readonly sharedConsts = new Map<string, string>();
  layoutConversions = 0;
  /** The ONNX node being lowered (names helper nodes and errors). */
  current: Node | undefined;

  constructor(readonly model: Model) {}

  get opset(): number {
    return this.model.opsetVersion('') ?? 1;
  }

  fail(message: string): never {
    const n = this.current;
    throw new LoweringError(n ? `node '${n.name}' (${n.opType}): ${message}` : message);
  }

  // ---- types and shapes -----------------------------------------------------------------------

  shape(v: Value): number[] {
    const s = staticShape(v);
    if (!s) this.fail(`'${v.name}' has no static shape`);
    return s;
  }

  rank(v: Value): number {
    return this.shape(v).length;
  }

  onnxType(v: Value): number {
    const t = elemTypeOf(v);
    if (t === undefined) this.fail(`'${v.name}' has no known element type`);
    return t;
  }

  dtype(v: Value): TfDtype {
    const t = this.onnxType(v);
    const d = tfDtypeOf(t);
    if (!d) this.fail(`'${v.name}' is ${dtypeName(t)}, which TF.js graph models cannot hold`);
    return d;
  }

  // ---- constants ------------------------------------------------------------------------------

  isConst(v: Value | null | undefined): v is Value {
    return !!v && v.isConstant;
  }

  /** A constant's values as numbers (int64 through Number; exact below 2^53). */
  constValues(v: Value): number[] {
    if (!v.isConstant) this.fail(`'${v.name}' must be a constant`);
    const t = v.initializer!;
    const a = t.toTypedArray();
    const out = new Array<number>(a.length);
    for (let i = 0; i < a.length; i++) out[i] = Number(a[i]);
    if (t.dtype === DataType.FLOAT16 || t.dtype === DataType.BFLOAT16) this.fail(`'${v.name}' is ${dtypeName(t.dtype)}; expected float32 or an integer type`);
    return out;
  }

  /** A constant's data converted to what TF.js holds. */
  private constData(v: Value): () => Float32Array | Int32Array | Uint8Array {
    const t = v.initializer!;
    const dtype = this.dtype(v);
    const node = this.current;
    return () => {
      const a = t.toTypedArray();
      if (dtype === 'float32') return a as Float32Array;
      if (dtype === 'bool') return a as Uint8Array;
      if (a instanceof Int32Array) return a;
      const out = new Int32Array(a.length);
      for (let i = 0; i < a.length; i++) {
        const x = a[i] as bigint;
        if (x > 2147483647n || x < -2147483648n) {
          throw new LoweringError(`constant '${v.name}'${node ? ` (read by node '${node.name}')` : ''} holds ${x}, outside int32: TF.js has no int64`);
        }
        out[i] = Number(x);
      }
      return out;
    };
  }

  /** Const node for a small integer tensor made by the lowering (shared by value). */
  int32Const(values: readonly number[], shape: readonly number[] = [values.length], hint = 'const'): string {
    for (const x of values) if (!Number.isInteger(x) || x > 2147483647 || x < -2147483648) this.fail(`internal: ${x} is not an int32`);
    const key = `i:${shape.join('x')}:${values.join(',')}`;
    let ref = this.sharedConsts.get(key);
    if (!ref) {
      const data = Int32Array.from(values);
      ref = this.g.constant(`const/${hint}`, 'int32', shape, () => data, 'made by the lowering');
      this.sharedConsts.set(key, ref);
    }
    return ref;
  }

  floatConst(values: Float32Array | readonly number[], shape: readonly number[], hint: string, share = true): string {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    const key = share && data.length <= 16 ? `f:${shape.join('x')}:${Array.from(data, (x) => (Object.is(x, -0) ? '-0' : String(x))).join(',')}` : undefined;
    if (key && this.sharedConsts.has(key)) return this.sharedConsts.get(key)!;
    const ref = this.g.constant(key ? `const/${hint}` : hint, 'float32', shape, () => data, 'made by the lowering');
    if (key) this.sharedConsts.set(key, ref);
    return ref;
  }

  boolConst(values: readonly boolean[], shape: readonly number[]): string {
    const data = Uint8Array.from(values, (b) => (b ? 1 : 0));
    return this.g.constant('const/bool', 'bool', shape, () => data, 'made by the lowering');
  }

  /** Const node holding computed data for `v` (e.g. a weight permuted to HWIO), named after it. */
  derivedConst(v: Value, suffix: string, dtype: TfDtype, shape: readonly number[], data: () => Float32Array | Int32Array | Uint8Array): string {
    return this.g.constant(`${v.name}/${suffix}`, dtype, shape, data, `${v.name} (${suffix})`);
  }

  // ---- values and layouts ---------------------------------------------------------------------

  /** Whether `v` is available in NHWC layout without a conversion. */
  hasNhwc(v: Value | null | undefined): boolean {
    return !!v && this.refs.nhwc.has(v);
  }

  /** Whether `v` exists only in NHWC layout (reading it plain costs a conversion). */
  onlyNhwc(v: Value | null | undefined): boolean {
    return !!v && this.refs.nhwc.has(v) && !this.refs.plain.has(v);
  }

  /** The TF reference of `v` in its ONNX layout. */
  input(v: Value): string {
    const known = this.refs.plain.get(v);
    if (known) return known;
    // Initializer-backed graph inputs too: a TF.js artifact has no way to override them.
    if (v.initializer) {
      const ref = this.g.constant(v.name, this.dtype(v), this.shape(v), this.constData(v), v.name);
      this.refs.plain.set(v, ref);
      return ref;
    }
    const nhwc = this.refs.nhwc.get(v);
    if (!nhwc) this.fail(`'${v.name}' is read before it is defined`);
    const shape = this.shape(v);
    const nhwcShape = TO_NHWC.map((p) => shape[p]!);
    const ref = transposeIsReshape(nhwcShape, TO_NCHW)
      ? this.g.add('Reshape', [nhwc, this.int32Const(shape)], { T: attr.dtype(this.dtype(v)), Tshape: attr.dtype('int32') }, `${v.name}/to_nchw`)
      : this.g.add('Transpose', [nhwc, this.int32Const(TO_NCHW)], { T: attr.dtype(this.dtype(v)), Tperm: attr.dtype('int32') }, `${v.name}/to_nchw`);
    this.layoutConversions++;
    this.refs.plain.set(v, ref);
    return ref;
  }

  /**
   * The TF reference of `v` in NHWC layout, for an op whose output is image-shaped (rank 4).
   * Values of lower rank broadcast against it as ONNX says (aligned to the trailing NCHW axes):
   * constants are padded to rank 4 and permuted at compile time; others are refused here (the
   * elementwise rule keeps such ops in plain layout).
   */
  inputNhwc(v: Value): string {
    const known = this.refs.nhwc.get(v);
    if (known) return known;
    const shape = this.shape(v);
    if (v.initializer) {
      if (shape.length > 4) this.fail(`'${v.name}' (rank ${shape.length}) cannot broadcast against an NHWC value`);
      const full = [...new Array<number>(4 - shape.length).fill(1), ...shape];
      const nhwcShape = TO_NHWC.map((p) => full[p]!);
      const read = this.constData(v);
      const ref = transposeIsReshape(full, TO_NHWC)
        ? this.derivedConst(v, 'nhwc', this.dtype(v), nhwcShape, read)
        : this.derivedConst(v, 'nhwc', this.dtype(v), nhwcShape, () => transposeArray(read(), full, TO_NHWC));
      this.refs.nhwc.set(v, ref);
      return ref;
    }
    if (shape.length !== 4) this.fail(`internal: '${v.name}' (rank ${shape.length}) asked for in NHWC layout`);
    const plain = this.input(v);
    const ref = transposeIsReshape(shape, TO_NHWC)
      ? this.g.add('Reshape', [plain, this.int32Const(TO_NHWC.map((p) => shape[p]!))], { T: attr.dtype(this.dtype(v)), Tshape: attr.dtype('int32') }, `${v.name}/to_nhwc`)
      : this.g.add('Transpose', [plain, this.int32Const(TO_NHWC)], { T: attr.dtype(this.dtype(v)), Tperm: attr.dtype('int32') }, `${v.name}/to_nhwc`);
    this.layoutConversions++;
    this.refs.nhwc.set(v, ref);
    return ref;
  }

  /** Binds an ONNX output to a TF reference in the given layout. */
  define(v: Value | null | undefined, ref: string, layout: Layout = 'plain'): void {
    if (!v) return;
    this.refs[layout].set(v, ref);
  }

  /** Makes `out` the same tensor as `inp` in every layout it has (Identity, no-op casts, Dropout). */
  alias(out: Value | null | undefined, inp: Value): void {
    if (!out) return;
    const plain = this.refs.plain.get(inp);
    const nhwc = this.refs.nhwc.get(inp);
    if (!plain && !nhwc) this.define(out, this.input(inp));
    if (plain) this.refs.plain.set(out, plain);
    if (nhwc) this.refs.nhwc.set(out, nhwc);
  }

  /** Emits a TF node named after the current ONNX node (`suffix` for helper nodes). */
  emit(op: string, inputs: readonly string[], attrs: Record<string, TfAttr> = {}, suffix?: string): string {
    const base = this.current ? this.current.name || this.current.outputs[0]?.name || this.current.opType : op;
    return this.g.add(op, inputs, attrs, suffix ? `${base}/${suffix}` : base);
  }

  /** A Reshape of `ref` to a static shape. */
  reshape(ref: string, dtype: TfDtype, shape: readonly number[], suffix = 'reshape'): string {
    return this.emit('Reshape', [ref, this.int32Const(shape)], { T: attr.dtype(dtype), Tshape: attr.dtype('int32') }, suffix);
  }

  /** A Transpose of `ref` (a Reshape when only size-1 axes move). */
  transpose(ref: string, dtype: TfDtype, dims: readonly number[], perm: readonly number[], suffix = 'transpose'): string {
    if (perm.every((p, i) => p === i)) return ref;
    if (transposeIsReshape(dims, perm)) return this.reshape(ref, dtype, perm.map((p) => dims[p]!), suffix);
    return this.emit('Transpose', [ref, this.int32Const(perm)], { T: attr.dtype(dtype), Tperm: attr.dtype('int32') }, suffix);
  }
}

/** What each ONNX op lowers to; see ops.ts. */
export interface OpRule {
  /** The TF ops it becomes, in words (for the README table and reports). */
  readonly tf: string;
  /** Why this node cannot be lowered, or undefined. Runs in the legality check, before any lowering. */
  check?(node: Node, model: Model): string | undefined;
  lower(node: Node, ctx: Lowering): void;
}

/** Lowers `model` with `rules`. The legality check must have passed (rules assume what it checks). */
export function lowerModel(model: Model, rules: Readonly<Record<string, OpRule>>): LoweredGraph {
  const ctx = new Lowering(model);
  const g = model.graph;
  const inputs: LoweredIo[] = [];
  const outputs: LoweredIo[] = [];
  // Names for the signature's tensors first, so they read as the ONNX names.
  for (const v of g.inputs) {
    if (v.initializer) continue;
    const dtype = ctx.dtype(v);
    const shape = ctx.shape(v);
    const node = ctx.g.placeholder(v.name, dtype, shape);
    ctx.define(v, node);
    inputs.push({ name: v.name, node, dtype, onnxType: ctx.onnxType(v), shape });
  }
  const outputNames = g.outputs.map((v) => ctx.g.uniqueName(v.name));
  const onnxOps: Record<string, number> = {};
  for (const node of topologicalOrder(g)) {
    const rule = rules[node.opType];
    if (!rule || (node.domain !== '' && node.domain !== 'ai.onnx')) throw new LoweringError(`node '${node.name}' (${node.qualifiedOp}): no TF.js lowering`);
    ctx.current = node;
    rule.lower(node, ctx);
    ctx.current = undefined;
    onnxOps[node.opType] = (onnxOps[node.opType] ?? 0) + 1;
  }
  g.outputs.forEach((v, i) => {
    const dtype = ctx.dtype(v);
    const node = ctx.g.add('Identity', [ctx.input(v)], { T: attr.dtype(dtype) }, outputNames[i]!, true);
    outputs.push({ name: v.name, node, dtype, onnxType: ctx.onnxType(v), shape: ctx.shape(v) });
  });
  return { graph: ctx.g, inputs, outputs, layoutConversions: ctx.layoutConversions, onnxOps };
}

