/**
 * StableHLO text emitter: a function body built op by op in MLIR's generic operation syntax
 * (`%3 = "stablehlo.add"(%1, %2) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>`), the form
 * the StableHLO specification writes its examples in and that every MLIR parser with the
 * dialect registered reads (JAX's included), independent of each op's custom pretty syntax.
 *
 * Each builder method computes its result type from its operands by the op's shape rule, so the
 * lowering never spells a type by hand; attribute spellings follow the spec's examples and
 * StableHLO's own round-trip tests (array<i64: ...>, #stablehlo.dot<...>, #stablehlo.gather<...>,
 * #stablehlo.conv<[b, f, 0, 1]x[o, i, 0, 1]->[b, f, 0, 1]>, #stablehlo<comparison_direction LT>).
 */
import { DataType } from '../../src/ir/dtype.js';

export type Elem = 'f32' | 'f64' | 'f16' | 'bf16' | 'i1' | 'i4' | 'i8' | 'i16' | 'i32' | 'i64' | 'ui4' | 'ui8' | 'ui16' | 'ui32' | 'ui64';

export interface HloType {
  readonly shape: readonly number[];
  readonly elem: Elem;
}

/** An SSA value of the function being built. */
export interface Ssa {
  readonly ref: string;
  readonly type: HloType;
}

/** Thrown by the emitter when an op would be ill-formed (a lowering bug, reported with the node). */
export class EmitError extends Error {}

const ONNX_TO_ELEM: Partial<Record<DataType, Elem>> = {
  [DataType.FLOAT]: 'f32',
  [DataType.DOUBLE]: 'f64',
  [DataType.FLOAT16]: 'f16',
  [DataType.BFLOAT16]: 'bf16',
  [DataType.BOOL]: 'i1',
  [DataType.INT4]: 'i4',
  [DataType.INT8]: 'i8',
  [DataType.INT16]: 'i16',
  [DataType.INT32]: 'i32',
  [DataType.INT64]: 'i64',
  [DataType.UINT4]: 'ui4',
  [DataType.UINT8]: 'ui8',
  [DataType.UINT16]: 'ui16',
  [DataType.UINT32]: 'ui32',
  [DataType.UINT64]: 'ui64',
};

export function elemOfOnnx(dtype: number): Elem | undefined {
  return ONNX_TO_ELEM[dtype as DataType];
}

export function onnxOfElem(e: Elem): DataType {
  for (const [k, v] of Object.entries(ONNX_TO_ELEM)) if (v === e) return Number(k) as DataType;
  throw new EmitError(`internal: no ONNX type for ${e}`);
}

export const isFloatElem = (e: Elem): boolean => e === 'f32' || e === 'f64' || e === 'f16' || e === 'bf16';
export const isUnsignedElem = (e: Elem): boolean => e.startsWith('ui');

export function typeText(t: HloType): string {
  return `tensor<${[...t.shape.map(String), t.elem].join('x')}>`;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
export const count = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);

function ints(xs: readonly number[]): string {
  return xs.length ? `array<i64: ${xs.join(', ')}>` : 'array<i64>';
}

function list(xs: readonly number[]): string {
  return `[${xs.join(', ')}]`;
}

// ------------------------------------------------------------------------------------------------
// Literals

/** A float in MLIR literal syntax: decimal with a '.', or the bit pattern in hex for inf/NaN. */
export function floatLiteral(v: number, e: Elem): string {
  if (!Number.isFinite(v)) {
    const bits: Record<string, [string, string, string]> = {
      f32: ['0x7F800000', '0xFF800000', '0x7FC00000'],
      bf16: ['0x7F80', '0xFF80', '0x7FC0'],
      f16: ['0x7C00', '0xFC00', '0x7E00'],
      f64: ['0x7FF0000000000000', '0xFFF0000000000000', '0x7FF8000000000000'],
    };
    const [pos, neg, nan] = bits[e]!;
    return Number.isNaN(v) ? nan : v > 0 ? pos : neg;
  }
  let s: string;
  if (e === 'f64') s = String(v);
  else {
    // The shortest decimal that reads back as the same float32 (bf16/f16 values are float32 values).
    const target = Math.fround(v);
    s = String(target);
    for (let p = 1; p <= 9; p++) {
      const t = target.toPrecision(p);
      if (Math.fround(Number(t)) === target) {
        s = t;
        break;
      }
    }
  }
  if (Object.is(v, -0)) return '-0.0';
  const [mant, exp] = s.toLowerCase().split('e');
  const m = mant!.includes('.') ? mant! : `${mant}.0`;
  return exp === undefined ? m : `${m}e${exp.startsWith('-') || exp.startsWith('+') ? exp : `+${exp}`}`;
}

