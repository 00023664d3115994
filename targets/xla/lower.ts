/**
 * Lowers an ONNX graph (after peftc's cleanup, with static input shapes) to one StableHLO
 * function, `@main(inputs..., weights...) -> outputs...`, node by node through the table in
 * lowerings.ts. This file owns what the table entries share:
 *
 *  - values: each ONNX value becomes an SSA value of a static tensor type; a node's results are
 *    checked against the model's own type information where it has a static one;
 *  - constants: initializers up to `inlineMaxBytes` become dense literals; larger ones become
 *    arguments of @main after the model inputs, written to weights.safetensors by the caller
 *    (their bytes are not read here: only dims and dtypes);
 *  - precision: with --quant bf16|fp16, matmul/convolution operands are rounded to the low type
 *    (weights stored in it) and accumulate into float32; everything else computes in float32;
 *  - refusals: a node with no lowering, or whose lowering needs something the graph does not give
 *    (a shape computed at run time, an unsupported attribute), is reported by name with the
 *    reason; the nodes it feeds are not reported again.
 */
import { PeftcError } from '../../src/errors.js';
import { bytesText } from '../../src/ir/attribute.js';
import { DataType, dtypeName } from '../../src/ir/dtype.js';
import type { Node, Value } from '../../src/ir/graph.js';
import type { Model } from '../../src/ir/model.js';
import type { Tensor } from '../../src/ir/tensor.js';
import { shapeOf } from '../../src/ir/types.js';
import type { Fallback, QuantModeName } from '../target.js';
import { count, elemOfOnnx, EmitError, FunctionBuilder, typeText, type Elem, type HloType, type Precision, type Ssa } from './emitter.js';
import { LOWERINGS, Refusal, tensorNumbers } from './lowerings.js';

export const DEFAULT_INLINE_MAX_BYTES = 256;

export interface XlaLoweringOptions {
  quant: QuantModeName;
  /** Initializers of at most this many bytes become dense literals in the module; larger ones arguments. */
  inlineMaxBytes?: number;
}

/** How a weight argument's bytes are written to weights.safetensors. */
export interface WeightArgument {
  kind: 'weight';
  name: string;
  ssa: Ssa;
  tensor: Tensor;
  /** safetensors dtype of the stored bytes. */
  storage: string;
  /** float32 source rounded to this type while writing (bf16/f16 weights). */
  convert?: 'bf16' | 'f16';
  /** Sub-byte elements, packed two per byte, low nibble first (as ONNX stores int4/uint4). */
  packing?: 'int4-low-nibble-first';
  bytes: number;
}

export interface InputArgument {
  kind: 'input';
  name: string;
  ssa: Ssa;
  dtype: DataType;
}

export interface LoweredModule {
  /** The module's text. */
  text: string;
  arguments: Array<InputArgument | WeightArgument>;
  outputs: Array<{ name: string; ssa: Ssa; dtype: DataType }>;
  fallbacks: Fallback[];
  nodes: number;
  ops: number;
  histogram: Record<string, number>;
}

const STORAGE: Partial<Record<DataType, string>> = {
  [DataType.FLOAT]: 'F32',
  [DataType.DOUBLE]: 'F64',
  [DataType.FLOAT16]: 'F16',
  [DataType.BFLOAT16]: 'BF16',
  [DataType.INT64]: 'I64',
  [DataType.INT32]: 'I32',
  [DataType.INT16]: 'I16',
  [DataType.INT8]: 'I8',
  [DataType.UINT8]: 'U8',
  [DataType.UINT16]: 'U16',
  [DataType.UINT32]: 'U32',
  [DataType.UINT64]: 'U64',
  [DataType.BOOL]: 'BOOL',
  [DataType.INT4]: 'U8',
  [DataType.UINT4]: 'U8',
};

/** Ops whose input `i` is a matmul-like weight (kept in the low type under --quant bf16|fp16). */
const LOW_PRECISION_WEIGHTS: Record<string, number[]> = { MatMul: [0, 1], Gemm: [0, 1], Conv: [1], Gather: [0] };

/**
 * Graph inputs with a dimension that is not a fixed number: XLA compiles for static shapes.
 * Refused naming each input and the --shape flag that fixes it.
 */
