/**
 * conv-bn: Conv (+ bias) + BatchNormalization folds into one Conv; near-misses (a computed
 * normalization parameter, a Conv output used elsewhere, training mode) are left alone; random
 * convolutions (groups, kernels, epsilons, statistics) fold and compute the same outputs on
 * onnxruntime within 1e-4 relative (fusion-helpers.ts).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { ModelBuilder } from '../models/builder.js';
import { copy, expectSameOutputs, floatInput, floats, fuse, inferShapes, ops } from './fusion-helpers.js';

interface ConvBn {
  n: number;
  groups: number;
  inPerGroup: number;
  outPerGroup: number;
  k: number;
  bias: boolean;
  eps: number;
  seed: number;
  computedScale?: boolean;
  convUsedElsewhere?: boolean;
}

function build(p: ConvBn) {
  const b = new ModelBuilder({ opset: 17 });
  const c = p.groups * p.inPerGroup;
  const m = p.groups * p.outPerGroup;
  const x = b.input('x', DataType.FLOAT, [p.n, c, 6, 6]);
  const w = b.initializer('w', DataType.FLOAT, [m, p.inPerGroup, p.k, p.k], floats(m * p.inPerGroup * p.k * p.k, p.seed));
  const inputs = [x, w, ...(p.bias ? [b.initializer('b', DataType.FLOAT, [m], floats(m, p.seed + 1))] : [])];
  const conv = b.op('Conv', inputs, { group: p.groups, pads: [1, 1, 1, 1], kernel_shape: [p.k, p.k] }, { name: '/block/conv/Conv' });
  const scale = p.computedScale ? b.op('Abs', [b.input('s', DataType.FLOAT, [m])], {}, { name: '/block/abs' }) : b.initializer('scale', DataType.FLOAT, [m], floats(m, p.seed + 2));
  const shift = b.initializer('shift', DataType.FLOAT, [m], floats(m, p.seed + 3));
  const mean = b.initializer('mean', DataType.FLOAT, [m], floats(m, p.seed + 4));
  const variance = b.initializer('var', DataType.FLOAT, [m], floats(m, p.seed + 5).map((v) => Math.abs(v) + 0.1));
  b.output(b.op('BatchNormalization', [conv, scale, shift, mean, variance], { epsilon: { float: p.eps } }, { name: '/block/bn/BatchNormalization' }));
  if (p.convUsedElsewhere) b.output(b.op('Relu', [conv], {}, { name: '/block/relu' }));
  return inferShapes(b.build());
}

const base: ConvBn = { n: 2, groups: 1, inPerGroup: 3, outPerGroup: 4, k: 3, bias: true, eps: 1e-5, seed: 1 };

describe('fusion conv-bn', () => {
  it('folds Conv + BatchNormalization into one Conv with new weights and bias', async () => {
    for (const bias of [true, false]) {
      const m = build({ ...base, bias });
      const original = copy(m);
      const pass = fuse(m);
      expect(pass.applied.map((a) => a.fusion)).toEqual(['conv-bn']);
      expect(ops(m)).toEqual({ Conv: 1 });
      const conv = m.graph.nodes[0]!;
      expect(conv.inputs.length).toBe(3);
      expect(conv.attrInts('pads')).toEqual([1, 1, 1, 1]);
      await expectSameOutputs(original, m, { x: floatInput('x', [2, 3, 6, 6], 9) });
    }
  });

  it('leaves a computed scale, a Conv output used elsewhere and training mode alone, saying why', () => {
    const computed = build({ ...base, computedScale: true });
    expect(fuse(computed).nearMisses.map((n) => n.reason)).toEqual(["BatchNormalization scale is not a constant (computed by '/block/abs' (Abs))"]);
    const shared = build({ ...base, convUsedElsewhere: true });
    expect(fuse(shared).nearMisses.map((n) => n.reason)).toEqual(["intermediate '/block/conv/Conv' (Conv) is also used by '/block/relu' (Relu)"]);
    const training = build(base);
    training.graph.nodes.find((n) => n.opType === 'BatchNormalization')!.setAttribute('training_mode', { type: 'int', value: 1n });
    const pass = fuse(training);
    expect(pass.applied).toEqual([]);
    expect(pass.nearMisses[0]!.reason).toMatch(/training_mode=1, expected 0/);
  });

  it('random convolutions fold and keep their outputs (onnxruntime, 1e-4 relative)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: fc.integer({ min: 1, max: 2 }),
          groups: fc.integer({ min: 1, max: 3 }),
          inPerGroup: fc.integer({ min: 1, max: 3 }),
          outPerGroup: fc.integer({ min: 1, max: 3 }),
          k: fc.constantFrom(1, 3),
          bias: fc.boolean(),
          eps: fc.constantFrom(1e-5, 1e-3, 0.01),
          seed: fc.nat(1000),
        }),
        async (p) => {
          const m = build(p);
          const original = copy(m);
          expect(fuse(m).applied.length).toBe(1);
          await expectSameOutputs(original, m, { x: floatInput('x', [p.n, p.groups * p.inPerGroup, 6, 6], p.seed + 7) });
        },
      ),
      { numRuns: 20 },
    );
  });
});