/** The element values of a dense literal, nested by `shape` (a splat when all are equal). */
export function denseLiteral(values: ArrayLike<number | bigint>, type: HloType): string {
  const n = count(type.shape);
  if (values.length !== n) throw new EmitError(`internal: ${n} literal values needed for ${typeText(type)}, got ${values.length}`);
  const fmt = (v: number | bigint): string => {
    if (type.elem === 'i1') return Number(v) ? 'true' : 'false';
    if (isFloatElem(type.elem)) return floatLiteral(Number(v), type.elem);
    return String(v);
  };
  if (n > 0) {
    let splat = true;
    for (let i = 1; i < n && splat; i++) if (values[i] !== values[0] && !(Number.isNaN(values[i]) && Number.isNaN(values[0]))) splat = false;
    if (splat) return `dense<${fmt(values[0]!)}>`;
  }
  if (type.shape.length === 0) return `dense<${fmt(values[0]!)}>`;
  let at = 0;
  const nest = (d: number): string => {
    if (d === type.shape.length) return fmt(values[at++]!);
    const parts: string[] = [];
    for (let i = 0; i < type.shape[d]!; i++) parts.push(nest(d + 1));
    return `[${parts.join(', ')}]`;
  };
  return `dense<${nest(0)}>`;
}

// ------------------------------------------------------------------------------------------------

export type CompareDirection = 'EQ' | 'NE' | 'LT' | 'LE' | 'GT' | 'GE';
export type ReduceBody = 'add' | 'multiply' | 'maximum' | 'minimum' | 'and' | 'or';
export type Precision = 'DEFAULT' | 'HIGHEST';

export interface DotDims {
  lhsBatching: number[];
  rhsBatching: number[];
  lhsContracting: number[];
  rhsContracting: number[];
}

export interface GatherDims {
  offsetDims: number[];
  collapsedSliceDims: number[];
  startIndexMap: number[];
  indexVectorDim: number;
  sliceSizes: number[];
}

export interface ConvSpec {
  strides: number[];
  padding: Array<[number, number]>;
  lhsDilation: number[];
  rhsDilation: number[];
  featureGroupCount: number;
  precision: Precision;
}

/** One function's body, built in order; `text()` renders `func.func public @name(...)`. */
export class FunctionBuilder {
  private readonly lines: string[] = [];
  private next = 0;
  readonly args: Ssa[] = [];
  /** Ops emitted so far, by op name (for reports). */
  readonly histogram = new Map<string, number>();

  addArg(type: HloType): Ssa {
    const a = { ref: `%arg${this.args.length}`, type };
    this.args.push(a);
    return a;
  }

  get opCount(): number {
    return this.next;
  }

  /** Emits `%N = "stablehlo.<name>"(operands) [(region)] [{attrs}] : (types) -> type`. */
  op(name: string, operands: readonly Ssa[], result: HloType, attrs: readonly string[] = [], region?: string): Ssa {
    const ref = `%${this.next++}`;
    const a = attrs.length ? ` {${attrs.join(', ')}}` : '';
    const r = region ? ` (${region})` : '';
    this.lines.push(`    ${ref} = "stablehlo.${name}"(${operands.map((o) => o.ref).join(', ')})${r}${a} : (${operands.map((o) => typeText(o.type)).join(', ')}) -> ${typeText(result)}`);
    this.histogram.set(name, (this.histogram.get(name) ?? 0) + 1);
    return { ref, type: result };
  }

  comment(text: string): void {
    this.lines.push(`    // ${text.replace(/[\r\n]+/g, ' ')}`);
  }

  text(name: string, results: readonly Ssa[]): string {
    const args = this.args.map((a) => `${a.ref}: ${typeText(a.type)}`).join(', ');
    const res = results.map((r) => typeText(r.type)).join(', ');
    return [
      `  func.func public @${name}(${args}) -> (${res}) {`,
      ...this.lines,
      `    return ${results.map((r) => r.ref).join(', ')} : ${res}`,
      '  }',
    ].join('\n');
  }

  // ---- constants and element types --------------------------------------------------------------

  constant(values: ArrayLike<number | bigint>, type: HloType): Ssa {
    return this.op('constant', [], type, [`value = ${denseLiteral(values, type)} : ${typeText(type)}`]);
  }