export function checkStaticInputs(model: Model): void {
  const bad: string[] = [];
  for (const v of model.graph.inputs) {
    if (v.initializer) continue;
    const shape = shapeOf(v.type);
    if (!shape) {
      bad.push(`input '${v.name}' has no known shape: give --shape ${v.name}=D1xD2...`);
      continue;
    }
    const free = shape.filter((d) => typeof d !== 'number');
    if (free.length) {
      const example = shape.map((d) => (typeof d === 'number' ? String(d) : `<${d ?? '?'}>`)).join('x');
      bad.push(`input '${v.name}' has symbolic dimension(s) ${free.map((d) => `'${d ?? '?'}'`).join(', ')} ([${shape.map((d) => d ?? '?').join(', ')}]): give --shape ${v.name}=${example}`);
    }
  }
  if (bad.length) throw new PeftcError(`--target xla compiles static shapes only:\n  ${bad.join('\n  ')}`);
}

/** The low type matmul operands take under a quant mode, if any. */
export function lowTypeOf(quant: QuantModeName): 'bf16' | 'f16' | undefined {
  return quant === 'bf16' ? 'bf16' : quant === 'fp16' ? 'f16' : undefined;
}

export class GraphLowering {
  readonly b = new FunctionBuilder();
  readonly lowType: 'bf16' | 'f16' | undefined;
  readonly inlineMaxBytes: number;
  readonly args: Array<InputArgument | WeightArgument> = [];
  private readonly values = new Map<Value, Ssa>();
  private readonly failed = new Set<Value>();
  private readonly constants = new Map<string, Ssa>();
  private readonly lowWeights = new Set<Value>();

  constructor(
    readonly model: Model,
    readonly options: XlaLoweringOptions,
  ) {
    this.lowType = lowTypeOf(options.quant);
    this.inlineMaxBytes = options.inlineMaxBytes ?? DEFAULT_INLINE_MAX_BYTES;
    if (this.lowType) {
      for (const n of model.graph.nodes) {
        for (const i of LOW_PRECISION_WEIGHTS[n.qualifiedOp] ?? []) {
          const v = n.inputs[i];
          if (v?.initializer && v.initializer.dtype === DataType.FLOAT && v.initializer.byteLength > this.inlineMaxBytes) this.lowWeights.add(v);
        }
      }
    }
  }

  isLowWeight(v: Value): boolean {
    return this.lowWeights.has(v);
  }

  /** Matmul/convolution precision: f32 stays f32 on every backend (HIGHEST); low-precision forms use DEFAULT. */
  get precision(): Precision {
    return this.lowType ? 'DEFAULT' : 'HIGHEST';
  }

