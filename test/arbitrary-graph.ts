/**
 * fast-check arbitrary for random *computable* graphs: float32 elementwise and shape ops over one
 * graph input and random constant initializers, with shapes tracked so every graph is valid.
 * Some subexpressions depend only on constants (foldable), some on the input, some mix; shape
 * arithmetic (Shape -> Reshape/Expand) and fp16 round trips are included because exporters emit
 * them. Used by the property tests of every pass: optimized and original models must compute the
 * same outputs on onnxruntime.
 */
import fc from 'fast-check';
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { tensorType } from '../src/ir/types.js';
import { ModelBuilder } from '../models/builder.js';
import { mulberry32 as rng } from './rng.js';

const OPS = [
  'Add', 'Sub', 'Mul', 'SafeDiv', 'Max', 'Min', 'Neg', 'Abs', 'Relu', 'Sigmoid', 'Tanh', 'Identity', 'SqrtAbs',
  'Transpose', 'ReshapeFlat', 'ReshapeLike', 'Unsqueeze', 'Squeeze', 'ReduceSum', 'Concat', 'Slice', 'MatMul',
  'CastHalf', 'Where', 'ExpandLike', 'Dropout', 'CastSame', 'DupAdd',
] as const;
type OpName = (typeof OPS)[number];

export interface GraphRecipe {
  inputShape: number[];
  constants: Array<{ shapeKind: number; seed: number }>;
  steps: Array<{ op: OpName; a: number; b: number; p: number }>;
  outputs: number;
}

export const graphRecipe: fc.Arbitrary<GraphRecipe> = fc.record({
  inputShape: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),
  constants: fc.array(fc.record({ shapeKind: fc.nat(3), seed: fc.nat() }), { minLength: 1, maxLength: 4 }),
  steps: fc.array(fc.record({ op: fc.constantFrom(...OPS), a: fc.nat(), b: fc.nat(), p: fc.nat() }), { minLength: 1, maxLength: 14 }),
  outputs: fc.integer({ min: 1, max: 3 }),
});


export function randomFloats(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => Math.fround(r() * 4 - 2));
}

interface Item {
  v: Value;
  shape: number[];
}

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

