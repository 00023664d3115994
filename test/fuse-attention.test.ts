/**
 * attention: BERT/ViT-style self-attention (three projections with or without biases, heads split
 * by Reshape + Transpose, K transposed in one or two steps, scores scaled by Mul or Div or not at
 * all, an optional additive mask, Softmax, context merged back) and GPT-2's packed form (one Gemm
 * on x viewed as 2-D, split in three) become one com.microsoft Attention with packed weights.
 * Near-misses: a mask that is 3-D or broadcasts over query positions ([B, 1, 1, S]), a Softmax over
 * another axis, a projection used elsewhere. Random batch, sequence, head counts, head sizes,
 * masks and scales keep their outputs on onnxruntime within 1e-4 relative.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { ModelBuilder } from '../models/builder.js';
import { copy, expectSameOutputs, floatInput, floats, fuse, inferShapes, ops } from './fusion-helpers.js';

type MaskKind = 'none' | 'full' | 'broadcast-batch' | 'zeros' | 'padding' | '3d';

interface AttnCase {
  b: number;
  s: number;
  heads: number;
  size: number;
  bias: boolean;
  mask: MaskKind;
  scale: 'mul' | 'div' | 'none';
  kForm: 'one' | 'two';
  packed: boolean;
  seed: number;
  softmaxAxis?: number;
  qUsedElsewhere?: boolean;
}

function maskDims(p: AttnCase): number[] {
  return { none: [], full: [p.b, 1, p.s, p.s], 'broadcast-batch': [1, 1, p.s, p.s], zeros: [p.b, 1, p.s, p.s], padding: [p.b, 1, 1, p.s], '3d': [p.b, p.s, p.s] }[p.mask];
}

function build(p: AttnCase) {
  const b = new ModelBuilder({ opset: 17 });
  const d = p.heads * p.size;
  const i64 = (xs: number[]) => b.initializer(undefined, DataType.INT64, [xs.length], BigInt64Array.from(xs, BigInt));
  const x = b.input('x', DataType.FLOAT, [p.b, p.s, d]);
  let q: Value, k: Value, v: Value;
  if (p.packed) {
    const flat = b.op('Reshape', [x, i64([-1, d])]);
    const gemm = b.op('Gemm', [flat, b.initializer('wqkv', DataType.FLOAT, [d, 3 * d], floats(3 * d * d, p.seed, 0.3)), b.initializer('bqkv', DataType.FLOAT, [3 * d], floats(3 * d, p.seed + 1))]);
    const un = b.op('Reshape', [gemm, i64([p.b, p.s, 3 * d])]);
    [q, k, v] = b.opMulti('Split', [un, i64([d, d, d])], { axis: 2 }, { outputs: 3 }) as [Value, Value, Value];
  } else {
    const proj = (i: number) => {
      const mm = b.op('MatMul', [x, b.initializer(`w${i}`, DataType.FLOAT, [d, d], floats(d * d, p.seed + 10 * i, 0.3))]);
      return p.bias ? b.op('Add', [b.initializer(`b${i}`, DataType.FLOAT, [d], floats(d, p.seed + 10 * i + 1)), mm]) : mm;
    };
    [q, k, v] = [proj(0), proj(1), proj(2)];
  }
  const split = (t: Value) => b.op('Reshape', [t, i64([p.b, p.s, -1, p.size])]);
  const qt = b.op('Transpose', [split(q)], { perm: [0, 2, 1, 3] });
  const kt = p.kForm === 'one' ? b.op('Transpose', [split(k)], { perm: [0, 2, 3, 1] }) : b.op('Transpose', [b.op('Transpose', [split(k)], { perm: [0, 2, 1, 3] })], { perm: [0, 1, 3, 2] });
  const vt = b.op('Transpose', [split(v)], { perm: [0, 2, 1, 3] });
  let scores = b.op('MatMul', [qt, kt]);
  const c = (z: number) => b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(z));
  if (p.scale === 'mul') scores = b.op('Mul', [scores, c(1 / Math.sqrt(p.size))]);
  if (p.scale === 'div') scores = b.op('Div', [scores, c(Math.sqrt(p.size))]);
  if (p.mask !== 'none') {
    const dims = maskDims(p);
    const mask =
      p.mask === 'zeros'
        ? b.initializer('mask', DataType.FLOAT, dims, new Float32Array(dims.reduce((s, z) => s * z, 1)))
        : b.input('mask', DataType.FLOAT, dims);
    scores = b.op('Add', [scores, mask]);
  }
  const probs = b.op('Softmax', [scores], { axis: p.softmaxAxis ?? -1 }, { name: '/attn/Softmax' });
  const ctx = b.op('Transpose', [b.op('MatMul', [probs, vt])], { perm: [0, 2, 1, 3] });
  b.output(b.op('Reshape', [ctx, i64([p.b, p.s, d])], {}, { name: '/attn/Reshape_out' }));
  if (p.qUsedElsewhere) b.output(b.op('Neg', [qt], {}, { name: '/other/Neg' }));
  return inferShapes(b.build());
}

/** Additive masks as models use them: 0 to keep, a large negative number to drop (at least one kept per row). */
function feeds(p: AttnCase): Record<string, Tensor> {
  const out: Record<string, Tensor> = { x: floatInput('x', [p.b, p.s, p.heads * p.size], p.seed, 1) };
  if (p.mask === 'full' || p.mask === 'broadcast-batch' || p.mask === 'padding' || p.mask === '3d') {
    const dims = maskDims(p);
    const r = floats(dims.reduce((s, z) => s * z, 1), p.seed + 99);
    const last = dims.at(-1)!;
    out.mask = Tensor.fromTypedArray('mask', DataType.FLOAT, dims, r.map((z, i) => (i % last === 0 || z > -0.3 ? 0 : -3.4e38)));
  }
  return out;
}

