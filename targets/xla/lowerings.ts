/**
 * The xla target's lowering table: one entry per ONNX op (key: "Op", or "domain::Op"), each a
 * builder that emits StableHLO for one node through the FunctionBuilder. The table is also the
 * target's legality table: an op with no entry, or an entry that refuses the node (a constant
 * input computed at run time, an attribute value it does not implement), is a node the target
 * cannot run, reported by name.
 *
 * Conventions shared by every entry:
 *  - ONNX broadcasting is made explicit (broadcast_in_dim to the common shape, `bcast`);
 *  - axes are normalized (negative axes counted from the end);
 *  - shape-like inputs (Reshape's shape, Slice's starts, ...) must be constants after cleanup;
 *  - float32 compute, except matmul/convolution operands under --quant bf16|fp16 (NodeContext).
 */
import { bfloat16BitsToFloat32, DataType, float16BitsToFloat32, unpackSubByte } from '../../src/ir/dtype.js';
import type { Tensor } from '../../src/ir/tensor.js';
import { count, elemOfOnnx, isFloatElem, type CompareDirection, type Elem, type FunctionBuilder, type ReduceBody, type Ssa } from './emitter.js';
import type { NodeContext } from './lower.js';

/** A node the table cannot lower, with why (caught per node by the driver, lower.ts). */
export class Refusal extends Error {}

/** Constant values of a tensor as numbers (int64 beyond 2^53 loses precision; shape constants never are). */
export function tensorNumbers(t: Tensor): number[] {
  const d = t.dtype;
  if (d === DataType.INT4 || d === DataType.UINT4) return Array.from(unpackSubByte(t.bytes(), t.elementCount, 4, d === DataType.INT4));
  if (d === DataType.FLOAT16) return Array.from(t.toTypedArray() as Uint16Array, float16BitsToFloat32);
  if (d === DataType.BFLOAT16) return Array.from(t.toTypedArray() as Uint16Array, bfloat16BitsToFloat32);
  if (d === DataType.STRING) throw new Refusal(`tensor '${t.name}' holds strings`);
  return Array.from(t.toTypedArray() as ArrayLike<number | bigint>, Number);
}

export interface LoweringRule {
  /** What the entry implements, in a few words (for the README's table and reports). */
  readonly summary: string;
  lower(cx: NodeContext): Array<Ssa | undefined>;
}

// ------------------------------------------------------------------------------------------------
// Shared helpers

