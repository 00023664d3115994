/**
 * silu: x * Sigmoid(x) (Llama's SiLU, either operand order) becomes com.microsoft QuickGelu with
 * alpha 1, and x * Sigmoid(alpha * x) QuickGelu with that alpha. Near-misses: a computed alpha,
 * float16 on cpu. Random instances keep their outputs on onnxruntime within 1e-4 relative.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { ModelBuilder } from '../models/builder.js';
import { copy, expectSameOutputs, floatInput, fuse, inferShapes, ops } from './fusion-helpers.js';

interface SiluCase {
  dims: number[];
  alpha: number | 'input' | undefined;
  swap: boolean;
  seed: number;
}

function build(p: SiluCase) {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, p.dims);
  const alpha = p.alpha === 'input' ? b.input('alpha', DataType.FLOAT, []) : p.alpha === undefined ? undefined : b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(p.alpha));
  const s = b.op('Sigmoid', [alpha ? b.op('Mul', [alpha, x]) : x]);
  b.output(p.swap ? b.op('Mul', [s, x], {}, { name: '/mlp/act_fn/Mul' }) : b.op('Mul', [x, s], {}, { name: '/mlp/act_fn/Mul' }));
  return inferShapes(b.build());
}

describe('fusion silu', () => {
  it('fuses SiLU into QuickGelu(alpha=1) and x*sigmoid(1.702x) into QuickGelu(alpha=1.702)', async () => {
    for (const alpha of [undefined, 1.702]) {
      for (const swap of [false, true]) {
        const p = { dims: [2, 3, 8], alpha, swap, seed: 3 };
        const m = build(p);
        const original = copy(m);
        expect(fuse(m).applied.map((a) => a.fusion)).toEqual(['silu']);
        expect(ops(m)).toEqual({ 'com.microsoft::QuickGelu': 1 });
        expect(m.graph.nodes[0]!.attrFloat('alpha', 0)).toBeCloseTo(alpha ?? 1, 6);
        await expectSameOutputs(original, m, { x: floatInput('x', p.dims, p.seed, 4) });
      }
    }
  });

  it('leaves a computed alpha alone, saying why', () => {
    const pass = fuse(build({ dims: [4], alpha: 'input', swap: false, seed: 1 }));
    expect(pass.applied).toEqual([]);
    expect(pass.nearMisses.map((n) => n.reason)).toEqual(["alpha is not a constant (graph input 'alpha')"]);
  });

  it('random instances fuse and keep their outputs (onnxruntime, 1e-4 relative)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          dims: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
          alpha: fc.option(fc.double({ min: 0.25, max: 3, noNaN: true }), { nil: undefined }),
          swap: fc.boolean(),
          seed: fc.nat(1000),
        }),
        async (p) => {
          const m = build(p);
          const original = copy(m);
          expect(fuse(m).applied.length).toBe(1);
          await expectSameOutputs(original, m, { x: floatInput('x', p.dims, p.seed, 4) });
        },
      ),
      { numRuns: 25 },
    );
  });
});
