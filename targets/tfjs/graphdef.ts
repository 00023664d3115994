/**
 * A TensorFlow GraphDef as TF.js graph models carry it: the proto3 JSON form of GraphDef
 * (`node: [{name, op, input, attr}]`, attribute values as `{type}`, `{i}`, `{f}`, `{b}`, `{s}`
 * (base64), `{list: {...}}`, `{shape}`, `{tensor}`), with int64 fields written as decimal strings.
 *
 * Const nodes carry only their dtype and shape; their data goes to the weights manifest under the
 * node's name (TF.js looks Const values up by node name in the decoded weights), so the builder
 * keeps every constant's data as a thunk the shard writer calls once, in order.
 */
import { PeftcError } from '../../src/errors.js';

/** The element types TF.js tensors have (graph models never carry others at run time). */
export type TfDtype = 'float32' | 'int32' | 'bool';

export const TF_DT: Record<TfDtype, string> = { float32: 'DT_FLOAT', int32: 'DT_INT32', bool: 'DT_BOOL' };

export interface TfTensorShapeJson {
  dim?: Array<{ size: string }>;
  unknownRank?: boolean;
}

/** One AttrValue in proto3 JSON form. */
export type TfAttr =
  | { type: string }
  | { i: string }
  | { f: number }
  | { b: boolean }
  | { s: string }
  | { shape: TfTensorShapeJson }
  | { tensor: { dtype: string; tensorShape: TfTensorShapeJson } }
  | { list: { i?: string[]; f?: number[]; s?: string[]; type?: string[]; b?: boolean[] } };

export interface TfNodeDef {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, TfAttr>;
}

/** A constant's data, computed when the weights are written (one at a time). */
export interface TfConst {
  name: string;
  dtype: TfDtype;
  shape: number[];
  data: () => Float32Array | Int32Array | Uint8Array;
  /** What the constant is, for reports: the ONNX initializer it comes from, or how it was made. */
  origin: string;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

export const attr = {
  dtype: (d: TfDtype): TfAttr => ({ type: TF_DT[d] }),
  int: (n: number): TfAttr => ({ i: String(Math.trunc(n)) }),
  float: (x: number): TfAttr => {
    if (!Number.isFinite(x)) throw new PeftcError(`internal: a float attribute must be finite in JSON (got ${x})`);
    return { f: x };
  },
  bool: (b: boolean): TfAttr => ({ b }),
  str: (s: string): TfAttr => ({ s: b64(s) }),
  ints: (ns: readonly number[]): TfAttr => ({ list: { i: ns.map((n) => String(Math.trunc(n))) } }),
  strs: (ss: readonly string[]): TfAttr => ({ list: { s: ss.map(b64) } }),
  shape: (dims: readonly number[] | undefined): TfAttr => ({ shape: tensorShape(dims) }),
};

export function tensorShape(dims: readonly number[] | undefined): TfTensorShapeJson {
  if (dims === undefined) return { unknownRank: true };
  return dims.length ? { dim: dims.map((d) => ({ size: String(d) })) } : {};
}

/**
 * TensorFlow node names: `[A-Za-z0-9.][A-Za-z0-9_./-]*`. ':' would be read as an output index,
 * so everything outside that set becomes '_', and a leading '/' (the exporters' scope names) goes.
 */
export function sanitizeNodeName(name: string): string {
  let s = name.replace(/^\/+/, '').replace(/[^A-Za-z0-9_./-]/g, '_');
  if (!/^[A-Za-z0-9.]/.test(s)) s = `n${s}`;
  return s;
}

/** Builds the node list: unique names, constants with their data thunks, one reference per output. */
export class TfGraphBuilder {
  readonly nodes: TfNodeDef[] = [];
  readonly consts: TfConst[] = [];
  private readonly names = new Set<string>();
  /** Ops used, for the report. */
  readonly opCounts = new Map<string, number>();

  /** A fresh node name derived from `base` (sanitized; `_1`, `_2`... on collision). */
  uniqueName(base: string): string {
    const s = sanitizeNodeName(base || 'node');
    let name = s;
    for (let i = 1; this.names.has(name); i++) name = `${s}_${i}`;
    this.names.add(name);
    return name;
  }

  /**
   * Appends a node; returns its name (the reference to output 0; `${name}:${i}` for output i).
   * `reserved`: `nameHint` is a name uniqueName already handed out, used as it is.
   */
  add(op: string, inputs: readonly string[], attrs: Record<string, TfAttr>, nameHint: string, reserved = false): string {
    if (reserved && !this.names.has(nameHint)) throw new PeftcError(`internal: node name '${nameHint}' was not reserved`);
    const name = reserved ? nameHint : this.uniqueName(nameHint);
    const node: TfNodeDef = { name, op };
    if (inputs.length) node.input = [...inputs];
    if (Object.keys(attrs).length) node.attr = attrs;
    this.nodes.push(node);
    this.opCounts.set(op, (this.opCounts.get(op) ?? 0) + 1);
    return name;
  }

  /** A Const node whose data goes to the weights manifest under the node's name. */
  constant(nameHint: string, dtype: TfDtype, shape: readonly number[], data: TfConst['data'], origin: string): string {
    const name = this.add('Const', [], { dtype: attr.dtype(dtype), value: { tensor: { dtype: TF_DT[dtype], tensorShape: tensorShape(shape) } } }, nameHint);
    this.consts.push({ name, dtype, shape: [...shape], data, origin });
    return name;
  }

  placeholder(nameHint: string, dtype: TfDtype, shape: readonly number[]): string {
    return this.add('Placeholder', [], { dtype: attr.dtype(dtype), shape: attr.shape(shape) }, nameHint);
  }

  /** The GraphDef as JSON (`versions` is read by TF.js: producer.minConsumer becomes the model's version). */
  toJson(): { node: TfNodeDef[]; library: Record<string, never>; versions: { producer: number; minConsumer: number } } {
    return { node: this.nodes, library: {}, versions: { producer: 1, minConsumer: 0 } };
  }
}
