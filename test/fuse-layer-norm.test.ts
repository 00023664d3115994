/**
 * layer-norm: the decomposed LayerNorm in its exporter forms (Div by Sqrt, TorchScript's
 * Mul(d, Div(1, Sqrt)), dynamo's Mul(d, Reciprocal(Sqrt)); Pow(d, 2) or d*d; axes as attribute
 * (opset 17) or input (opset 18); gamma/beta present or not) becomes one LayerNormalization;
 * near-misses (reduction over another axis, an intermediate with a second consumer, a computed
 * epsilon) are left alone with a reason; random shapes, epsilons and constants keep their outputs
 * on onnxruntime within 1e-4 relative.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import { ModelBuilder } from '../models/builder.js';
import { copy, expectSameOutputs, floatInput, floats, fuse, inferShapes, ops } from './fusion-helpers.js';

interface LnCase {
  dims: number[];
  eps: number;
  opset: 17 | 18;
  divide: 'div' | 'rsqrt' | 'reciprocal';
  square: 'pow' | 'mul';
  gamma: boolean;
  beta: boolean;
  seed: number;
  meanAxis?: number;
  varianceAxis?: number;
  stdUsedElsewhere?: boolean;
  epsInput?: boolean;
}

function build(p: LnCase) {
  const b = new ModelBuilder({ opset: p.opset });
  const h = p.dims.at(-1)!;
  const x = b.input('x', DataType.FLOAT, p.dims);
  const c = (v: number) => b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(v));
  const mean = (t: Value, axis = -1) =>
    p.opset >= 18
      ? b.op('ReduceMean', [t, b.initializer(undefined, DataType.INT64, [1], BigInt64Array.of(BigInt(axis)))], { keepdims: 1 })
      : b.op('ReduceMean', [t], { axes: [axis], keepdims: 1 });
  const d = b.op('Sub', [x, mean(x, p.meanAxis ?? -1)], {}, { name: '/ln/Sub' });
  const sq = p.square === 'pow' ? b.op('Pow', [d, c(2)]) : b.op('Mul', [d, d]);
  const eps = p.epsInput ? b.input('eps', DataType.FLOAT, []) : c(p.eps);
  const std = b.op('Sqrt', [b.op('Add', [mean(sq, p.varianceAxis ?? -1), eps])], {}, { name: '/ln/Sqrt' });
  let y =
    p.divide === 'div' ? b.op('Div', [d, std]) : p.divide === 'rsqrt' ? b.op('Mul', [d, b.op('Div', [c(1), std])]) : b.op('Mul', [b.op('Reciprocal', [std]), d]);
  if (p.gamma) y = b.op('Mul', [b.initializer('gamma', DataType.FLOAT, [h], floats(h, p.seed + 1)), y]);
  if (p.beta) y = b.op('Add', [y, b.initializer('beta', DataType.FLOAT, [h], floats(h, p.seed + 2))]);
  b.output(y);
  if (p.stdUsedElsewhere) b.output(b.op('Neg', [std], {}, { name: '/other/Neg' }));
  return inferShapes(b.build());
}

const base: LnCase = { dims: [2, 5, 16], eps: 1e-5, opset: 17, divide: 'div', square: 'pow', gamma: true, beta: true, seed: 3 };
const feeds = (p: LnCase) => ({ x: floatInput('x', p.dims, p.seed, 3), ...(p.epsInput ? { eps: floatInput('eps', [], 0).renamed('eps') } : {}) });

describe('fusion layer-norm', () => {
  it('fuses each exporter form into LayerNormalization (axis -1, the constant epsilon)', async () => {
    for (const divide of ['div', 'rsqrt', 'reciprocal'] as const) {
      for (const opset of [17, 18] as const) {
        const p = { ...base, divide, opset, square: divide === 'rsqrt' ? ('mul' as const) : ('pow' as const) };
        const m = build(p);
        const original = copy(m);
        const pass = fuse(m);
        expect(pass.applied.map((a) => a.fusion), `${divide} opset ${opset}`).toEqual(['layer-norm']);
        expect(ops(m)).toEqual({ LayerNormalization: 1 });
        const ln = m.graph.nodes[0]!;
        expect(ln.attrInt('axis')).toBe(-1);
        expect(ln.attrFloat('epsilon', 0)).toBeCloseTo(1e-5, 10);
        await expectSameOutputs(original, m, feeds(p));
      }
    }
  });

  it('supplies ones for a missing scale and leaves out a missing shift', async () => {
    const p = { ...base, gamma: false, beta: false };
    const m = build(p);
    const original = copy(m);
    fuse(m);
    const ln = m.graph.nodes[0]!;
    expect(ln.opType).toBe('LayerNormalization');
    expect(ln.inputs.length).toBe(2);
    await expectSameOutputs(original, m, feeds(p));
  });

  it('leaves a wrong axis, a second consumer and a computed epsilon alone, saying why', () => {
    const reason = (p: LnCase) => {
      const pass = fuse(build(p));
      expect(pass.applied).toEqual([]);
      return pass.nearMisses.find((n) => n.fusion === 'layer-norm')!.reason;
    };
    expect(reason({ ...base, varianceAxis: 1 })).toMatch(/reduces axes \[1\], not only the last axis \(2\)/);
    expect(reason({ ...base, stdUsedElsewhere: true })).toBe("intermediate '/ln/Sqrt' (Sqrt) is also used by '/other/Neg' (Neg)");
    expect(reason({ ...base, epsInput: true })).toBe("epsilon is not a constant (graph input 'eps')");
  });

  it('with the mean over another axis, only the (correct) RMS normalization of x - mean is fused', async () => {
    const p = { ...base, meanAxis: 1 };
    const m = build(p);
    const original = copy(m);
    expect(fuse(m).applied.map((a) => a.fusion)).toEqual(['rms-norm']);
    expect(ops(m)).toMatchObject({ ReduceMean: 1, Sub: 1, SimplifiedLayerNormalization: 1 });
    await expectSameOutputs(original, m, feeds(p));
  });

  it('random shapes, epsilons and constants fuse and keep their outputs (onnxruntime, 1e-4 relative)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          dims: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 6 }), fc.constantFrom(4, 8, 32, 96)).map((t) => [...t]),
          eps: fc.constantFrom(1e-12, 1e-6, 1e-5, 1e-3),
          opset: fc.constantFrom(17 as const, 18 as const),
          divide: fc.constantFrom('div' as const, 'rsqrt' as const, 'reciprocal' as const),
          square: fc.constantFrom('pow' as const, 'mul' as const),
          gamma: fc.boolean(),
          beta: fc.boolean(),
          seed: fc.nat(1000),
        }),
        async (p) => {
          const m = build(p);
          const original = copy(m);
          expect(fuse(m).applied.map((a) => a.fusion)).toEqual(['layer-norm']);
          await expectSameOutputs(original, m, feeds(p));
        },
      ),
      { numRuns: 25 },
    );
  });
});