  /** A constant tensor of `shape` whose elements are all `value` (a splat literal). */
  splat(value: number, elem: Elem, shape: readonly number[] = []): Ssa {
    const type = { shape, elem };
    return this.op('constant', [], type, [`value = ${denseLiteral([value], { shape: [], elem })} : ${typeText(type)}`]);
  }

  convert(x: Ssa, elem: Elem): Ssa {
    if (x.type.elem === elem) return x;
    return this.op('convert', [x], { shape: x.type.shape, elem });
  }

  iota(dim: number, type: HloType): Ssa {
    return this.op('iota', [], type, [`iota_dimension = ${dim} : i64`]);
  }

  // ---- elementwise -----------------------------------------------------------------------------

  unary(name: string, x: Ssa): Ssa {
    return this.op(name, [x], x.type);
  }

  binary(name: string, a: Ssa, b: Ssa): Ssa {
    if (a.type.elem !== b.type.elem || !sameShape(a.type.shape, b.type.shape)) {
      throw new EmitError(`internal: ${name} of ${typeText(a.type)} and ${typeText(b.type)}`);
    }
    return this.op(name, [a, b], a.type);
  }

  compare(dir: CompareDirection, a: Ssa, b: Ssa): Ssa {
    if (a.type.elem !== b.type.elem || !sameShape(a.type.shape, b.type.shape)) throw new EmitError(`internal: compare of ${typeText(a.type)} and ${typeText(b.type)}`);
    const e = a.type.elem;
    const kind = isFloatElem(e) ? 'FLOAT' : e === 'i1' || isUnsignedElem(e) ? 'UNSIGNED' : 'SIGNED';
    return this.op('compare', [a, b], { shape: a.type.shape, elem: 'i1' }, [`comparison_direction = #stablehlo<comparison_direction ${dir}>`, `compare_type = #stablehlo<comparison_type ${kind}>`]);
  }

  select(pred: Ssa, a: Ssa, b: Ssa): Ssa {
    if (pred.type.elem !== 'i1' || !sameShape(pred.type.shape, a.type.shape) || a.type.elem !== b.type.elem || !sameShape(a.type.shape, b.type.shape)) {
      throw new EmitError(`internal: select(${typeText(pred.type)}, ${typeText(a.type)}, ${typeText(b.type)})`);
    }
    return this.op('select', [pred, a, b], a.type);
  }

  // ---- shapes ----------------------------------------------------------------------------------

  reshape(x: Ssa, shape: readonly number[]): Ssa {
    if (sameShape(x.type.shape, shape)) return x;
    if (count(shape) !== count(x.type.shape)) throw new EmitError(`internal: reshape of ${typeText(x.type)} to [${shape.join(', ')}]`);
    return this.op('reshape', [x], { shape, elem: x.type.elem });
  }

  /** broadcast_in_dim: operand dimension i becomes result dimension dims[i] (size 1 or equal). */
  broadcastInDim(x: Ssa, dims: readonly number[], shape: readonly number[]): Ssa {
    if (dims.length !== x.type.shape.length) throw new EmitError(`internal: broadcast_in_dim dims [${dims.join(', ')}] for ${typeText(x.type)}`);
    x.type.shape.forEach((d, i) => {
      if (d !== 1 && d !== shape[dims[i]!]) throw new EmitError(`internal: broadcast_in_dim of ${typeText(x.type)} to [${shape.join(', ')}] via [${dims.join(', ')}]`);
    });
    if (sameShape(x.type.shape, shape) && dims.every((d, i) => d === i)) return x;
    return this.op('broadcast_in_dim', [x], { shape, elem: x.type.elem }, [`broadcast_dimensions = ${ints(dims)}`]);
  }

  /** NumPy-style: align trailing dimensions. */
  broadcastTo(x: Ssa, shape: readonly number[]): Ssa {
    const r = x.type.shape.length;
    if (r > shape.length) throw new EmitError(`internal: cannot broadcast ${typeText(x.type)} to [${shape.join(', ')}]`);
    return this.broadcastInDim(x, x.type.shape.map((_, i) => shape.length - r + i), shape);
  }

  transpose(x: Ssa, perm: readonly number[]): Ssa {
    if (perm.every((p, i) => p === i)) return x;
    return this.op('transpose', [x], { shape: perm.map((p) => x.type.shape[p]!), elem: x.type.elem }, [`permutation = ${ints(perm)}`]);
  }