  lower(): LoweredModule {
    const g = this.model.graph;
    for (const v of g.inputs) {
      if (v.initializer) continue;
      const shape = shapeOf(v.type);
      const elemType = v.type?.kind === 'tensor' ? v.type.elemType : undefined;
      const elem = elemType !== undefined ? elemOfOnnx(elemType) : undefined;
      if (!shape || shape.some((d) => typeof d !== 'number')) checkStaticInputs(this.model);
      if (!elem) throw new PeftcError(`input '${v.name}' is ${elemType !== undefined ? dtypeName(elemType) : 'not a tensor'}, which --target xla does not take`);
      const ssa = this.b.addArg({ shape: shape as number[], elem });
      this.args.push({ kind: 'input', name: v.name, ssa, dtype: elemType as DataType });
      this.values.set(v, ssa);
    }
    const fallbacks: Fallback[] = [];
    for (const node of g.nodes) {
      if (node.inputs.some((v) => v && this.failed.has(v))) {
        for (const o of node.outputs) if (o) this.failed.add(o);
        continue;
      }
      const rule = LOWERINGS[node.qualifiedOp];
      try {
        if (!rule) throw new Refusal(`no StableHLO lowering for ${node.qualifiedOp} (the table is targets/xla/lowerings.ts)`);
        const cx = new NodeContext(this, node);
        const outs = rule.lower(cx);
        node.outputs.forEach((o, i) => {
          if (!o) return;
          const s = outs[i];
          if (!s) {
            if (o.uses.length || o.isGraphOutput) throw new Refusal(`output ${i} ('${o.name}') is not supported by the lowering`);
            return;
          }
          this.bind(o, s);
        });
      } catch (err) {
        if (!(err instanceof Refusal) && !(err instanceof EmitError)) throw err;
        fallbacks.push({ node: node.name, op: node.opType, domain: node.domain, reason: err.message });
        for (const o of node.outputs) if (o) this.failed.add(o);
      }
    }
    const outputs: LoweredModule['outputs'] = [];
    for (const v of g.outputs) {
      if (this.failed.has(v)) continue;
      const ssa = this.valueOf(v, 'compute');
      const dtype = v.type?.kind === 'tensor' ? v.type.elemType : undefined;
      if (dtype !== undefined && elemOfOnnx(dtype) !== ssa.type.elem) throw new PeftcError(`output '${v.name}': the lowering computes ${ssa.type.elem}, the model declares ${dtypeName(dtype)} (internal: a lowering changed the type)`);
      outputs.push({ name: v.name, ssa, dtype: (dtype ?? DataType.FLOAT) as DataType });
    }
    const histogram: Record<string, number> = {};
    for (const [k, v] of [...this.b.histogram].sort((a, b) => b[1] - a[1])) histogram[k] = v;
    return { text: this.b.text('main', outputs.map((o) => o.ssa)), arguments: this.args, outputs, fallbacks, nodes: g.nodes.length, ops: this.b.opCount, histogram };
  }

  /** Records a node result, checking it against the model's static type for the value if it has one. */
  private bind(v: Value, s: Ssa): void {
    if (v.type?.kind === 'tensor') {
      const e = elemOfOnnx(v.type.elemType);
      if (e !== undefined && e !== s.type.elem) throw new EmitError(`internal: '${v.name}' lowered to ${typeText(s.type)}, the model says ${dtypeName(v.type.elemType)}`);
      const shape = shapeOf(v.type);
      if (shape && shape.every((d) => typeof d === 'number') && (shape.length !== s.type.shape.length || shape.some((d, i) => d !== s.type.shape[i]))) {
        throw new EmitError(`internal: '${v.name}' lowered to ${typeText(s.type)}, the model's shape is [${shape.join(', ')}]`);
      }
    }
    this.values.set(v, s);
  }

  /**
   * The constant tensor behind a value (an initializer or a Constant node's value), if any. A graph
   * input with an initializer (an overridable default) is compiled as that constant: XLA's
   * signature takes the model's required inputs only.
   */
  constantTensor(v: Value): Tensor | undefined {
    if (v.initializer) return v.initializer;
    const p = v.producer;
    if (p?.opType === 'Constant' && (p.domain === '' || p.domain === 'ai.onnx')) {
      const a = p.attribute('value');
      if (a?.type === 'tensor') return a.value;
    }
    return undefined;
  }

  /**
   * A value as an SSA value. `mode`: 'compute' gives float32 for weights stored in a low type;
   * 'stored' gives a weight as it is stored (low type, or its own); 'matmul' gives the matmul
   * operand type (the low type under bf16/fp16).
   */
  valueOf(v: Value, mode: 'compute' | 'stored' | 'matmul'): Ssa {
    if (v.initializer) return this.initializerValue(v, mode);
    const s = this.values.get(v);
    if (!s) throw new Refusal(`value '${v.name}' has no producer before this node (graph not in topological order, or an outer-scope value)`);
    if (mode === 'matmul' && this.lowType && s.type.elem === 'f32') return this.b.convert(s, this.lowType);
    return s;
  }