const base: AttnCase = { b: 2, s: 5, heads: 2, size: 4, bias: true, mask: 'full', scale: 'mul', kForm: 'one', packed: false, seed: 7 };

describe('fusion attention', () => {
  it('fuses BERT-style self-attention into Attention with packed Q/K/V weights', async () => {
    const m = build(base);
    const original = copy(m);
    expect(fuse(m).applied.map((a) => a.fusion)).toEqual(['attention']);
    expect(ops(m)).toEqual({ 'com.microsoft::Attention': 1 });
    const att = m.graph.nodes[0]!;
    expect([att.attrInt('num_heads'), att.attrFloat('scale', 0)]).toEqual([2, 0.5]);
    expect(att.inputs.map((i) => i?.name ?? '')).toEqual(['x', att.inputs[1]!.name, att.inputs[2]!.name, '', '', 'mask']);
    expect(att.inputs[1]!.initializer!.dims).toEqual([8, 24]);
    expect(m.graph.outputs[0]!.name).toBe(original.graph.outputs[0]!.name);
    await expectSameOutputs(original, m, feeds(base));
  });

  it("fuses GPT-2's packed projection (Gemm on [B*S, D], Split in three) and drops an all-zero mask", async () => {
    for (const p of [{ ...base, packed: true, mask: 'broadcast-batch' as const }, { ...base, mask: 'zeros' as const, kForm: 'two' as const, scale: 'div' as const }]) {
      const m = build(p);
      const original = copy(m);
      expect(fuse(m).applied.map((a) => a.fusion)).toEqual(['attention']);
      expect(ops(m)).toEqual({ 'com.microsoft::Attention': 1 });
      expect(m.graph.nodes[0]!.inputs.length).toBe(p.mask === 'zeros' ? 3 : 6);
      await expectSameOutputs(original, m, feeds(p));
    }
  });

  it('leaves a 3-D mask, a padding mask, another Softmax axis and a shared projection alone, saying why', () => {
    const reason = (p: AttnCase) => {
      const pass = fuse(build(p), { only: ['attention'] });
      expect(pass.applied).toEqual([]);
      return pass.nearMisses.map((n) => n.reason);
    };
    expect(reason({ ...base, mask: '3d' })).toEqual(['mask is 3-D [2, 5, 5], not 4-D [B or 1, heads or 1, S, S]']);
    expect(reason({ ...base, mask: 'padding' })).toEqual(['mask [2, 1, 1, 5] broadcasts over query or key positions (attention_bias needs [.., S, S])']);
    expect(reason({ ...base, softmaxAxis: 2 })).toEqual(["'/attn/Softmax' (Softmax) is over axis 2, not the last"]);
    expect(reason({ ...base, qUsedElsewhere: true })[0]).toMatch(/^intermediate '.*' \(Transpose\) is also used by '\/other\/Neg' \(Neg\)$/);
  });

  it('random batch, sequence, heads, head sizes, masks and scales fuse and keep their outputs (onnxruntime, 1e-4 relative)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          b: fc.integer({ min: 1, max: 3 }),
          s: fc.integer({ min: 1, max: 9 }),
          heads: fc.integer({ min: 1, max: 4 }),
          size: fc.constantFrom(2, 4, 8, 16),
          bias: fc.boolean(),
          mask: fc.constantFrom('none' as const, 'full' as const, 'broadcast-batch' as const, 'zeros' as const),
          scale: fc.constantFrom('mul' as const, 'div' as const, 'none' as const),
          kForm: fc.constantFrom('one' as const, 'two' as const),
          packed: fc.boolean(),
          seed: fc.nat(1000),
        }),
        async (p) => {
          const m = build(p);
          const original = copy(m);
          expect(fuse(m, { only: ['attention'] }).applied.map((a) => a.fusion)).toEqual(['attention']);
          await expectSameOutputs(original, m, feeds(p));
        },
      ),
      { numRuns: 30 },
    );
  });
});
