/**
 * rms-norm: RMSNorm as TorchScript writes Llama's (Mul(w, Mul(x, Div(1, Sqrt(Add(ReduceMean(
 * Pow(x, 2)), eps)))))), as dynamo writes it (Reciprocal instead of Div(1, .)), and as x / Sqrt,
 * with or without the scale, becomes SimplifiedLayerNormalization; near-misses (reduction over
 * another axis, an intermediate with a second consumer, a computed epsilon, a scale that is not
 * per hidden element) are left alone with a reason; random instances keep their outputs on
 * onnxruntime within 1e-4 relative.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { ModelBuilder } from '../models/builder.js';
import { copy, expectSameOutputs, floatInput, floats, fuse, inferShapes, ops } from './fusion-helpers.js';

interface RmsCase {
  dims: number[];
  eps: number;
  opset: 17 | 18;
  form: 'torchscript' | 'dynamo' | 'div';
  gamma: boolean;
  seed: number;
  axis?: number;
  powUsedElsewhere?: boolean;
  epsInput?: boolean;
  gammaShape?: number[];
}

function build(p: RmsCase) {
  const b = new ModelBuilder({ opset: p.opset });
  const h = p.dims.at(-1)!;
  const x = b.input('x', DataType.FLOAT, p.dims);
  const c = (v: number) => b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(v));
  const axis = p.axis ?? -1;
  const pow = b.op('Pow', [x, c(2)], {}, { name: '/norm/Pow' });
  const ms =
    p.opset >= 18
      ? b.op('ReduceMean', [pow, b.initializer(undefined, DataType.INT64, [1], BigInt64Array.of(BigInt(axis)))], { keepdims: 1 })
      : b.op('ReduceMean', [pow], { axes: [axis], keepdims: 1 });
  const std = b.op('Sqrt', [b.op('Add', [ms, p.epsInput ? b.input('eps', DataType.FLOAT, []) : c(p.eps)])]);
  let y = p.form === 'torchscript' ? b.op('Mul', [x, b.op('Div', [c(1), std])]) : p.form === 'dynamo' ? b.op('Mul', [x, b.op('Reciprocal', [std])]) : b.op('Div', [x, std]);
  if (p.gamma) {
    const gs = p.gammaShape ?? [h];
    y = b.op('Mul', [b.initializer('w', DataType.FLOAT, gs, floats(gs.reduce((a, v) => a * v, 1), p.seed + 1)), y]);
  }
  b.output(y);
  if (p.powUsedElsewhere) b.output(b.op('Neg', [pow], {}, { name: '/other/Neg' }));
  return inferShapes(b.build());
}

const base: RmsCase = { dims: [2, 4, 16], eps: 1e-6, opset: 17, form: 'torchscript', gamma: true, seed: 5 };
const feeds = (p: RmsCase) => ({ x: floatInput('x', p.dims, p.seed, 2), ...(p.epsInput ? { eps: floatInput('eps', [], 0) } : {}) });

describe('fusion rms-norm', () => {
  it('fuses the TorchScript, dynamo and plain-division forms into SimplifiedLayerNormalization', async () => {
    for (const form of ['torchscript', 'dynamo', 'div'] as const) {
      for (const gamma of [true, false]) {
        const p = { ...base, form, gamma, opset: form === 'dynamo' ? (18 as const) : (17 as const) };
        const m = build(p);
        const original = copy(m);
        expect(fuse(m).applied.map((a) => a.fusion), `${form} gamma ${gamma}`).toEqual(['rms-norm']);
        expect(ops(m)).toEqual({ SimplifiedLayerNormalization: 1 });
        const n = m.graph.nodes[0]!;
        expect(n.domain).toBe('');
        expect(n.attrFloat('epsilon', 0)).toBeCloseTo(1e-6, 12);
        await expectSameOutputs(original, m, feeds(p));
      }
    }
  });

  it('leaves a wrong axis, a second consumer and a computed epsilon alone, saying why', () => {
    const reason = (p: RmsCase) => {
      const pass = fuse(build(p));
      expect(pass.applied).toEqual([]);
      return pass.nearMisses.find((n) => n.fusion === 'rms-norm')!.reason;
    };
    expect(reason({ ...base, axis: 1 })).toMatch(/reduces axes \[1\], not only the last axis \(2\)/);
    expect(reason({ ...base, powUsedElsewhere: true })).toBe("intermediate '/norm/Pow' (Pow) is also used by '/other/Neg' (Neg)");
    expect(reason({ ...base, epsInput: true })).toBe("epsilon is not a constant (graph input 'eps')");
  });

  it('with a scale that is not per hidden element, fuses the normalization and leaves the Mul', async () => {
    const p = { ...base, gammaShape: [4, 16] };
    const m = build(p);
    const original = copy(m);
    expect(fuse(m).applied.map((a) => a.fusion)).toEqual(['rms-norm']);
    expect(ops(m)).toEqual({ SimplifiedLayerNormalization: 1, Mul: 1 });
    await expectSameOutputs(original, m, feeds(p));
  });

  it('random shapes, epsilons and scales fuse and keep their outputs (onnxruntime, 1e-4 relative)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          dims: fc.oneof(
            fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 6 }), fc.constantFrom(4, 16, 64)).map((t) => [...t]),
            fc.tuple(fc.integer({ min: 1, max: 6 }), fc.constantFrom(8, 32)).map((t) => [...t]),
          ),
          eps: fc.constantFrom(1e-6, 1e-5, 1e-3),
          opset: fc.constantFrom(17 as const, 18 as const),
          form: fc.constantFrom('torchscript' as const, 'dynamo' as const, 'div' as const),
          gamma: fc.boolean(),
          seed: fc.nat(1000),
        }),
        async (p) => {
          const m = build(p);
          const original = copy(m);
          expect(fuse(m).applied.map((a) => a.fusion)).toEqual(['rms-norm']);
          await expectSameOutputs(original, m, feeds(p));
        },
      ),
      { numRuns: 25 },
    );
  });
});