  private initializerValue(v: Value, mode: 'compute' | 'stored' | 'matmul'): Ssa {
    const t = v.initializer!;
    const low = this.lowWeights.has(v);
    const key = `${v.name}\u0000${low ? mode : 'any'}`;
    const hit = this.constants.get(key);
    if (hit) return hit;
    let s: Ssa;
    if (low) {
      const stored = this.constants.get(`${v.name}\u0000stored`) ?? this.weightArgument(t, { shape: t.dims, elem: this.lowType! }, this.lowType!);
      this.constants.set(`${v.name}\u0000stored`, stored);
      this.constants.set(`${v.name}\u0000matmul`, stored);
      s = mode === 'compute' ? this.b.convert(stored, 'f32') : stored;
    } else {
      s = this.tensorValue(t);
      if (mode === 'matmul' && this.lowType && s.type.elem === 'f32') s = this.b.convert(s, this.lowType);
    }
    this.constants.set(key, s);
    return s;
  }

  /**
   * A constant tensor as a dense literal (small) or a weight argument (large). `view` reads the
   * bytes as another type of the same byte size (MatMulNBits' uint8 blocks as ui4); `name` names
   * the weight (a Constant node's tensor may have none of its own).
   */
  tensorValue(t: Tensor, view?: HloType, name = t.name): Ssa {
    const elem = elemOfOnnx(t.dtype);
    if (!elem) throw new Refusal(`constant '${name}' is ${dtypeName(t.dtype)}, which StableHLO (as peftc emits it) has no type for`);
    const type = view ?? { shape: t.dims, elem };
    const key = `${name}\u0000${typeText(type)}`;
    const hit = this.constants.get(key);
    if (hit) return hit;
    let s: Ssa;
    // Large tensors, and reinterpreted bytes, become arguments; the rest dense literals.
    if (t.byteLength > this.inlineMaxBytes || type.elem !== elem) s = this.weightArgument(t, type, undefined, name);
    else s = this.b.constant(t.dtype === DataType.INT64 || t.dtype === DataType.UINT64 ? (t.toTypedArray() as BigInt64Array) : tensorNumbers(t), type);
    this.constants.set(key, s);
    return s;
  }

  /**
   * Registers a weight argument whose bytes are `t`'s (rounded to bf16/f16 while writing when
   * `convert` is given). `type` may view the bytes as another element type of the same byte size.
   */
  weightArgument(t: Tensor, type: HloType, convert?: 'bf16' | 'f16', name = t.name): Ssa {
    const sub = type.elem === 'i4' || type.elem === 'ui4';
    const storage = convert ? (convert === 'bf16' ? 'BF16' : 'F16') : sub ? 'U8' : STORAGE[onnxStorageOf(type.elem)];
    if (!storage) throw new Refusal(`weight '${name}' is ${dtypeName(t.dtype)}, which has no safetensors form`);
    const bits = { i1: 8, i4: 4, ui4: 4, i8: 8, ui8: 8, i16: 16, ui16: 16, f16: 16, bf16: 16, i32: 32, ui32: 32, f32: 32, i64: 64, ui64: 64, f64: 64 }[type.elem];
    const bytes = Math.ceil((count(type.shape) * bits) / 8);
    if (convert ? t.dtype !== DataType.FLOAT || count(t.dims) !== count(type.shape) : bytes !== t.byteLength) throw new Refusal(`weight '${name}': ${dtypeName(t.dtype)}[${t.dims.join(', ')}] cannot be stored as ${typeText(type)}`);
    const ssa = this.b.addArg(type);
    this.args.push({ kind: 'weight', name, ssa, tensor: t, storage, ...(convert ? { convert } : {}), ...(sub ? { packing: 'int4-low-nibble-first' as const } : {}), bytes });
    return ssa;
  }
}

function onnxStorageOf(e: Elem): DataType {
  const map: Record<Elem, DataType> = {
    f32: DataType.FLOAT,
    f64: DataType.DOUBLE,
    f16: DataType.FLOAT16,
    bf16: DataType.BFLOAT16,
    i1: DataType.BOOL,
    i4: DataType.INT4,
    i8: DataType.INT8,
    i16: DataType.INT16,
    i32: DataType.INT32,
    i64: DataType.INT64,
    ui4: DataType.UINT4,
    ui8: DataType.UINT8,
    ui16: DataType.UINT16,
    ui32: DataType.UINT32,
    ui64: DataType.UINT64,
  };
  return map[e];
}

/** What a table entry sees: the node, its inputs as SSA values, its attributes, the builder. */
export class NodeContext {
  constructor(
    readonly lowering: GraphLowering,
    readonly node: Node,
  ) {}

