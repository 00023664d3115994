/**
 * fused-matmul: MatMul with operands transposed on their last two axes and/or a constant scale
 * (Mul or Div) becomes com.microsoft FusedMatMul (transA/transB/alpha), as in Llama's attention
 * scores. A Transpose with another permutation stays (no near-miss); a scale that is not one
 * number is a near-miss. Random ranks, shapes and scales keep their outputs on onnxruntime within
 * 1e-4 relative.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { ModelBuilder } from '../models/builder.js';
import { copy, expectSameOutputs, floatInput, floats, fuse, inferShapes, ops } from './fusion-helpers.js';

interface MmCase {
  batch: number[];
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
  scale: 'none' | 'mul' | 'div' | 'vector';
  value: number;
  seed: number;
}

const swapLast = (r: number) => [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2];

function build(p: MmCase) {
  const b = new ModelBuilder({ opset: 17 });
  const aDims = [...p.batch, ...(p.transA ? [p.k, p.m] : [p.m, p.k])];
  const bDims = [...p.batch, ...(p.transB ? [p.n, p.k] : [p.k, p.n])];
  const a = b.input('a', DataType.FLOAT, aDims);
  const bb = b.input('b', DataType.FLOAT, bDims);
  const ta = p.transA ? b.op('Transpose', [a], { perm: swapLast(aDims.length) }) : a;
  const tb = p.transB ? b.op('Transpose', [bb], { perm: swapLast(bDims.length) }) : bb;
  let y = b.op('MatMul', [ta, tb]);
  const c = p.scale === 'vector' ? b.initializer(undefined, DataType.FLOAT, [p.n], floats(p.n, 3)) : b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(p.value));
  if (p.scale === 'mul' || p.scale === 'vector') y = b.op('Mul', [c, y]);
  if (p.scale === 'div') y = b.op('Div', [y, c]);
  b.output(y);
  return inferShapes(b.build());
}

const feeds = (m: ReturnType<typeof build>, seed: number) =>
  Object.fromEntries(m.graph.inputs.map((v, i) => [v.name, floatInput(v.name, (v.type as { shape: Array<{ value: number }> }).shape.map((d) => d.value), seed + i)]));

describe('fusion fused-matmul', () => {
  it('absorbs last-two-axes Transposes and a constant scale', async () => {
    const p: MmCase = { batch: [2, 3], m: 4, k: 5, n: 6, transA: true, transB: true, scale: 'div', value: 4, seed: 1 };
    const m = build(p);
    const original = copy(m);
    expect(fuse(m).applied.map((a) => a.fusion)).toEqual(['fused-matmul']);
    expect(ops(m)).toEqual({ 'com.microsoft::FusedMatMul': 1 });
    const n = m.graph.nodes[0]!;
    expect([n.attrInt('transA'), n.attrInt('transB'), n.attrFloat('alpha', 0)]).toEqual([1, 1, 0.25]);
    await expectSameOutputs(original, m, feeds(m, 1));
  });

  it('leaves other permutations and plain MatMuls alone without near-misses; a vector scale is a near-miss', () => {
    const b = new ModelBuilder({ opset: 17 });
    const a = b.input('a', DataType.FLOAT, [2, 4, 3, 5]);
    const v = b.input('v', DataType.FLOAT, [2, 3, 4, 5]);
    b.output(b.op('MatMul', [a, b.op('Transpose', [v], { perm: [0, 2, 3, 1] })]));
    b.output(b.op('MatMul', [a, b.input('w', DataType.FLOAT, [5, 2])]));
    const pass = fuse(inferShapes(b.build()));
    expect([pass.applied, pass.nearMisses]).toEqual([[], []]);
    const vec = fuse(build({ batch: [], m: 2, k: 3, n: 4, transA: false, transB: true, scale: 'vector', value: 1, seed: 1 }));
    expect(vec.applied.map((x) => x.fusion)).toEqual(['fused-matmul']); // the Transpose alone; the Mul stays
    expect(vec.nearMisses.map((x) => x.reason)).toEqual([expect.stringMatching(/^the scale '.*' is not a single number$/)]);
  });

  it('random ranks, shapes and scales fuse and keep their outputs (onnxruntime, 1e-4 relative)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          batch: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
          m: fc.integer({ min: 1, max: 6 }),
          k: fc.integer({ min: 1, max: 6 }),
          n: fc.integer({ min: 1, max: 6 }),
          transA: fc.boolean(),
          transB: fc.boolean(),
          scale: fc.constantFrom('none' as const, 'mul' as const, 'div' as const),
          value: fc.constantFrom(0.125, 0.25, 3, -2),
          seed: fc.nat(1000),
        }),
        async (p) => {
          const m = build(p);
          const original = copy(m);
          const applied = fuse(m).applied.length;
          expect(applied).toBe(p.transA || p.transB || p.scale !== 'none' ? 1 : 0);
          await expectSameOutputs(original, m, feeds(m, p.seed));
        },
      ),
      { numRuns: 30 },
    );
  });
});
