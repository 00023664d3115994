/**
 * gelu, fast-gelu, bias-gelu: the erf GELU (BERT/ViT) becomes com.microsoft Gelu, the tanh GELU
 * (GPT-2's NewGELU) FastGelu, and a bias Add before either BiasGelu / FastGelu with its bias, in
 * every placement of the 1/2 and operand order. Near-misses: a wrong constant (x / 1.5), an
 * intermediate with a second consumer, float16 on cpu (the CPU kernels are float32 only), a bias
 * that is not per hidden element. Random instances keep their outputs on onnxruntime within 1e-4
 * relative.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType, float32ToFloat16Bits } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import { ModelBuilder } from '../models/builder.js';
import { copy, expectSameOutputs, floatInput, floats, fuse, inferShapes, ops } from './fusion-helpers.js';

interface GeluCase {
  kind: 'erf' | 'tanh' | 'tanh-ort';
  dims: number[];
  half: 0 | 1 | 2;
  swap: boolean;
  bias: 'none' | 'vector' | 'matrix';
  cube?: 'pow' | 'mul';
  seed: number;
  sqrt2?: number;
  innerUsedElsewhere?: boolean;
  dtype?: number;
}

function build(p: GeluCase) {
  const b = new ModelBuilder({ opset: 17 });
  const dtype = (p.dtype ?? DataType.FLOAT) as DataType;
  const h = p.dims.at(-1)!;
  const c = (v: number) => (dtype === DataType.FLOAT ? b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(v)) : b.initializer(undefined, DataType.FLOAT16, [], Uint16Array.of(float32ToFloat16Bits(v))));
  const input = b.input('x', dtype, p.dims);
  const biasDims = p.bias === 'matrix' ? p.dims.slice(-2) : [h];
  const x = p.bias === 'none' ? input : b.op('Add', [input, b.initializer('bias', DataType.FLOAT, biasDims, floats(biasDims.reduce((s, d) => s * d, 1), p.seed + 3))]);
  const mul = (l: Value, r: Value) => (p.swap ? b.op('Mul', [r, l]) : b.op('Mul', [l, r]));
  let inner: Value;
  if (p.kind === 'erf') {
    inner = b.op('Add', [b.op('Erf', [b.op('Div', [x, c(p.sqrt2 ?? Math.SQRT2)])], {}, { name: '/act/Erf' }), c(1)], {}, { name: '/act/Add' });
  } else {
    const cube = p.cube === 'mul' ? mul(x, mul(x, x)) : b.op('Pow', [x, c(3)]);
    const k = Math.sqrt(2 / Math.PI);
    const arg = p.kind === 'tanh' ? mul(b.op('Add', [x, mul(cube, c(0.044715))]), c(k)) : b.op('Add', [mul(x, c(k)), mul(cube, c(0.044715 * k))]);
    inner = b.op('Add', [b.op('Tanh', [arg], {}, { name: '/act/Tanh' }), c(1)]);
  }
  const y = p.half === 0 ? mul(mul(x, inner), c(0.5)) : p.half === 1 ? mul(mul(x, c(0.5)), inner) : mul(x, mul(inner, c(0.5)));
  b.output(y);
  if (p.innerUsedElsewhere) b.output(b.op('Neg', [inner], {}, { name: '/other/Neg' }));
  return inferShapes(b.build());
}

const feeds = (p: GeluCase) => ({ x: floatInput('x', p.dims, p.seed, 3) });
const base: GeluCase = { kind: 'erf', dims: [2, 3, 8], half: 0, swap: false, bias: 'none', seed: 6 };

describe('fusions gelu, fast-gelu and bias-gelu', () => {
  it('fuse every placement of the 1/2 and both operand orders', async () => {
    for (const kind of ['erf', 'tanh', 'tanh-ort'] as const) {
      for (const half of [0, 1, 2] as const) {
        for (const swap of [false, true]) {
          const p = { ...base, kind, half, swap, cube: swap ? ('mul' as const) : ('pow' as const) };
          const m = build(p);
          const original = copy(m);
          expect(fuse(m).applied.map((a) => a.fusion), `${kind} half ${half} swap ${swap}`).toEqual([kind === 'erf' ? 'gelu' : 'fast-gelu']);
          expect(ops(m)).toEqual({ [kind === 'erf' ? 'com.microsoft::Gelu' : 'com.microsoft::FastGelu']: 1 });
          await expectSameOutputs(original, m, feeds(p));
        }
      }
    }
  });

  it('take a per-hidden bias Add into BiasGelu / FastGelu, and leave a 2-D bias in its Add', async () => {
    for (const kind of ['erf', 'tanh'] as const) {
      const p: GeluCase = { ...base, kind, bias: 'vector' };
      const m = build(p);
      const original = copy(m);
      expect(fuse(m).applied.map((a) => a.fusion)).toEqual([kind === 'erf' ? 'gelu' : 'fast-gelu', 'bias-gelu']);
      const n = m.graph.nodes[0]!;
      expect([n.qualifiedOp, n.inputs.length]).toEqual([kind === 'erf' ? 'com.microsoft::BiasGelu' : 'com.microsoft::FastGelu', 2]);
      await expectSameOutputs(original, m, feeds(p));
    }
    const matrix = build({ ...base, bias: 'matrix' });
    const pass = fuse(matrix);
    expect(pass.applied.map((a) => a.fusion)).toEqual(['gelu']);
    expect(pass.nearMisses.map((n) => [n.fusion, n.reason])).toEqual([['bias-gelu', 'the bias has shape [3, 8], expected [8] (one value per element of the normalized axis)']]);
  });

  it('leave a wrong constant, a second consumer and float16 on cpu alone, saying why', () => {
    const reason = (p: GeluCase, target: 'cpu' | 'cuda' = 'cpu') => {
      const pass = fuse(build(p), { target });
      expect(pass.applied).toEqual([]);
      return pass.nearMisses.map((n) => n.reason);
    };
    expect(reason({ ...base, sqrt2: 1.5 })).toEqual(['sqrt(2) is 1.5, expected 1.4142135623730951']);
    expect(reason({ ...base, innerUsedElsewhere: true })).toEqual(["intermediate '/act/Add' (Add) is also used by '/other/Neg' (Neg)"]);
    expect(reason({ ...base, kind: 'tanh', dtype: DataType.FLOAT16 })).toEqual(['the cpu FastGelu kernel does not take float16']);
    expect(fuse(build({ ...base, dtype: DataType.FLOAT16 }), { target: 'cuda' }).applied.map((a) => a.fusion)).toEqual(['gelu']);
  });

  it('random instances fuse and keep their outputs (onnxruntime, 1e-4 relative)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          kind: fc.constantFrom('erf' as const, 'tanh' as const, 'tanh-ort' as const),
          dims: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 5 }), fc.constantFrom(1, 8, 64)).map((t) => [...t]),
          half: fc.constantFrom(0 as const, 1 as const, 2 as const),
          swap: fc.boolean(),
          bias: fc.constantFrom('none' as const, 'vector' as const),
          cube: fc.constantFrom('pow' as const, 'mul' as const),
          seed: fc.nat(1000),
        }),
        async (p) => {
          const m = build(p);
          const original = copy(m);
          const applied = fuse(m).applied.map((a) => a.fusion);
          expect(applied[0]).toBe(p.kind === 'erf' ? 'gelu' : 'fast-gelu');
          expect(applied.length).toBe(p.bias === 'vector' ? 2 : 1);
          await expectSameOutputs(original, m, feeds(p));
        },
      ),
      { numRuns: 30 },
    );
  });
});
