/**
 * matmul-add-gemm: Add(MatMul(A, B), C) with 2-D A and B and C broadcasting to the product in
 * Gemm's direction becomes Gemm(A, B, C). Near-misses: a 3-D A (BERT's linear layers), a bias
 * that broadcasts the product to a bigger shape. Random shapes and bias forms keep their outputs
 * on onnxruntime within 1e-4 relative.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { ModelBuilder } from '../models/builder.js';
import { copy, expectSameOutputs, floatInput, floats, fuse, inferShapes, ops } from './fusion-helpers.js';

interface GemmCase {
  m: number;
  k: number;
  n: number;
  bias: 'n' | '1n' | 'mn' | 'm1' | 'scalar';
  biasFirst: boolean;
  aDims?: number[];
  seed: number;
}

function build(p: GemmCase) {
  const b = new ModelBuilder({ opset: 17 });
  const a = b.input('a', DataType.FLOAT, p.aDims ?? [p.m, p.k]);
  const w = b.initializer('w', DataType.FLOAT, [p.k, p.n], floats(p.k * p.n, p.seed));
  const dims = { n: [p.n], '1n': [1, p.n], mn: [p.m, p.n], m1: [p.m, 1], scalar: [] as number[] }[p.bias];
  const c = b.initializer('c', DataType.FLOAT, dims, floats(dims.reduce((s, d) => s * d, 1), p.seed + 1));
  const mm = b.op('MatMul', [a, w], {}, { name: '/fc/MatMul' });
  b.output(b.op('Add', p.biasFirst ? [c, mm] : [mm, c], {}, { name: '/fc/Add' }));
  return inferShapes(b.build());
}

describe('fusion matmul-add-gemm', () => {
  it('makes a Gemm of a 2-D MatMul and its bias, in either operand order', async () => {
    for (const biasFirst of [false, true]) {
      const p: GemmCase = { m: 3, k: 4, n: 5, bias: 'n', biasFirst, seed: 2 };
      const m = build(p);
      const original = copy(m);
      expect(fuse(m).applied.map((a) => a.fusion)).toEqual(['matmul-add-gemm']);
      expect(ops(m)).toEqual({ Gemm: 1 });
      await expectSameOutputs(original, m, { a: floatInput('a', [3, 4], 5) });
    }
  });

  it('leaves a 3-D A and a bias that grows the product alone, saying why', () => {
    const threeD = fuse(build({ m: 3, k: 4, n: 5, bias: 'n', biasFirst: true, aDims: [2, 3, 4], seed: 1 }));
    expect(threeD.nearMisses.map((n) => [n.at, n.reason])).toEqual([['/fc/Add', 'MatMul input A is 3-D (Gemm takes 2-D A only)']]);
    const b = new ModelBuilder({ opset: 17 });
    const a = b.input('a', DataType.FLOAT, [3, 4]);
    const mm = b.op('MatMul', [a, b.initializer('w', DataType.FLOAT, [4, 5], floats(20, 1))]);
    b.output(b.op('Add', [mm, b.initializer('c', DataType.FLOAT, [2, 1, 5], floats(10, 2))]));
    const grows = fuse(inferShapes(b.build()));
    expect(grows.nearMisses.map((n) => n.reason)).toEqual(["bias [2, 1, 5] does not broadcast to the product [3, 5] in Gemm's direction"]);
  });

  it('random shapes and bias forms fuse and keep their outputs (onnxruntime, 1e-4 relative)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          m: fc.integer({ min: 1, max: 7 }),
          k: fc.integer({ min: 1, max: 7 }),
          n: fc.integer({ min: 1, max: 7 }),
          bias: fc.constantFrom('n' as const, '1n' as const, 'mn' as const, 'm1' as const, 'scalar' as const),
          biasFirst: fc.boolean(),
          seed: fc.nat(1000),
        }),
        async (p) => {
          const m = build(p);
          const original = copy(m);
          expect(fuse(m).applied.length).toBe(1);
          await expectSameOutputs(original, m, { a: floatInput('a', [p.m, p.k], p.seed) });
        },
      ),
      { numRuns: 25 },
    );
  });
});