  get b(): FunctionBuilder {
    return this.lowering.b;
  }

  get opset(): number {
    return this.lowering.model.opsetVersion(this.node.domain) ?? 1;
  }

  get lowType(): 'bf16' | 'f16' | undefined {
    return this.lowering.lowType;
  }

  get precision(): Precision {
    return this.lowering.precision;
  }

  fail(reason: string): never {
    throw new Refusal(reason);
  }

  has(i: number): boolean {
    return !!this.node.inputs[i];
  }

  private value(i: number): Value {
    const v = this.node.inputs[i];
    if (!v) this.fail(`input ${i} is missing`);
    return v;
  }

  /** Input `i` in its compute type. */
  input(i: number): Ssa {
    return this.lowering.valueOf(this.value(i), 'compute');
  }

  /** Input `i`'s element type in the ONNX graph (float32 for a weight stored in a low type). */
  inputElem(i: number): Elem {
    const v = this.value(i);
    return this.lowering.isLowWeight(v) ? 'f32' : this.lowering.valueOf(v, 'stored').type.elem;
  }

  /** Input `i` as stored (a low-precision weight stays low precision). */
  stored(i: number): Ssa {
    return this.lowering.valueOf(this.value(i), 'stored');
  }

  /** Input `i` as a matmul operand (the low type under bf16/fp16). */
  matmulOperand(i: number): Ssa {
    return this.lowering.valueOf(this.value(i), 'matmul');
  }

  /** Input `i`'s constant tensor, or a refusal saying the lowering needs it constant. */
  constant(i: number, what: string): Tensor {
    const t = this.lowering.constantTensor(this.value(i));
    if (!t) this.fail(`${what} (input ${i}, '${this.value(i).name}') is computed at run time; the xla lowering needs it constant (fix input shapes with --shape so cleanup folds it)`);
    return t;
  }

  isConstant(i: number): boolean {
    return this.has(i) && this.lowering.constantTensor(this.value(i)) !== undefined;
  }

  constInts(i: number, what: string): number[] {
    return tensorNumbers(this.constant(i, what));
  }

  /** A constant initializer as a weight argument whose bytes are read as `type` (reinterpretation). */
  storedAs(i: number, type: HloType, what: string): Ssa {
    return this.lowering.tensorValue(this.constant(i, what), type);
  }

  /** An ONNX type for output `i` if the model has one (its element type). */
  outputElem(i: number): Elem | undefined {
    const v = this.node.outputs[i];
    return v?.type?.kind === 'tensor' ? elemOfOnnx(v.type.elemType) : undefined;
  }

  outputUsed(i: number): boolean {
    const v = this.node.outputs[i];
    return !!v && (v.uses.length > 0 || v.isGraphOutput);
  }

  attrInt(name: string, fallback: number): number {
    return this.node.attrInt(name, fallback);
  }

  attrInts(name: string): number[] | undefined {
    return this.node.attrInts(name);
  }

  attrFloat(name: string, fallback: number): number {
    return this.node.attrFloat(name, fallback);
  }

  attrFloats(name: string): number[] | undefined {
    const a = this.node.attribute(name);
    if (!a) return undefined;
    if (a.type !== 'floats') this.fail(`attribute '${name}' is ${a.type}, expected floats`);
    return a.value;
  }

  attrString(name: string, fallback: string): string {
    const a = this.node.attribute(name);
    if (!a) return fallback;
    if (a.type !== 'string') this.fail(`attribute '${name}' is ${a.type}, expected a string`);
    return bytesText(a.value);
  }

  attrTensor(name: string): Tensor | undefined {
    const a = this.node.attribute(name);
    if (!a) return undefined;
    if (a.type !== 'tensor') this.fail(`attribute '${name}' is ${a.type}, expected a tensor`);
    return a.value;
  }

  /** Normalizes a possibly negative axis against `rank`. */
  axis(a: number, rank: number, what = 'axis'): number {
    const x = a < 0 ? a + rank : a;
    if (!(x >= 0 && x < rank)) this.fail(`${what} ${a} is out of range for rank ${rank}`);
    return x;
  }
}
