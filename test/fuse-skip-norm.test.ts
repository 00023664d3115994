/**
 * skip-layer-norm and skip-rms-norm: a residual Add (with or without a bias Add before it) feeding
 * LayerNormalization / RMSNorm becomes SkipLayerNormalization / SkipSimplifiedLayerNormalization;
 * when the sum has other users (pre-norm residual streams) they read output 3. Both are left out
 * of the cpu target's default set (onnxruntime 1.30's CPU kernels measure slower) and applied when
 * named or for cuda. Near-misses: a 2-D input for SkipLayerNormalization, a normalization over
 * another axis, operands of different shapes. Random instances keep their outputs on onnxruntime
 * within 1e-4 relative.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import { ModelBuilder } from '../models/builder.js';
import { copy, expectSameOutputs, floatInput, floats, fuse, inferShapes, ops } from './fusion-helpers.js';

interface SkipCase {
  kind: 'layer' | 'rms';
  dims: number[];
  skipDims?: number[];
  bias: boolean;
  sumUsedLater: boolean;
  eps: number;
  seed: number;
  lnAxis?: number;
}

function build(p: SkipCase) {
  const b = new ModelBuilder({ opset: 17 });
  const h = p.dims.at(-1)!;
  const x = b.input('x', DataType.FLOAT, p.dims);
  const skip = b.input('skip', DataType.FLOAT, p.skipDims ?? p.dims);
  const c = (v: number) => b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(v));
  const a = p.bias ? b.op('Add', [b.initializer('bias', DataType.FLOAT, [h], floats(h, p.seed + 9)), x]) : x;
  const sum = b.op('Add', [a, skip], {}, { name: '/block/Add' });
  const gamma = b.initializer('gamma', DataType.FLOAT, [h], floats(h, p.seed + 1));
  let y: Value;
  if (p.kind === 'layer') {
    y = b.op('LayerNormalization', [sum, gamma, b.initializer('beta', DataType.FLOAT, [h], floats(h, p.seed + 2))], { axis: p.lnAxis ?? -1, epsilon: { float: p.eps } }, { name: '/block/ln/LayerNormalization' });
  } else {
    const ms = b.op('ReduceMean', [b.op('Pow', [sum, c(2)])], { axes: [-1], keepdims: 1 });
    y = b.op('Mul', [gamma, b.op('Mul', [sum, b.op('Div', [c(1), b.op('Sqrt', [b.op('Add', [ms, c(p.eps)])])])])]);
  }
  b.output(p.sumUsedLater ? b.op('Add', [y, sum]) : y);
  return inferShapes(b.build());
}

const feeds = (p: SkipCase) => ({ x: floatInput('x', p.dims, p.seed, 2), skip: floatInput('skip', p.skipDims ?? p.dims, p.seed + 1, 2) });
const NAMES = { layer: ['skip-layer-norm'], rms: ['rms-norm', 'skip-rms-norm'] };
const FUSED = { layer: 'com.microsoft::SkipLayerNormalization', rms: 'com.microsoft::SkipSimplifiedLayerNormalization' };

describe('fusions skip-layer-norm and skip-rms-norm', () => {
  it('fuse the residual Add (and a bias Add) into the normalization; other users of the sum read output 3', async () => {
    for (const kind of ['layer', 'rms'] as const) {
      for (const bias of [false, true]) {
        for (const sumUsedLater of [false, true]) {
          const p: SkipCase = { kind, dims: [2, 3, 8], bias, sumUsedLater, eps: 1e-5, seed: 4 };
          const m = build(p);
          const original = copy(m);
          fuse(m, { only: NAMES[kind] });
          const fused = m.graph.nodes.find((n) => n.qualifiedOp === FUSED[kind])!;
          expect(fused, `${kind} bias ${bias} later ${sumUsedLater}`).toBeDefined();
          expect(ops(m)).toEqual({ [FUSED[kind]]: 1, ...(sumUsedLater ? { Add: 1 } : {}) });
          expect(fused.inputs.filter(Boolean).length).toBe((kind === 'layer' ? 4 : 3) + (bias ? 1 : 0));
          expect(fused.outputs.length).toBe(sumUsedLater ? 4 : 1);
          await expectSameOutputs(original, m, feeds(p));
        }
      }
    }
  });

  it('are not applied by default on cpu, and are on cuda', () => {
    const m = build({ kind: 'layer', dims: [2, 3, 8], bias: false, sumUsedLater: false, eps: 1e-5, seed: 1 });
    expect(fuse(copy(m)).applied).toEqual([]);
    expect(fuse(m, { target: 'cuda' }).applied.map((a) => a.fusion)).toEqual(['skip-layer-norm']);
    const r = build({ kind: 'rms', dims: [2, 3, 8], bias: false, sumUsedLater: true, eps: 1e-5, seed: 1 });
    expect(fuse(copy(r)).applied.map((a) => a.fusion)).toEqual(['rms-norm']);
    expect(fuse(r, { target: 'cuda' }).applied.map((a) => a.fusion)).toEqual(['rms-norm', 'skip-rms-norm']);
  });

  it('take a [1, S, H] skip for SkipLayerNormalization, and leave 2-D inputs, other axes and mismatched shapes alone', async () => {
    const p: SkipCase = { kind: 'layer', dims: [2, 3, 8], skipDims: [1, 3, 8], bias: false, sumUsedLater: false, eps: 1e-5, seed: 2 };
    const m = build(p);
    const original = copy(m);
    expect(fuse(m, { only: ['skip-layer-norm'] }).applied.length).toBe(1);
    await expectSameOutputs(original, m, feeds(p));
    const reason = (q: SkipCase) => {
      const pass = fuse(build(q), { only: NAMES[q.kind] });
      expect(pass.applied.filter((a) => a.fusion.startsWith('skip'))).toEqual([]);
      return pass.nearMisses.find((n) => n.fusion.startsWith('skip'))!.reason;
    };
    expect(reason({ ...p, dims: [6, 8], skipDims: [6, 8] })).toBe('the residual Add operands [6, 8] and [6, 8] are not 3-D with equal shapes (or a [1, S, H] / [S, H] skip)');
    expect(reason({ ...p, skipDims: undefined, lnAxis: 1 })).toBe('LayerNormalization normalizes axis 1, not the last');
    expect(reason({ ...p, kind: 'rms', skipDims: [1, 3, 8] })).toBe('the residual Add operands [2, 3, 8] and [1, 3, 8] are not 2-D/3-D with equal shapes');
  });

  it('random instances fuse and keep their outputs (onnxruntime, 1e-4 relative)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          kind: fc.constantFrom('layer' as const, 'rms' as const),
          dims: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 5 }), fc.constantFrom(4, 16, 48)).map((t) => [...t]),
          bias: fc.boolean(),
          sumUsedLater: fc.boolean(),
          eps: fc.constantFrom(1e-12, 1e-6, 1e-5),
          seed: fc.nat(1000),
        }),
        async (p) => {
          const m = build(p);
          const original = copy(m);
          const pass = fuse(m, { target: 'cuda' });
          expect(pass.applied.map((a) => a.fusion)).toContain(p.kind === 'layer' ? 'skip-layer-norm' : 'skip-rms-norm');
          await expectSameOutputs(original, m, feeds(p));
        },
      ),
      { numRuns: 25 },
    );
  });
});