/** NumPy broadcasting of two shapes. */
function broadcastShapes(cx: NodeContext, a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) cx.fail(`shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Broadcasts every value to their common shape. */
function bcast(cx: NodeContext, xs: Ssa[]): Ssa[] {
  const shape = xs.reduce<number[]>((s, x) => broadcastShapes(cx, s, x.type.shape), []);
  return xs.map((x) => cx.b.broadcastTo(x, shape));
}

function splatLike(b: FunctionBuilder, value: number, x: Ssa): Ssa {
  return b.splat(value, x.type.elem, x.type.shape);
}

/** Reduces `x` over `axes` (a body op and its identity). */
function reduceAxes(b: FunctionBuilder, x: Ssa, axes: readonly number[], body: ReduceBody): Ssa {
  const init = body === 'add' ? 0 : body === 'multiply' ? 1 : body === 'maximum' ? lowest(x.type.elem) : body === 'minimum' ? highest(x.type.elem) : body === 'and' ? 1 : 0;
  return b.reduce(x, b.splat(init, x.type.elem), axes, body);
}

function lowest(e: Elem): number {
  if (isFloatElem(e)) return -Infinity;
  if (e === 'i1' || e.startsWith('ui')) return 0;
  const bits = Number(/\d+/.exec(e)![0]);
  return -(2 ** (bits - 1));
}

function highest(e: Elem): number {
  if (isFloatElem(e)) return Infinity;
  if (e === 'i1') return 1;
  const bits = Number(/\d+/.exec(e)![0]);
  return e.startsWith('ui') ? 2 ** bits - 1 : 2 ** (bits - 1) - 1;
}

/** A reduced value (axes removed) broadcast back over the full shape. */
function expandBack(b: FunctionBuilder, reduced: Ssa, shape: readonly number[], axes: readonly number[]): Ssa {
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i));
  return b.broadcastInDim(reduced, kept, shape);
}

/** Float32 compute for a value of a narrower float type (normalizations, transcendental decompositions). */
function toF32(b: FunctionBuilder, x: Ssa): Ssa {
  return x.type.elem === 'f16' || x.type.elem === 'bf16' ? b.convert(x, 'f32') : x;
}

function requireFloat(cx: NodeContext, x: Ssa, what = 'input'): void {
  if (!isFloatElem(x.type.elem)) cx.fail(`${what} is ${x.type.elem}; this lowering takes floats`);
}

/** Axes from the `axes` input (newer opsets) or attribute (older ones). */
function axesOf(cx: NodeContext, inputIndex: number, inputSince: number): number[] | undefined {
  if (cx.opset >= inputSince) return cx.has(inputIndex) ? cx.constInts(inputIndex, 'axes') : undefined;
  return cx.attrInts('axes');
}

/** erf(x) for float32 x from stablehlo primitives: Numerical Recipes' erfc approximation (fractional error < 1.2e-7). */
function erf(b: FunctionBuilder, x: Ssa): Ssa {
  const c = (v: number) => splatLike(b, v, x);
  const z = b.unary('abs', x);
  const t = b.binary('divide', c(1), b.binary('add', c(1), b.binary('multiply', c(0.5), z)));
  const coefficients = [-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277];
  let poly = c(coefficients[coefficients.length - 1]!);
  for (let i = coefficients.length - 2; i >= 0; i--) poly = b.binary('add', c(coefficients[i]!), b.binary('multiply', t, poly));
  const exponent = b.binary('subtract', poly, b.binary('multiply', z, z));
  const erfc = b.binary('multiply', t, b.unary('exponential', exponent));
  return b.binary('multiply', b.unary('sign', x), b.binary('subtract', c(1), erfc));
}

function gelu(b: FunctionBuilder, x: Ssa, approximate: string): Ssa {
  const c = (v: number) => splatLike(b, v, x);
  if (approximate === 'tanh') {
    const inner = b.binary('multiply', c(Math.sqrt(2 / Math.PI)), b.binary('add', x, b.binary('multiply', c(0.044715), b.binary('multiply', x, b.binary('multiply', x, x)))));
    return b.binary('multiply', b.binary('multiply', c(0.5), x), b.binary('add', c(1), b.unary('tanh', inner)));
  }
  return b.binary('multiply', b.binary('multiply', c(0.5), x), b.binary('add', c(1), erf(b, b.binary('multiply', x, c(Math.SQRT1_2)))));
}

/** ONNX numpy-style MatMul of two operands already in their compute types; result in `elem`. */
function matmul(cx: NodeContext, a: Ssa, w: Ssa, elem: Elem): Ssa {
  const b = cx.b;
  let squeezeA = false;
  let squeezeB = false;
  if (a.type.shape.length === 1) {
    a = b.reshape(a, [1, a.type.shape[0]!]);
    squeezeA = true;
  }
  if (w.type.shape.length === 1) {
    w = b.reshape(w, [w.type.shape[0]!, 1]);
    squeezeB = true;
  }
  const ra = a.type.shape.length;
  const rb = w.type.shape.length;
  const K = a.type.shape[ra - 1]!;
  if (w.type.shape[rb - 2] !== K) cx.fail(`MatMul contracts ${K} with ${w.type.shape[rb - 2]}`);
  let y: Ssa;
  if (rb === 2) {
    y = b.dotGeneral(a, w, { lhsBatching: [], rhsBatching: [], lhsContracting: [ra - 1], rhsContracting: [0] }, elem, cx.precision);
  } else {
    const batch = broadcastShapes(cx, a.type.shape.slice(0, -2), w.type.shape.slice(0, -2));
    const nb = batch.length;
    const A = b.broadcastTo(a, [...batch, ...a.type.shape.slice(-2)]);
    const W = b.broadcastTo(w, [...batch, ...w.type.shape.slice(-2)]);
    const bd = batch.map((_, i) => i);
    y = b.dotGeneral(A, W, { lhsBatching: bd, rhsBatching: bd, lhsContracting: [nb + 1], rhsContracting: [nb] }, elem, cx.precision);
  }
  const s = [...y.type.shape];
  if (squeezeB) s.splice(s.length - 1, 1);
  if (squeezeA) s.splice(s.length - (squeezeB ? 1 : 2), 1);
  return b.reshape(y, s);
}

/** The element type an op's float result has (the ONNX output type, or the input's). */
function resultElem(cx: NodeContext, fallback: Elem): Elem {
  return cx.outputElem(0) ?? fallback;
}

/** Spatial padding for Conv/pooling from pads/auto_pad (ONNX): [begin, end] per spatial dim. */
function spatialPads(cx: NodeContext, input: readonly number[], kernel: readonly number[], strides: readonly number[], dilations: readonly number[]): Array<[number, number]> {
  const s = kernel.length;
  const autoPad = cx.attrString('auto_pad', 'NOTSET');
  if (autoPad === 'NOTSET') {
    const pads = cx.attrInts('pads') ?? new Array(2 * s).fill(0);
    if (pads.length !== 2 * s) cx.fail(`pads has ${pads.length} entries, expected ${2 * s}`);
    return Array.from({ length: s }, (_, i) => [pads[i]!, pads[s + i]!] as [number, number]);
  }
  if (autoPad === 'VALID') return Array.from({ length: s }, () => [0, 0] as [number, number]);
  if (autoPad !== 'SAME_UPPER' && autoPad !== 'SAME_LOWER') cx.fail(`auto_pad '${autoPad}' is not NOTSET, VALID, SAME_UPPER or SAME_LOWER`);
  return input.map((d, i) => {
    const out = Math.ceil(d / strides[i]!);
    const total = Math.max((out - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - d, 0);
    const small = Math.floor(total / 2);
    return autoPad === 'SAME_UPPER' ? [small, total - small] : [total - small, small];
  });
}

/** ceil_mode: extra end padding so the last partial window counts (not one starting in the padding). */
function ceilPads(input: readonly number[], kernel: readonly number[], strides: readonly number[], dilations: readonly number[], pads: Array<[number, number]>): Array<[number, number]> {
  return pads.map(([lo, hi], i) => {
    const span = (kernel[i]! - 1) * dilations[i]! + 1;
    const padded = input[i]! + lo + hi;
    let out = Math.ceil((padded - span) / strides[i]!) + 1;
    if ((out - 1) * strides[i]! >= input[i]! + lo) out--;
    const extra = Math.max((out - 1) * strides[i]! + span - padded, 0);
    return [lo, hi + extra];
  });
}

interface PoolSetup {
  x: Ssa;
  window: number[];
  strides: number[];
  dilations: number[];
  padding: Array<[number, number]>;
  /** Explicit ONNX pads (before ceil_mode's extra). */
  pads: Array<[number, number]>;
}

function poolSetup(cx: NodeContext): PoolSetup {
  const x = cx.input(0);
  const shape = x.type.shape;
  const s = shape.length - 2;
  const kernel = cx.attrInts('kernel_shape');
  if (!kernel || kernel.length !== s) cx.fail(`kernel_shape must list ${s} sizes`);
  const strides = cx.attrInts('strides') ?? new Array(s).fill(1);
  const dilations = cx.attrInts('dilations') ?? new Array(s).fill(1);
  const spatial = shape.slice(2);
  const pads = spatialPads(cx, spatial, kernel, strides, dilations);
  const padded = cx.attrInt('ceil_mode', 0) ? ceilPads(spatial, kernel, strides, dilations, pads) : pads;
  return {
    x,
    window: [1, 1, ...kernel],
    strides: [1, 1, ...strides],
    dilations: [1, 1, ...dilations],
    padding: [[0, 0], [0, 0], ...padded],
    pads,
  };
}

/** Slices `x` along `axis` into pieces of the given sizes. */
function splitAlong(b: FunctionBuilder, x: Ssa, axis: number, sizes: number[]): Ssa[] {
  const out: Ssa[] = [];
  let at = 0;
  for (const n of sizes) {
    const start = x.type.shape.map((_, i) => (i === axis ? at : 0));
    const limit = x.type.shape.map((d, i) => (i === axis ? at + n : d));
    out.push(b.slice(x, start, limit, x.type.shape.map(() => 1)));
    at += n;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Entries

const table: Record<string, LoweringRule> = {};

function entry(ops: string | string[], summary: string, lower: (cx: NodeContext) => Array<Ssa | undefined>): void {
  for (const op of Array.isArray(ops) ? ops : [ops]) table[op] = { summary, lower };
}

// Elementwise, with broadcasting made explicit.
const BINARY: Record<string, string> = { Add: 'add', Sub: 'subtract', Mul: 'multiply', Div: 'divide', And: 'and', Or: 'or', Xor: 'xor' };
for (const [op, name] of Object.entries(BINARY)) {
  entry(op, `broadcast_in_dim to the common shape, ${name}`, (cx) => {
    const [a, b] = bcast(cx, [cx.input(0), cx.input(1)]);
    return [cx.b.binary(name, a!, b!)];
  });
}
entry('Pow', 'broadcast_in_dim, power (exponent converted to the base type)', (cx) => {
  const base = cx.input(0);
  const e = cx.b.convert(cx.input(1), base.type.elem);
  const [a, b] = bcast(cx, [base, e]);
  return [cx.b.binary('power', a!, b!)];
});
for (const [op, name] of Object.entries({ Max: 'maximum', Min: 'minimum', Sum: 'add' })) {
  entry(op, `variadic: broadcast_in_dim, ${name} folded left`, (cx) => {
    const xs = bcast(cx, cx.node.inputs.map((_, i) => cx.input(i)));
    return [xs.slice(1).reduce((acc, x) => cx.b.binary(name, acc, x), xs[0]!)];
  });
}
entry('Mean', 'variadic: broadcast_in_dim, add, divide by the count', (cx) => {
  const xs = bcast(cx, cx.node.inputs.map((_, i) => cx.input(i)));
  const sum = xs.slice(1).reduce((acc, x) => cx.b.binary('add', acc, x), xs[0]!);
  return [cx.b.binary('divide', sum, splatLike(cx.b, xs.length, sum))];
});
const COMPARE: Record<string, CompareDirection> = { Equal: 'EQ', Less: 'LT', LessOrEqual: 'LE', Greater: 'GT', GreaterOrEqual: 'GE' };
for (const [op, dir] of Object.entries(COMPARE)) {
  entry(op, `broadcast_in_dim, compare ${dir}`, (cx) => {
    const [a, b] = bcast(cx, [cx.input(0), cx.input(1)]);
    return [cx.b.compare(dir, a!, b!)];
  });
}
const UNARY: Record<string, string> = {
  Neg: 'negate',
  Abs: 'abs',
  Sqrt: 'sqrt',
  Exp: 'exponential',
  Log: 'log',
  Tanh: 'tanh',
  Sigmoid: 'logistic',
  Sin: 'sine',
  Cos: 'cosine',
  Floor: 'floor',
  Ceil: 'ceil',
  Round: 'round_nearest_even',
  Sign: 'sign',
  Not: 'not',
};
for (const [op, name] of Object.entries(UNARY)) entry(op, name, (cx) => [cx.b.unary(name, cx.input(0))]);
entry('Reciprocal', 'divide(1, x)', (cx) => {
  const x = cx.input(0);
  return [cx.b.binary('divide', splatLike(cx.b, 1, x), x)];
});
entry('Relu', 'maximum(x, 0)', (cx) => {
  const x = cx.input(0);
  return [cx.b.binary('maximum', x, splatLike(cx.b, 0, x))];
});
entry('LeakyRelu', 'select(x >= 0, x, alpha * x)', (cx) => {
  const x = cx.input(0);
  const zero = splatLike(cx.b, 0, x);
  return [cx.b.select(cx.b.compare('GE', x, zero), x, cx.b.binary('multiply', x, splatLike(cx.b, cx.attrFloat('alpha', 0.01), x)))];
});
entry('HardSigmoid', 'max(0, min(1, alpha * x + beta))', (cx) => {
  const x = cx.input(0);
  const y = cx.b.binary('add', cx.b.binary('multiply', x, splatLike(cx.b, cx.attrFloat('alpha', 0.2), x)), splatLike(cx.b, cx.attrFloat('beta', 0.5), x));
  return [cx.b.binary('maximum', cx.b.binary('minimum', y, splatLike(cx.b, 1, x)), splatLike(cx.b, 0, x))];
});
entry('Softplus', 'max(x, 0) + log(1 + exp(-|x|))', (cx) => {
  const b = cx.b;
  const x = cx.input(0);
  const t = b.unary('exponential', b.unary('negate', b.unary('abs', x)));
  return [b.binary('add', b.binary('maximum', x, splatLike(b, 0, x)), b.unary('log', b.binary('add', splatLike(b, 1, x), t)))];
});
entry('Erf', 'abs, exponential, a rational approximation (|error| < 1.2e-7); float32 compute', (cx) => {
  const x = cx.input(0);
  requireFloat(cx, x);
  return [cx.b.convert(erf(cx.b, toF32(cx.b, x)), x.type.elem)];
});
entry('Gelu', '0.5 x (1 + erf(x / sqrt 2)), or the tanh approximation', (cx) => {
  const x = cx.input(0);
  requireFloat(cx, x);
  return [cx.b.convert(gelu(cx.b, toF32(cx.b, x), cx.attrString('approximate', 'none')), x.type.elem)];
});
entry('Clip', 'maximum/minimum with the bounds (inputs from opset 11, attributes before)', (cx) => {
  const b = cx.b;
  let x = cx.input(0);
  if (cx.opset < 11) {
    const lo = cx.node.attribute('min') ? cx.attrFloat('min', 0) : undefined;
    const hi = cx.node.attribute('max') ? cx.attrFloat('max', 0) : undefined;
    if (lo !== undefined) x = b.binary('maximum', x, splatLike(b, lo, x));
    if (hi !== undefined) x = b.binary('minimum', x, splatLike(b, hi, x));
    return [x];
  }
  if (cx.has(1)) x = b.binary('maximum', x, b.broadcastTo(cx.input(1), x.type.shape));
  if (cx.has(2)) x = b.binary('minimum', x, b.broadcastTo(cx.input(2), x.type.shape));
  return [x];
});
entry('Where', 'broadcast_in_dim of condition and both branches, select', (cx) => {
  const [c, a, b] = bcast(cx, [cx.input(0), cx.input(1), cx.input(2)]);
  return [cx.b.select(c!, a!, b!)];
});
entry(['Identity', 'Dropout'], 'the input itself (Dropout: inference, training_mode constant false; the mask all true)', (cx) => {
  const x = cx.input(0);
  if (cx.node.opType !== 'Dropout') return [x];
  if (cx.has(2) && (!cx.isConstant(2) || cx.constInts(2, 'training_mode').some((v) => v !== 0))) cx.fail('Dropout in training mode (random) is not supported');
  return [x, cx.outputUsed(1) ? cx.b.splat(1, 'i1', x.type.shape) : undefined];
});
entry(['Cast', 'CastLike'], 'convert (to bool: compare NE 0)', (cx) => {
  const x = cx.input(0);
  let to: Elem | undefined;
  if (cx.node.opType === 'Cast') {
    const t = cx.attrInt('to', -1);
    to = elemOfOnnx(t);
    if (!to) return cx.fail(`Cast to ${t} has no StableHLO type here`);
  } else to = cx.input(1).type.elem;
  if (to === x.type.elem) return [x];
  if (to === 'i1') return [cx.b.compare('NE', x, splatLike(cx.b, 0, x))];
  return [cx.b.convert(x, to)];
});

// Matrix products.
entry('MatMul', 'dot_general (batch dims broadcast with broadcast_in_dim; bf16/fp16 operands accumulate into f32)', (cx) => {
  const elem = cx.input(0).type.elem;
  return [matmul(cx, cx.matmulOperand(0), cx.matmulOperand(1), resultElem(cx, elem))];
});
entry('Gemm', 'dot_general with the transposes as contracting dims, alpha/beta, C broadcast', (cx) => {
  const b = cx.b;
  const A = cx.matmulOperand(0);
  const B = cx.matmulOperand(1);
  if (A.type.shape.length !== 2 || B.type.shape.length !== 2) cx.fail('Gemm takes 2-d A and B');
  const ta = cx.attrInt('transA', 0);
  const tb = cx.attrInt('transB', 0);
  const elem = resultElem(cx, cx.input(0).type.elem);
  let y = b.dotGeneral(A, B, { lhsBatching: [], rhsBatching: [], lhsContracting: [ta ? 0 : 1], rhsContracting: [tb ? 1 : 0] }, elem, cx.precision);
  const alpha = cx.attrFloat('alpha', 1);
  const beta = cx.attrFloat('beta', 1);
  if (alpha !== 1) y = b.binary('multiply', y, splatLike(b, alpha, y));
  if (cx.has(2) && beta !== 0) {
    let c = b.broadcastTo(cx.input(2), y.type.shape);
    if (beta !== 1) c = b.binary('multiply', c, splatLike(b, beta, c));
    y = b.binary('add', y, c);
  }
  return [y];
});
entry('com.microsoft::MatMulNBits', 'packed 4/8-bit blocks read as ui4/ui8 arguments, dequantized in the graph, dot_general', (cx) => {
  const b = cx.b;
  const K = cx.attrInt('K', -1);
  const N = cx.attrInt('N', -1);
  const bits = cx.attrInt('bits', 4);
  const bs = cx.attrInt('block_size', -1);
  if (bits !== 4 && bits !== 8) cx.fail(`MatMulNBits with bits=${bits} is not supported (4 and 8 are)`);
  if (cx.has(4)) cx.fail('MatMulNBits with g_idx is not supported');
  const nb = Math.ceil(K / bs);
  const qElem: Elem = bits === 4 ? 'ui4' : 'ui8';
  const q = cx.storedAs(1, { shape: [N, nb * bs], elem: qElem }, 'B');
  const scales = b.reshape(cx.input(2), [N, nb]);
  let zp: Ssa;
  if (cx.has(3)) {
    const z = cx.constant(3, 'zero_points');
    if (z.dtype !== DataType.UINT8) cx.fail('MatMulNBits zero points of the type of A are not supported (uint8 packed ones are)');
    const perRow = z.elementCount / N;
    const packed = cx.storedAs(3, { shape: [N, bits === 4 ? perRow * 2 : perRow], elem: qElem }, 'zero_points');
    zp = b.convert(b.slice(packed, [0, 0], [N, nb], [1, 1]), 'f32');
  } else zp = b.splat(2 ** (bits - 1), 'f32', [N, nb]);
  const expand = (v: Ssa) => b.reshape(b.broadcastInDim(v, [0, 1], [N, nb, bs]), [N, nb * bs]);
  const scalesF = b.convert(scales, 'f32');
  let w = b.binary('multiply', b.binary('subtract', b.convert(q, 'f32'), expand(zp)), expand(scalesF));
  if (nb * bs !== K) w = b.slice(w, [0, 0], [N, K], [1, 1]);
  const a = cx.input(0);
  const elem = a.type.elem;
  w = b.convert(w, elem);
  const ra = a.type.shape.length;
  let y = b.dotGeneral(a, w, { lhsBatching: [], rhsBatching: [], lhsContracting: [ra - 1], rhsContracting: [1] }, elem, cx.precision);
  if (cx.has(5)) y = b.binary('add', y, b.broadcastTo(cx.input(5), y.type.shape));
  return [y];
});
entry('DequantizeLinear', '(convert(x) - convert(zero_point)) * scale; per-tensor, per-axis and blocked (opset 21) scales broadcast with broadcast_in_dim', (cx) => {
  const b = cx.b;
  const x = cx.stored(0);
  const scale = cx.input(1);
  const shape = x.type.shape;
  const r = shape.length;
  const outElem = resultElem(cx, scale.type.elem);
  const blockSize = cx.attrInt('block_size', 0);
  const spread = (v: Ssa): Ssa => {
    const vs = v.type.shape;
    if (count(vs) === 1) return b.broadcastInDim(b.reshape(v, []), [], shape);
    if (blockSize <= 0) {
      const axis = cx.axis(cx.attrInt('axis', 1), r);
      if (vs.length !== 1 || vs[0] !== shape[axis]) cx.fail(`per-axis scale of shape [${vs.join(', ')}] does not match axis ${axis} of [${shape.join(', ')}]`);
      return b.broadcastInDim(v, [axis], shape);
    }
    const axis = cx.axis(cx.attrInt('axis', 1), r);
    const nb = Math.ceil(shape[axis]! / blockSize);
    if (vs.length !== r || vs[axis] !== nb || vs.some((d, i) => i !== axis && d !== shape[i])) cx.fail(`blocked scale of shape [${vs.join(', ')}] does not match [${shape.join(', ')}] with block_size ${blockSize} on axis ${axis}`);
    const wide = [...shape.slice(0, axis), nb, blockSize, ...shape.slice(axis + 1)];
    const dims = vs.map((_, i) => (i <= axis ? i : i + 1));
    let y = b.reshape(b.broadcastInDim(v, dims, wide), [...shape.slice(0, axis), nb * blockSize, ...shape.slice(axis + 1)]);
    if (nb * blockSize !== shape[axis]) y = b.slice(y, shape.map(() => 0), shape, shape.map(() => 1));
    return y;
  };
  if (x.type.elem === 'i32' && cx.has(2)) cx.fail('int32 DequantizeLinear takes no zero point');
  if (!['i4', 'ui4', 'i8', 'ui8', 'i32'].includes(x.type.elem)) cx.fail(`DequantizeLinear of ${x.type.elem} is not supported (int4/uint4/int8/uint8/int32 are)`);
  let y = b.convert(x, 'f32');
  if (cx.has(2)) y = b.binary('subtract', y, spread(b.convert(cx.stored(2), 'f32')));
  y = b.binary('multiply', y, spread(toF32(b, scale)));
  return [b.convert(y, outElem)];
});

// Convolution and pooling.
entry('Conv', 'convolution ([b, f, 0, 1]x[o, i, 0, 1]->[b, f, 0, 1]), pads/auto_pad, groups, bias via broadcast_in_dim', (cx) => {
  const b = cx.b;
  const x0 = cx.input(0);
  const xl = cx.lowType && x0.type.elem === 'f32' ? b.convert(x0, cx.lowType) : x0;
  const w = cx.matmulOperand(1);
  const wl = cx.lowType && w.type.elem === 'f32' ? b.convert(w, cx.lowType) : w;
  const s = x0.type.shape.length - 2;
  if (s < 1) cx.fail('Conv needs at least one spatial dimension');
  const kernel = wl.type.shape.slice(2);
  const strides = cx.attrInts('strides') ?? new Array(s).fill(1);
  const dilations = cx.attrInts('dilations') ?? new Array(s).fill(1);
  const padding = spatialPads(cx, x0.type.shape.slice(2), kernel, strides, dilations);
  let y = b.convolution(xl, wl, { strides, padding, lhsDilation: new Array(s).fill(1), rhsDilation: dilations, featureGroupCount: cx.attrInt('group', 1), precision: cx.precision });
  y = b.convert(y, x0.type.elem);
  if (cx.has(2)) y = b.binary('add', y, b.broadcastInDim(cx.input(2), [1], y.type.shape));
  return [y];
});
entry('MaxPool', 'reduce_window maximum with -inf padding (ceil_mode by extra end padding)', (cx) => {
  if (cx.outputUsed(1)) cx.fail('the Indices output of MaxPool is not supported');
  if (cx.attrInt('storage_order', 0) !== 0) cx.fail('MaxPool storage_order 1 is not supported');
  const p = poolSetup(cx);
  const init = cx.b.splat(lowest(p.x.type.elem), p.x.type.elem);
  return [cx.b.reduceWindow(p.x, init, 'maximum', p.window, p.strides, p.padding, p.dilations)];
});
entry('AveragePool', 'reduce_window add, divided by a reduce_window count of the elements (count_include_pad)', (cx) => {
  const b = cx.b;
  const p = poolSetup(cx);
  if (p.dilations.some((d) => d !== 1)) cx.fail('AveragePool with dilations is not supported');
  const x = p.x;
  const zero = b.splat(0, x.type.elem);
  const sum = b.reduceWindow(x, zero, 'add', p.window, p.strides, p.padding);
  // How many elements each window averages: ones over the input (and the explicit pads when they count).
  const includePad = cx.attrInt('count_include_pad', 0) === 1;
  let ones = b.splat(1, x.type.elem, x.type.shape);
  let padding = p.padding;
  if (includePad) {
    ones = b.pad(ones, b.splat(1, x.type.elem), [0, 0, ...p.pads.map((q) => q[0])], [0, 0, ...p.pads.map((q) => q[1])], x.type.shape.map(() => 0));
    padding = p.padding.map(([lo, hi], i) => (i < 2 ? [lo, hi] : [0, hi - p.pads[i - 2]![1]]) as [number, number]);
  }
  const n = b.reduceWindow(ones, zero, 'add', p.window, p.strides, padding);
  return [b.binary('divide', sum, n)];
});
for (const [op, body] of [['GlobalAveragePool', 'add'], ['GlobalMaxPool', 'maximum']] as const) {
  entry(op, `reduce ${body} over the spatial dims, reshape to [N, C, 1, ...]`, (cx) => {
    const x = cx.input(0);
    const shape = x.type.shape;
    const axes = shape.map((_, i) => i).filter((i) => i >= 2);
    let y = reduceAxes(cx.b, x, axes, body);
    if (body === 'add') y = cx.b.binary('divide', y, splatLike(cx.b, count(axes.map((a) => shape[a]!)), y));
    return [cx.b.reshape(y, shape.map((d, i) => (i < 2 ? d : 1)))];
  });
}

// Normalizations (float32 compute).
entry('BatchNormalization', 'inference: (x - mean) * scale * rsqrt(var + eps) + bias, per channel via broadcast_in_dim', (cx) => {
  const b = cx.b;
  if (cx.attrInt('training_mode', 0) !== 0) cx.fail('BatchNormalization in training mode is not supported');
  if ([1, 2, 3, 4].some((i) => cx.outputUsed(i))) cx.fail('the running statistics outputs of BatchNormalization are not supported');
  const x0 = cx.input(0);
  const x = toF32(b, x0);
  const [scale, bias, mean, variance] = [1, 2, 3, 4].map((i) => toF32(b, cx.input(i)));
  const eps = cx.attrFloat('epsilon', 1e-5);
  const factor = b.binary('multiply', scale!, b.unary('rsqrt', b.binary('add', variance!, splatLike(b, eps, variance!))));
  const per = (v: Ssa) => b.broadcastInDim(v, [1], x.type.shape);
  const y = b.binary('add', b.binary('multiply', b.binary('subtract', x, per(mean!)), per(factor)), per(bias!));
  return [b.convert(y, x0.type.elem)];
});
entry('LayerNormalization', 'reduce add for mean and variance over [axis..], rsqrt, scale and bias broadcast; Mean/InvStdDev outputs kept-dims', (cx) => {
  const b = cx.b;
  const x0 = cx.input(0);
  const x = toF32(b, x0);
  const shape = x.type.shape;
  const r = shape.length;
  const axis = cx.axis(cx.attrInt('axis', -1), r);
  const axes = shape.map((_, i) => i).filter((i) => i >= axis);
  const n = count(axes.map((a) => shape[a]!));
  const mean = b.binary('divide', reduceAxes(b, x, axes, 'add'), b.splat(n, 'f32', shape.slice(0, axis)));
  const d = b.binary('subtract', x, expandBack(b, mean, shape, axes));
  const variance = b.binary('divide', reduceAxes(b, b.binary('multiply', d, d), axes, 'add'), b.splat(n, 'f32', shape.slice(0, axis)));
  const inv = b.unary('rsqrt', b.binary('add', variance, b.splat(cx.attrFloat('epsilon', 1e-5), 'f32', variance.type.shape)));
  let y = b.binary('multiply', d, expandBack(b, inv, shape, axes));
  y = b.binary('multiply', y, b.broadcastTo(toF32(b, cx.input(1)), shape));
  if (cx.has(2)) y = b.binary('add', y, b.broadcastTo(toF32(b, cx.input(2)), shape));
  const kept = shape.map((d, i) => (i < axis ? d : 1));
  return [b.convert(y, x0.type.elem), cx.outputUsed(1) ? b.reshape(mean, kept) : undefined, cx.outputUsed(2) ? b.reshape(inv, kept) : undefined];
});
entry(['RMSNormalization', 'com.microsoft::SimplifiedLayerNormalization'], 'x * rsqrt(mean(x^2) + eps) * scale over [axis..]', (cx) => {
  const b = cx.b;
  if (cx.outputUsed(1) || cx.outputUsed(2)) cx.fail('only the normalized output is supported');
  const x0 = cx.input(0);
  const x = toF32(b, x0);
  const shape = x.type.shape;
  const axis = cx.axis(cx.attrInt('axis', -1), shape.length);
  const axes = shape.map((_, i) => i).filter((i) => i >= axis);
  const n = count(axes.map((a) => shape[a]!));
  const ms = b.binary('divide', reduceAxes(b, b.binary('multiply', x, x), axes, 'add'), b.splat(n, 'f32', shape.slice(0, axis)));
  const inv = b.unary('rsqrt', b.binary('add', ms, b.splat(cx.attrFloat('epsilon', 1e-5), 'f32', ms.type.shape)));
  const y = b.binary('multiply', b.binary('multiply', x, expandBack(b, inv, shape, axes)), b.broadcastTo(toF32(b, cx.input(1)), shape));
  return [b.convert(y, x0.type.elem)];
});
entry(['Softmax', 'LogSoftmax'], 'reduce maximum, subtract, exponential, reduce add, divide (log: subtract log); axis semantics of the opset', (cx) => {
  const b = cx.b;
  const x0 = cx.input(0);
  requireFloat(cx, x0);
  const x = toF32(b, x0);
  const shape = x.type.shape;
  const r = shape.length;
  // Before opset 13 the input is treated as 2-d: [d0 * ... * d(axis-1), d(axis) * ... ].
  const axis = cx.axis(cx.attrInt('axis', cx.opset >= 13 ? -1 : 1), r);
  const axes = cx.opset >= 13 ? [axis] : shape.map((_, i) => i).filter((i) => i >= axis);
  const m = expandBack(b, reduceAxes(b, x, axes, 'maximum'), shape, axes);
  const shifted = b.binary('subtract', x, m);
  const e = b.unary('exponential', shifted);
  const sum = expandBack(b, reduceAxes(b, e, axes, 'add'), shape, axes);
  const y = cx.node.opType === 'Softmax' ? b.binary('divide', e, sum) : b.binary('subtract', shifted, b.unary('log', sum));
  return [b.convert(y, x0.type.elem)];
});
const REDUCE: Record<string, { body: ReduceBody; mean?: boolean; since: number }> = {
  ReduceSum: { body: 'add', since: 13 },
  ReduceMean: { body: 'add', mean: true, since: 18 },
  ReduceMax: { body: 'maximum', since: 18 },
  ReduceMin: { body: 'minimum', since: 18 },
  ReduceProd: { body: 'multiply', since: 18 },
};
for (const [op, { body, mean, since }] of Object.entries(REDUCE)) {
  entry(op, `reduce ${body}${mean ? ', divide by the count' : ''}; keepdims by reshape`, (cx) => {
    const b = cx.b;
    const x = cx.input(0);
    const shape = x.type.shape;
    const r = shape.length;
    let axes = axesOf(cx, 1, since);
    if (!axes || axes.length === 0) {
      if (cx.attrInt('noop_with_empty_axes', 0)) return [x];
      axes = shape.map((_, i) => i);
    }
    const norm = [...new Set(axes.map((a) => cx.axis(a, r)))].sort((p, q) => p - q);
    let y = reduceAxes(b, x, norm, body);
    if (mean) y = b.binary('divide', y, splatLike(b, count(norm.map((a) => shape[a]!)), y));
    if (cx.attrInt('keepdims', 1)) y = b.reshape(y, shape.map((d, i) => (norm.includes(i) ? 1 : d)));
    return [y];
  });
}

// Data movement.
entry('Reshape', 'reshape (0 copies a dimension unless allowzero, -1 is inferred)', (cx) => {
  const x = cx.input(0);
  const spec = cx.constInts(1, 'shape');
  const allowZero = cx.attrInt('allowzero', 0) === 1;
  const shape = spec.map((d, i) => (d === 0 && !allowZero ? x.type.shape[i]! : d));
  const infer = shape.indexOf(-1);
  if (infer >= 0) {
    const rest = shape.reduce((a, d, i) => (i === infer ? a : a * d), 1);
    shape[infer] = rest === 0 ? 0 : count(x.type.shape) / rest;
  }
  if (count(shape) !== count(x.type.shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) cx.fail(`cannot reshape [${x.type.shape.join(', ')}] to [${spec.join(', ')}]`);
  return [cx.b.reshape(x, shape)];
});
entry('Flatten', 'reshape to [prod(d[:axis]), prod(d[axis:])]', (cx) => {
  const x = cx.input(0);
  const s = x.type.shape;
  let axis = cx.attrInt('axis', 1);
  if (axis < 0) axis += s.length;
  return [cx.b.reshape(x, [count(s.slice(0, axis)), count(s.slice(axis))])];
});
entry('Squeeze', 'reshape without the size-1 axes', (cx) => {
  const x = cx.input(0);
  const s = x.type.shape;
  const axes = (axesOf(cx, 1, 13) ?? s.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0)).map((a) => cx.axis(a, s.length));
  for (const a of axes) if (s[a] !== 1) cx.fail(`cannot squeeze axis ${a} of size ${s[a]}`);
  return [cx.b.reshape(x, s.filter((_, i) => !axes.includes(i)))];
});
entry('Unsqueeze', 'reshape with size-1 axes inserted', (cx) => {
  const x = cx.input(0);
  const s = x.type.shape;
  const raw = axesOf(cx, 1, 13);
  if (!raw) return cx.fail('Unsqueeze needs axes');
  const r = s.length + raw.length;
  const axes = raw.map((a) => cx.axis(a, r));
  const out: number[] = [];
  let k = 0;
  for (let i = 0; i < r; i++) out.push(axes.includes(i) ? 1 : s[k++]!);
  return [cx.b.reshape(x, out)];
});
entry('Transpose', 'transpose (default: reversed dims)', (cx) => {
  const x = cx.input(0);
  const perm = cx.attrInts('perm') ?? x.type.shape.map((_, i) => x.type.shape.length - 1 - i);
  return [cx.b.transpose(x, perm)];
});
entry('Concat', 'concatenate', (cx) => {
  const xs = cx.node.inputs.map((_, i) => cx.input(i));
  const axis = cx.axis(cx.attrInt('axis', 0), xs[0]!.type.shape.length);
  return [cx.b.concatenate(xs, axis)];
});
entry('Split', 'slice per output (split sizes from the input, attribute, or num_outputs)', (cx) => {
  const x = cx.input(0);
  const s = x.type.shape;
  const axis = cx.axis(cx.attrInt('axis', 0), s.length);
  const outputs = cx.node.outputs.length;
  let sizes = cx.opset >= 13 ? (cx.has(1) ? cx.constInts(1, 'split') : undefined) : cx.attrInts('split');
  if (!sizes) {
    const n = cx.opset >= 18 && cx.node.attribute('num_outputs') ? cx.attrInt('num_outputs', outputs) : outputs;
    const chunk = Math.ceil(s[axis]! / n);
    sizes = Array.from({ length: n }, (_, i) => Math.max(Math.min(chunk, s[axis]! - i * chunk), 0));
  }
  if (sizes.reduce((a, d) => a + d, 0) !== s[axis]) cx.fail(`split sizes [${sizes.join(', ')}] do not add up to ${s[axis]}`);
  return splitAlong(cx.b, x, axis, sizes);
});
entry('Slice', 'reverse (negative steps), slice with clamped starts/ends and strides', (cx) => {
  const x = cx.input(0);
  const shape = x.type.shape;
  const r = shape.length;
  let starts: number[];
  let ends: number[];
  let axes: number[] | undefined;
  let steps: number[] | undefined;
  if (cx.opset >= 10) {
    starts = cx.constInts(1, 'starts');
    ends = cx.constInts(2, 'ends');
    axes = cx.has(3) ? cx.constInts(3, 'axes') : undefined;
    steps = cx.has(4) ? cx.constInts(4, 'steps') : undefined;
  } else {
    starts = cx.attrInts('starts') ?? [];
    ends = cx.attrInts('ends') ?? [];
    axes = cx.attrInts('axes');
  }
  const start = shape.map(() => 0);
  const limit = [...shape];
  const stride = shape.map(() => 1);
  const reversed: number[] = [];
  (axes ?? starts.map((_, i) => i)).forEach((a0, j) => {
    const a = cx.axis(a0, r);
    const dim = shape[a]!;
    const step = steps?.[j] ?? 1;
    if (step === 0) cx.fail('a Slice step is 0');
    let st = starts[j]!;
    let en = ends[j]!;
    if (st < 0) st += dim;
    if (en < 0) en += dim;
    if (step > 0) {
      st = Math.min(Math.max(st, 0), dim);
      en = Math.min(Math.max(en, 0), dim);
      start[a] = st;
      limit[a] = Math.max(en, st);
      stride[a] = step;
    } else {
      st = Math.min(Math.max(st, 0), dim - 1);
      en = Math.min(Math.max(en, -1), dim - 1);
      // Elements st, st+step, ... > en; on the reversed axis that is dim-1-st upwards, below dim-1-en.
      reversed.push(a);
      start[a] = dim - 1 - st;
      limit[a] = Math.max(dim - 1 - en, start[a]!);
      stride[a] = -step;
    }
  });
  const y = cx.b.reverse(x, reversed);
  return [cx.b.slice(y, start, limit, stride)];
});
entry('Expand', 'broadcast_in_dim to the broadcast of the input shape and the shape input', (cx) => {
  const x = cx.input(0);
  const shape = broadcastShapes(cx, x.type.shape, cx.constInts(1, 'shape'));
  return [cx.b.broadcastTo(x, shape)];
});
entry('Tile', 'broadcast_in_dim to [r0, d0, r1, d1, ...], reshape', (cx) => {
  const x = cx.input(0);
  const s = x.type.shape;
  const reps = cx.constInts(1, 'repeats');
  if (reps.length !== s.length) cx.fail(`repeats has ${reps.length} entries for rank ${s.length}`);
  const wide = s.flatMap((d, i) => [reps[i]!, d]);
  const y = cx.b.broadcastInDim(x, s.map((_, i) => 2 * i + 1), wide);
  return [cx.b.reshape(y, s.map((d, i) => d * reps[i]!))];
});
entry('Pad', "pad (mode 'constant'; negative pads crop)", (cx) => {
  const x = cx.input(0);
  const r = x.type.shape.length;
  const mode = cx.attrString('mode', 'constant');
  if (mode !== 'constant') cx.fail(`Pad mode '${mode}' is not supported (constant is)`);
  let pads: number[];
  let value: Ssa;
  if (cx.opset >= 11) {
    pads = cx.constInts(1, 'pads');
    value = cx.has(2) ? cx.b.reshape(cx.input(2), []) : cx.b.splat(0, x.type.elem);
    if (cx.has(3)) {
      const axes = cx.constInts(3, 'axes').map((a) => cx.axis(a, r));
      const full = new Array<number>(2 * r).fill(0);
      axes.forEach((a, i) => {
        full[a] = pads[i]!;
        full[r + a] = pads[axes.length + i]!;
      });
      pads = full;
    }
  } else {
    pads = cx.attrInts('pads') ?? [];
    value = cx.b.splat(cx.attrFloat('value', 0), x.type.elem);
  }
  if (pads.length !== 2 * r) cx.fail(`pads has ${pads.length} entries for rank ${r}`);
  return [cx.b.pad(x, value, pads.slice(0, r), pads.slice(r), new Array(r).fill(0))];
});
entry('Gather', 'gather (collapsed axis, index_vector_dim = rank(indices)); negative run-time indices wrapped with compare/select', (cx) => {
  const b = cx.b;
  const table = cx.stored(0);
  const shape = table.type.shape;
  const r = shape.length;
  const axis = cx.axis(cx.attrInt('axis', 0), r);
  const dim = shape[axis]!;
  let idx: Ssa;
  if (cx.isConstant(1)) {
    const t = cx.constant(1, 'indices');
    const values = tensorNumbers(t).map((v) => (v < 0 ? v + dim : v));
    idx = b.constant(values, { shape: t.dims, elem: 'i64' });
  } else {
    idx = cx.input(1);
    const zero = splatLike(b, 0, idx);
    idx = b.select(b.compare('LT', idx, zero), b.binary('add', idx, splatLike(b, dim, idx)), idx);
  }
  const q = idx.type.shape.length;
  const offsetDims = [...Array.from({ length: axis }, (_, i) => i), ...Array.from({ length: r - axis - 1 }, (_, i) => axis + q + i)];
  const y = b.gather(table, idx, { offsetDims, collapsedSliceDims: [axis], startIndexMap: [axis], indexVectorDim: q, sliceSizes: shape.map((d, i) => (i === axis ? 1 : d)) });
  return [b.convert(y, cx.inputElem(0))];
});
entry('GatherElements', 'gather with a full index vector per element: iota for the other axes, the indices on the gather axis', (cx) => {
  const b = cx.b;
  const data = cx.input(0);
  const r = data.type.shape.length;
  const axis = cx.axis(cx.attrInt('axis', 0), r);
  let idx = b.convert(cx.input(1), 'i64');
  const ishape = idx.type.shape;
  if (ishape.length !== r) cx.fail('GatherElements indices must have the rank of the data');
  idx = b.select(b.compare('LT', idx, splatLike(b, 0, idx)), b.binary('add', idx, splatLike(b, data.type.shape[axis]!, idx)), idx);
  const parts = Array.from({ length: r }, (_, d) => b.reshape(d === axis ? idx : b.iota(d, { shape: ishape, elem: 'i64' }), [...ishape, 1]));
  const full = b.concatenate(parts, r);
  const all = Array.from({ length: r }, (_, i) => i);
  return [b.gather(data, full, { offsetDims: [], collapsedSliceDims: all, startIndexMap: all, indexVectorDim: r, sliceSizes: all.map(() => 1) })];
});

// Shapes and constants (static once input shapes are fixed).
entry('Shape', 'a constant: the static shape (start/end)', (cx) => {
  const s = cx.input(0).type.shape;
  const r = s.length;
  const norm = (v: number) => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
  const dims = s.slice(norm(cx.attrInt('start', 0)), norm(cx.attrInt('end', r)));
  return [cx.b.constant(dims, { shape: [dims.length], elem: 'i64' })];
});
entry('Size', 'a constant: the element count', (cx) => [cx.b.constant([count(cx.input(0).type.shape)], { shape: [], elem: 'i64' })]);
entry('ConstantOfShape', 'a splat constant of the (constant) shape', (cx) => {
  const shape = cx.constInts(0, 'shape');
  const v = cx.attrTensor('value');
  const elem = v ? elemOfOnnx(v.dtype) : 'f32';
  if (!elem) return cx.fail('ConstantOfShape value has no StableHLO type here');
  return [cx.b.splat(v ? tensorNumbers(v)[0]! : 0, elem, shape)];
});
entry('Constant', 'a dense literal, or a weight argument when large', (cx) => {
  const t = cx.attrTensor('value');
  if (t) return [cx.lowering.tensorValue(t, undefined, cx.node.outputs[0]?.name || t.name)];
  const b = cx.b;
  const a = cx.node.attributes[0];
  if (a?.type === 'float') return [b.splat(a.value, 'f32')];
  if (a?.type === 'int') return [b.constant([a.value], { shape: [], elem: 'i64' })];
  if (a?.type === 'floats') return [b.constant(a.value, { shape: [a.value.length], elem: 'f32' })];
  if (a?.type === 'ints') return [b.constant(a.value, { shape: [a.value.length], elem: 'i64' })];
  return cx.fail(`Constant with attribute ${a?.name ?? '(none)'} (${a?.type ?? '-'}) is not supported`);
});
entry('Range', 'iota * delta + start (constant start, limit, delta)', (cx) => {
  const [start, limit, delta] = [0, 1, 2].map((i) => tensorNumbers(cx.constant(i, ['start', 'limit', 'delta'][i]!))[0]!);
  const elem = cx.input(0).type.elem;
  const n = Math.max(Math.ceil((limit! - start!) / delta!), 0);
  const b = cx.b;
  const i = b.iota(0, { shape: [n], elem });
  return [b.binary('add', b.binary('multiply', i, b.splat(delta!, elem, [n])), b.splat(start!, elem, [n]))];
});

export const LOWERINGS: Readonly<Record<string, LoweringRule>> = table;

/** The table as data (for the README and the legality report): op -> summary. */
export function loweringTable(): Array<{ op: string; summary: string }> {
  return Object.entries(table)
    .map(([op, r]) => ({ op, summary: r.summary }))
    .sort((a, b) => a.op.localeCompare(b.op));
}