  concatenate(xs: readonly Ssa[], dim: number): Ssa {
    if (xs.length === 1) return xs[0]!;
    const shape = xs[0]!.type.shape.map((d, i) => (i === dim ? xs.reduce((a, x) => a + x.type.shape[dim]!, 0) : d));
    return this.op('concatenate', xs, { shape, elem: xs[0]!.type.elem }, [`dimension = ${dim} : i64`]);
  }

  slice(x: Ssa, start: readonly number[], limit: readonly number[], strides: readonly number[]): Ssa {
    const shape = x.type.shape.map((_, i) => Math.ceil((limit[i]! - start[i]!) / strides[i]!));
    if (sameShape(shape, x.type.shape) && strides.every((s) => s === 1)) return x;
    return this.op('slice', [x], { shape, elem: x.type.elem }, [`start_indices = ${ints(start)}`, `limit_indices = ${ints(limit)}`, `strides = ${ints(strides)}`]);
  }

  reverse(x: Ssa, dims: readonly number[]): Ssa {
    if (!dims.length) return x;
    return this.op('reverse', [x], x.type, [`dimensions = ${ints(dims)}`]);
  }

  pad(x: Ssa, value: Ssa, low: readonly number[], high: readonly number[], interior: readonly number[]): Ssa {
    const shape = x.type.shape.map((d, i) => low[i]! + d + Math.max(d - 1, 0) * interior[i]! + high[i]!);
    return this.op('pad', [x, value], { shape, elem: x.type.elem }, [`edge_padding_low = ${ints(low)}`, `edge_padding_high = ${ints(high)}`, `interior_padding = ${ints(interior)}`]);
  }

  // ---- contractions, reductions, windows -------------------------------------------------------

  dotGeneral(a: Ssa, b: Ssa, dims: DotDims, resultElem: Elem, precision: Precision): Ssa {
    if (a.type.elem !== b.type.elem) throw new EmitError(`internal: dot_general of ${a.type.elem} and ${b.type.elem}`);
    const la = a.type.shape;
    const lb = b.type.shape;
    dims.lhsContracting.forEach((d, i) => {
      if (la[d] !== lb[dims.rhsContracting[i]!]) throw new EmitError(`internal: dot_general contracts ${la[d]} with ${lb[dims.rhsContracting[i]!]}`);
    });
    const af = la.map((_, i) => i).filter((i) => !dims.lhsBatching.includes(i) && !dims.lhsContracting.includes(i));
    const bf = lb.map((_, i) => i).filter((i) => !dims.rhsBatching.includes(i) && !dims.rhsContracting.includes(i));
    const shape = [...dims.lhsBatching.map((d) => la[d]!), ...af.map((d) => la[d]!), ...bf.map((d) => lb[d]!)];
    const fields = [
      ...(dims.lhsBatching.length ? [`lhs_batching_dimensions = ${list(dims.lhsBatching)}`, `rhs_batching_dimensions = ${list(dims.rhsBatching)}`] : []),
      `lhs_contracting_dimensions = ${list(dims.lhsContracting)}`,
      `rhs_contracting_dimensions = ${list(dims.rhsContracting)}`,
    ];
    return this.op('dot_general', [a, b], { shape, elem: resultElem }, [
      `dot_dimension_numbers = #stablehlo.dot<${fields.join(', ')}>`,
      `precision_config = [#stablehlo<precision ${precision}>, #stablehlo<precision ${precision}>]`,
    ]);
  }

  private static region(body: ReduceBody, elem: Elem): string {
    const t = typeText({ shape: [], elem });
    return [
      '{',
      `    ^bb0(%lhs: ${t}, %rhs: ${t}):`,
      `      %r = "stablehlo.${body}"(%lhs, %rhs) : (${t}, ${t}) -> ${t}`,
      `      "stablehlo.return"(%r) : (${t}) -> ()`,
      '    }',
    ].join('\n');
  }

  /** reduce over `dims` with a body that is one binary op; `init` is a 0-d tensor. */
  reduce(x: Ssa, init: Ssa, dims: readonly number[], body: ReduceBody): Ssa {
    if (init.type.shape.length !== 0 || init.type.elem !== x.type.elem) throw new EmitError(`internal: reduce init ${typeText(init.type)} for ${typeText(x.type)}`);
    const shape = x.type.shape.filter((_, i) => !dims.includes(i));
    return this.op('reduce', [x, init], { shape, elem: x.type.elem }, [`dimensions = ${ints([...dims].sort((p, q) => p - q))}`], FunctionBuilder.region(body, x.type.elem));
  }