export function buildRecipe(recipe: GraphRecipe, opset = 17): Model {
  const b = new ModelBuilder({ opset });
  const items: Item[] = [];
  const x = b.input('x', DataType.FLOAT, recipe.inputShape);
  items.push({ v: x, shape: recipe.inputShape });
  recipe.constants.forEach((c, i) => {
    const full = recipe.inputShape;
    const shape = [full, full.slice(1), [], [full[full.length - 1]!]][c.shapeKind]!;
    const data = randomFloats(prod(shape), c.seed);
    items.push({ v: b.initializer(`c${i}`, DataType.FLOAT, shape, data), shape });
  });
  const i64 = (vals: number[]) => b.initializer(undefined, DataType.INT64, [vals.length], BigInt64Array.from(vals, BigInt));
  const pick = (k: number) => items[k % items.length]!;
  const broadcast = (s: number[], t: number[]): number[] | undefined => {
    const r = Math.max(s.length, t.length);
    const out: number[] = [];
    for (let i = 0; i < r; i++) {
      const a = s[s.length - r + i] ?? 1;
      const c = t[t.length - r + i] ?? 1;
      if (a !== c && a !== 1 && c !== 1) return undefined;
      out.push(Math.max(a, c));
    }
    return out;
  };
  for (const step of recipe.steps) {
    const A = pick(step.a);
    const B = pick(step.b);
    const push = (v: Value, shape: number[]) => items.push({ v, shape });
    switch (step.op) {
      case 'Add':
      case 'Sub':
      case 'Mul':
      case 'Max':
      case 'Min': {
        const s = broadcast(A.shape, B.shape);
        if (s) push(b.op(step.op, [A.v, B.v]), s);
        break;
      }
      case 'SafeDiv': {
        // a / (|b| + 1): never divides by zero.
        const s = broadcast(A.shape, B.shape);
        if (!s) break;
        const one = b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(1));
        push(b.op('Div', [A.v, b.op('Add', [b.op('Abs', [B.v]), one])]), s);
        break;
      }
      case 'Neg':
      case 'Abs':
      case 'Relu':
      case 'Sigmoid':
      case 'Tanh':
      case 'Identity':
        push(b.op(step.op, [A.v]), A.shape);
        break;
      case 'SqrtAbs':
        push(b.op('Sqrt', [b.op('Abs', [A.v])]), A.shape);
        break;
      case 'Transpose': {
        const perm = A.shape.map((_, i) => i);
        for (let i = perm.length - 1; i > 0; i--) {
          const j = (step.p + i * 7) % (i + 1);
          [perm[i], perm[j]] = [perm[j]!, perm[i]!];
        }
        push(b.op('Transpose', [A.v], { perm }), perm.map((i) => A.shape[i]!));
        break;
      }
      case 'ReshapeFlat':
        push(b.op('Reshape', [A.v, i64([-1])]), [prod(A.shape)]);
        break;
      case 'ReshapeLike': {
        // Reshape(A, Shape(B)) when the element counts agree: shape arithmetic exporters emit.
        if (prod(A.shape) !== prod(B.shape) || B.shape.length === 0) break;
        push(b.op('Reshape', [A.v, b.op('Shape', [B.v])]), B.shape);
        break;
      }
      case 'Unsqueeze':
        if (A.shape.length >= 4) break;
        push(b.op('Unsqueeze', [A.v, i64([0])]), [1, ...A.shape]);
        break;
      case 'Squeeze': {
        const axis = A.shape.indexOf(1);
        if (axis < 0) break;
        push(b.op('Squeeze', [A.v, i64([axis])]), A.shape.filter((_, i) => i !== axis));
        break;
      }
      case 'ReduceSum': {
        if (A.shape.length === 0) break;
        const axis = step.p % A.shape.length;
        push(b.op('ReduceSum', [A.v, i64([axis])], { keepdims: 1 }), A.shape.map((d, i) => (i === axis ? 1 : d)));
        break;
      }
      case 'Concat': {
        if (A.shape.length === 0 || A.shape.join() !== B.shape.join()) break;
        push(b.op('Concat', [A.v, B.v], { axis: 0 }), [A.shape[0]! * 2, ...A.shape.slice(1)]);
        break;
      }
      case 'Slice': {
        if (A.shape.length === 0) break;
        const axis = step.p % A.shape.length;
        const end = Math.max(1, Math.ceil(A.shape[axis]! / 2));
        push(b.op('Slice', [A.v, i64([0]), i64([end]), i64([axis])]), A.shape.map((d, i) => (i === axis ? end : d)));
        break;
      }
      case 'MatMul': {
        if (A.shape.length === 0) break;
        const k = A.shape[A.shape.length - 1]!;
        const n = 1 + (step.p % 3);
        const w = b.initializer(undefined, DataType.FLOAT, [k, n], randomFloats(k * n, step.p));
        push(b.op('MatMul', [A.v, w]), [...A.shape.slice(0, -1), n]);
        break;
      }
      case 'CastHalf':
        push(b.op('Cast', [b.op('Cast', [A.v], { to: DataType.FLOAT16 })], { to: DataType.FLOAT }), A.shape);
        break;
      case 'CastSame':
        push(b.op('Cast', [A.v], { to: DataType.FLOAT }), A.shape);
        break;
      case 'Where': {
        const s = broadcast(A.shape, B.shape);
        if (!s) break;
        push(b.op('Where', [b.op('Greater', [A.v, B.v]), A.v, B.v]), s);
        break;
      }
      case 'ExpandLike': {
        // Expand(A, Shape(B)) when A broadcasts to B's shape.
        const s = broadcast(A.shape, B.shape);
        if (!s || s.join() !== B.shape.join()) break;
        push(b.op('Expand', [A.v, b.op('Shape', [B.v])]), s);
        break;
      }
      case 'Dropout':
        push(b.op('Dropout', [A.v]), A.shape);
        break;
      case 'DupAdd': {
        // The same computation twice: CSE should merge it.
        const s = broadcast(A.shape, B.shape);
        if (!s) break;
        const p = b.op('Add', [A.v, B.v]);
        const q = b.op('Add', [A.v, B.v]);
        push(b.op('Mul', [p, q]), s);
        break;
      }
    }
  }
  // Outputs: the last few computed values (never the bare input or a bare initializer).
  const computed = items.filter((it) => it.v.producer !== null);
  const chosen = computed.slice(-recipe.outputs);
  if (chosen.length === 0) {
    const y = b.op('Identity', [x]);
    chosen.push({ v: y, shape: recipe.inputShape });
  }
  const used = new Set<Value>();
  for (const it of chosen) {
    let v = it.v;
    if (used.has(v)) v = b.op('Identity', [v]);
    used.add(v);
    v.type = tensorType(DataType.FLOAT, it.shape);
    b.graph.outputs.push(v);
  }
  return b.build();
}

/** Random input data for the recipe's single input. */
export function recipeFeeds(recipe: GraphRecipe, seed = 7): Record<string, Tensor> {
  return { x: Tensor.fromTypedArray('x', DataType.FLOAT, recipe.inputShape, randomFloats(prod(recipe.inputShape), seed)) };
}
