import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { ModelBuilder } from '../models/builder.js';
import { mergeLoraBranches } from '../passes/lora-branch-merge.js';
import { deadCodeElimination } from '../passes/dead-code.js';
import { runPipeline } from '../passes/pass.js';
import { randomFloats } from './arbitrary-graph.js';

/** base(x) + s * (x·At)·Bt, as the TorchScript exporter writes a PEFT LoRA Linear. */
function loraModel(opts: { inF: number; outF: number; r: number; scale: number; bias?: boolean; gemm?: boolean; dropout?: boolean; scaleFirst?: boolean }) {
  const { inF, outF, r } = opts;
  const b = new ModelBuilder();
  const x = b.input('x', DataType.FLOAT, [3, inF]);
  const w = opts.gemm
    ? b.initializer('w', DataType.FLOAT, [outF, inF], randomFloats(outF * inF, 1))
    : b.initializer('w', DataType.FLOAT, [inF, outF], randomFloats(inF * outF, 1));
  const at = b.initializer('lora_A.T', DataType.FLOAT, [inF, r], randomFloats(inF * r, 2));
  const bt = b.initializer('lora_B.T', DataType.FLOAT, [r, outF], randomFloats(r * outF, 3));
  const s = b.initializer('scale', DataType.FLOAT, [], Float32Array.of(opts.scale));
  let base;
  if (opts.gemm) {
    const bias = b.initializer('bias', DataType.FLOAT, [outF], randomFloats(outF, 4));
    base = b.op('Gemm', [x, w, bias], { transB: 1 }, { name: '/model/fc1/base_layer/Gemm' });
  } else {
    base = b.op('MatMul', [x, w], {}, { name: '/model/fc1/base_layer/MatMul' });
    if (opts.bias) base = b.op('Add', [b.initializer('bias', DataType.FLOAT, [outF], randomFloats(outF, 4)), base]);
  }
  const xin = opts.dropout ? b.op('Dropout', [x]) : x;
  const ha = b.op('MatMul', [xin, at], {}, { name: '/model/fc1/lora_A/default/MatMul' });
  const hb = b.op('MatMul', [ha, bt], {}, { name: '/model/fc1/lora_B/default/MatMul' });
  const scaled = opts.scaleFirst ? b.op('Mul', [s, hb]) : b.op('Mul', [hb, s]);
  const y = b.op('Add', [base, scaled], {}, { name: '/model/fc1/Add' });
  b.output(b.op('Relu', [y]), { dtype: DataType.FLOAT, shape: [3, outF] });
  return b.build();
}

/** Expected merged weight in float64: W + s * At·Bt (MatMul layout) or W + s * (At·Bt)^T (Gemm transB). */
function expectedWeight(m: Model, inF: number, outF: number, r: number, scale: number, gemm: boolean): Float64Array {
  const get = (n: string) => m.graph.localValue(n)!.initializer!.toTypedArray<Float32Array>();
  const w = get('w');
  const at = get('lora_A.T');
  const bt = get('lora_B.T');
  const out = new Float64Array(inF * outF);
  for (let i = 0; i < inF; i++) {
    for (let o = 0; o < outF; o++) {
      let d = 0;
      for (let k = 0; k < r; k++) d += at[i * r + k]! * bt[k * outF + o]!;
      const at_ = gemm ? o * inF + i : i * outF + o;
      out[at_] = w[at_]! + scale * d;
    }
  }
  return out;
}

describe('LoRA branch merge (exported graphs)', () => {
  for (const opts of [
    { inF: 8, outF: 6, r: 2, scale: 2, label: 'MatMul base' },
    { inF: 5, outF: 5, r: 4, scale: 0.5, bias: true, dropout: true, label: 'MatMul + bias, Dropout on the branch input' },
    { inF: 7, outF: 4, r: 3, scale: 1.25, gemm: true, scaleFirst: true, label: 'Gemm transB base, scale first' },
  ]) {
    it(`folds the branch into the base weight: ${opts.label}`, () => {
      const m = loraModel(opts);
      const expected = expectedWeight(m, opts.inF, opts.outF, opts.r, opts.scale, !!opts.gemm);
      const reports = runPipeline(m, [mergeLoraBranches(), deadCodeElimination], { check: true });
      expect(reports[0]!.details).toEqual({ merged: 1, dora: 0 });
      const ops = m.graph.nodes.map((n) => n.opType);
      expect(ops).not.toContain('Mul');
      expect(ops.filter((o) => o === 'MatMul' || o === 'Gemm')).toHaveLength(1);
      const merged = m.graph.localValue('w')!.initializer!.toTypedArray<Float32Array>();
      for (let i = 0; i < expected.length; i++) expect(merged[i]).toBeCloseTo(expected[i]!, 5);
      expect(m.graph.initializers.map((v) => v.name)).not.toContain('lora_A.T');
    });
  }

  it('leaves look-alikes alone: a second MatMul pair whose input is not the base input', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2, 4]);
    const z = b.input('z', DataType.FLOAT, [2, 4]);
    const w = b.initializer('w', DataType.FLOAT, [4, 4], randomFloats(16, 1));
    const at = b.initializer('at', DataType.FLOAT, [4, 2], randomFloats(8, 2));
    const bt = b.initializer('bt', DataType.FLOAT, [2, 4], randomFloats(8, 3));
    const y = b.op('Add', [b.op('MatMul', [x, w]), b.op('MatMul', [b.op('MatMul', [z, at]), bt])]);
    b.output(y);
    const m = b.build();
    const [r] = runPipeline(m, [mergeLoraBranches()], { check: true });
    expect(r!.changed).toBe(false);
  });

  it('keeps the graph output name when the LoRA Add is the output', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2, 4]);
    const w = b.initializer('w', DataType.FLOAT, [4, 3], randomFloats(12, 1));
    const at = b.initializer('at', DataType.FLOAT, [4, 1], randomFloats(4, 2));
    const bt = b.initializer('bt', DataType.FLOAT, [1, 3], randomFloats(3, 3));
    const y = b.op('Add', [b.op('MatMul', [x, w]), b.op('MatMul', [b.op('MatMul', [x, at]), bt])]);
    b.graph.renameValue(y, 'logits');
    b.output(y, { dtype: DataType.FLOAT, shape: [2, 3] });
    const m = b.build();
    runPipeline(m, [mergeLoraBranches(), deadCodeElimination], { check: true });
    expect(m.graph.outputs[0]!.name).toBe('logits');
    expect(m.graph.nodes.map((n) => n.opType)).toEqual(['MatMul', 'Identity']);
  });
});