  reduceWindow(x: Ssa, init: Ssa, body: ReduceBody, window: readonly number[], strides: readonly number[], padding: ReadonlyArray<readonly [number, number]>, windowDilations?: readonly number[]): Ssa {
    const wd = windowDilations ?? window.map(() => 1);
    const shape = x.type.shape.map((d, i) => {
      const padded = padding[i]![0] + d + padding[i]![1];
      const span = (window[i]! - 1) * wd[i]! + 1;
      return padded === 0 || span > padded ? 0 : Math.floor((padded - span) / strides[i]!) + 1;
    });
    const pad = `dense<[${padding.map(([l, h]) => `[${l}, ${h}]`).join(', ')}]> : tensor<${padding.length}x2xi64>`;
    return this.op('reduce_window', [x, init], { shape, elem: x.type.elem }, [
      `window_dimensions = ${ints(window)}`,
      `window_strides = ${ints(strides)}`,
      `base_dilations = ${ints(window.map(() => 1))}`,
      `window_dilations = ${ints(wd)}`,
      `padding = ${pad}`,
    ], FunctionBuilder.region(body, x.type.elem));
  }

  gather(operand: Ssa, indices: Ssa, d: GatherDims): Ssa {
    const batch = indices.type.shape.filter((_, i) => i !== d.indexVectorDim);
    const offsets = d.sliceSizes.filter((_, i) => !d.collapsedSliceDims.includes(i));
    const rank = batch.length + offsets.length;
    const shape: number[] = [];
    let bi = 0;
    let oi = 0;
    for (let k = 0; k < rank; k++) shape.push(d.offsetDims.includes(k) ? offsets[oi++]! : batch[bi++]!);
    const fields = [
      ...(d.offsetDims.length ? [`offset_dims = ${list(d.offsetDims)}`] : []),
      ...(d.collapsedSliceDims.length ? [`collapsed_slice_dims = ${list(d.collapsedSliceDims)}`] : []),
      `start_index_map = ${list(d.startIndexMap)}`,
      `index_vector_dim = ${d.indexVectorDim}`,
    ];
    return this.op('gather', [operand, indices], { shape, elem: operand.type.elem }, [
      `dimension_numbers = #stablehlo.gather<${fields.join(', ')}>`,
      `slice_sizes = ${ints(d.sliceSizes)}`,
      'indices_are_sorted = false',
    ]);
  }

  /** Convolution in ONNX's layout: lhs [N, C, spatial...], rhs [O, C/groups, spatial...] -> [N, O, spatial...]. */
  convolution(lhs: Ssa, rhs: Ssa, c: ConvSpec): Ssa {
    const s = lhs.type.shape.length - 2;
    const sp = Array.from({ length: s }, (_, i) => String(i));
    const layout = (a: string, b: string) => `[${[a, b, ...sp].join(', ')}]`;
    const shape = [lhs.type.shape[0]!, rhs.type.shape[0]!];
    for (let i = 0; i < s; i++) {
      const din = lhs.type.shape[2 + i]!;
      const dilated = din === 0 ? 0 : (din - 1) * c.lhsDilation[i]! + 1;
      const padded = c.padding[i]![0] + dilated + c.padding[i]![1];
      const k = rhs.type.shape[2 + i]!;
      const window = k === 0 ? 0 : (k - 1) * c.rhsDilation[i]! + 1;
      shape.push(padded === 0 || window > padded ? 0 : Math.floor((padded - window) / c.strides[i]!) + 1);
    }
    return this.op('convolution', [lhs, rhs], { shape, elem: lhs.type.elem }, [
      `window_strides = ${ints(c.strides)}`,
      `padding = dense<[${c.padding.map(([l, h]) => `[${l}, ${h}]`).join(', ')}]> : tensor<${s}x2xi64>`,
      `lhs_dilation = ${ints(c.lhsDilation)}`,
      `rhs_dilation = ${ints(c.rhsDilation)}`,
      `dimension_numbers = #stablehlo.conv<${layout('b', 'f')}x${layout('o', 'i')}->${layout('b', 'f')}>`,
      `feature_group_count = ${c.featureGroupCount} : i64`,
      'batch_group_count = 1 : i64',
      `precision_config = [#stablehlo<precision ${c.precision}>, #stablehlo<precision ${c.precision}>]`,
    ]);
  }
}
