/**
 * The exporter forms shared by the LayerNorm and RMSNorm patterns, and the scale/shift handling
 * both rewrites need.
 *
 *   d / sqrt(var + eps) is written as   Div(d, Sqrt(..))                    (hand-written modules)
 *                                       Mul(d, Div(1, Sqrt(..)))            (TorchScript: torch.rsqrt)
 *                                       Mul(d, Reciprocal(Sqrt(..)))        (dynamo: torch.rsqrt)
 *   x^2 is written as                   Pow(x, 2) or Mul(x, x)
 * and the reduction is ReduceMean over the last axis with keepdims=1 (axes an attribute before
 * opset 18, an input from 18 on).
 */
import { DataType, float32ToFloat16Bits } from '../../src/ir/dtype.js';
import type { Value } from '../../src/ir/graph.js';
import { Tensor } from '../../src/ir/tensor.js';
import { constantTensor } from '../constants.js';
import { alt, floatAttr, k, op, type Match, type NodeCheck, type Pattern, type Rewriter } from './engine.js';
import { reducesLastAxisOnly, shape, showShape, type Dim } from './tensors.js';

const lastAxis: NodeCheck = (n) => reducesLastAxisOnly(n);

/** ReduceMean over the last axis (keepdims) of `input`. */
export const meanOverLastAxis = (input: Pattern, name: string): Pattern => op('ReduceMean', [input], { name, extraInputs: true, check: lastAxis });

/** `x` squared. */
export const squared = (x: Pattern): Pattern => alt(op('Pow', [x, k(undefined, 2, 'the exponent')]), op('Mul', [x, x]));

/** `d / sqrt(variance + eps)` in its exporter forms; captures 'eps' and the Sqrt as 'sqrt'. */
export function divideByStd(d: Pattern, variance: Pattern): Pattern {
  const std = op('Sqrt', [op('Add', [variance, k('eps', undefined, 'epsilon')], { commutative: true })], { name: 'sqrt' });
  return alt(
    op('Div', [d, std]),
    op('Mul', [d, op('Div', [k(undefined, 1, 'the numerator of 1/sqrt'), std])], { commutative: true }),
    op('Mul', [d, op('Reciprocal', [std])], { commutative: true }),
  );
}

/** The size of the normalized (last) axis of `x`, when it is a known number. */
export function normalizedSize(x: Value): number | undefined {
  const last = shape(x)?.at(-1);
  return typeof last === 'number' ? last : undefined;
}

/**
 * Check: a scale/shift constant applies along the last axis only (dims all 1 but the last, which
 * is the normalized size, and no more axes than `x`).
 */
export function perLastAxis(capture: string, what: string): (m: Match) => string | undefined {
  return (m) => {
    if (!m.has(capture)) return undefined;
    const x = m.value('x');
    const h = normalizedSize(x);
    if (h === undefined) return 'the size of the normalized axis is unknown';
    const t = constantTensor(m.value(capture))!;
    const r = shape(x)!.length;
    const ok = t.dims.length <= r && t.dims.length >= 1 && t.dims.at(-1) === h && t.dims.slice(0, -1).every((d) => d === 1);
    if (!ok) return `${what} has shape [${t.dims.join(', ')}], expected [${h}] (one value per element of the normalized axis)`;
    return t.dtype === (x.type?.kind === 'tensor' ? x.type.elemType : -1) ? undefined : `${what} has another element type than the input`;
  };
}

/** A 1-D [H] value with the data of the captured scale/shift (the same value when it already is [H]). */
export function asVector(m: Match, r: Rewriter, capture: string): Value {
  const val = m.value(capture);
  const t = constantTensor(val)!;
  if (t.dims.length === 1 && val.initializer) return val;
  return r.constant(`${val.name}_vector`, new Tensor('', t.dtype, [t.elementCount], t.source));
}

/** A constant [n] filled with `x`, in a float element type. */
export function filled(r: Rewriter, base: string, dtype: number, n: number, x: number): Value {
  let t: Tensor;
  if (dtype === DataType.FLOAT16) t = Tensor.fromTypedArray('', DataType.FLOAT16, [n], new Uint16Array(n).fill(float32ToFloat16Bits(x)));
  else if (dtype === DataType.DOUBLE) t = Tensor.fromTypedArray('', DataType.DOUBLE, [n], new Float64Array(n).fill(x));
  else t = Tensor.fromTypedArray('', DataType.FLOAT, [n], new Float32Array(n).fill(x));
  return r.constant(base, t);
}

/**
 * For Add(p, q) feeding a normalization: which operand is the full-shaped input and which the
 * skip, or why neither order is legal. The skip must have the input's shape, or be [1, S, H] /
 * [S, H] against a [B, S, H] input (the broadcasts SkipLayerNormalization documents). Dims are
 * compared as shape inference left them: equal numbers or names, or both unknown (dynamic axes
 * the inference could not name; never provably different).
 */
export function skipOperands(p: Value, q: Value, ranks: readonly number[], allowBroadcast: boolean): { input: Value; skip: Value } | string {
  const sp = shape(p);
  const sq = shape(q);
  if (!sp || !sq) return 'the shapes of the residual Add operands are unknown';
  const same = (a: Dim, b: Dim) => (a === null && b === null) || (a !== null && a === b);
  const fits = (input: Dim[], skip: Dim[]) => {
    if (!ranks.includes(input.length)) return false;
    if (skip.length === input.length && skip.every((d, i) => same(d, input[i]!))) return true;
    if (!allowBroadcast || input.length !== 3) return false;
    const tail = input.slice(1);
    if (skip.length === 2) return skip.every((d, i) => same(d, tail[i]!));
    return skip.length === 3 && skip[0] === 1 && skip.slice(1).every((d, i) => same(d, tail[i]!));
  };
  if (fits(sp, sq)) return { input: p, skip: q };
  if (fits(sq, sp)) return { input: q, skip: p };
  return `the residual Add operands ${showShape(sp)} and ${showShape(sq)} are not ${ranks.map((r) => `${r}-D`).join('/')} with equal shapes${allowBroadcast ? ' (or a [1, S, H] / [S, H] skip)' : ''}`;
}

/**
 * Adds a com.microsoft Skip*Normalization node in place of the matched Add + normalization. The
 * residual sum (captured as 'x') is the node's 4th output; it is asked for only when something
 * besides the normalization reads the sum, which then reads that output.
 */
export function addSkipNorm(m: Match, r: Rewriter, opType: string, inputs: Array<Value | null>, epsilon: number): void {
  const sum = m.value('x');
  const needSum = sum.isGraphOutput || sum.uses.some((u) => u.node !== m.root);
  r.requireOpset('com.microsoft', 1);
  const n = r.add(opType, inputs, {
    domain: 'com.microsoft',
    attributes: [floatAttr('epsilon', epsilon)],
    outputs: needSum ? 4 : 1,
    absent: [1, 2],
  });
  r.replace(m.root.outputs[0]!, n.outputs[0]!);
  if (needSum) r.replace(sum, n.outputs[3]!);
}
