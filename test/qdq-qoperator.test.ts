/**
 * --quant-format qoperator: the QDQ node units written out as QLinearConv / QLinearMatMul / QGemm /
 * QLinearAdd ... in the file itself. Checked against the QDQ artifact on onnxruntime: the file's
 * own graph holds the integer ops (no QuantizeLinear/DequantizeLinear left around them), and its
 * outputs match the QDQ model's (which onnxruntime fuses into the same kernels).
 */
import { describe, expect, it } from 'vitest';
import type { Model } from '../src/ir/model.js';
import { ortOptimizedGraph } from '../src/quant/int8-kernels.js';
import { cleaned, compare, dataFor, quantized } from './helpers-int8.js';

const ops = (m: Model) => {
  const out: Record<string, number> = {};
  for (const n of m.graph.nodes) out[n.opType] = (out[n.opType] ?? 0) + 1;
  return out;
};

describe('qoperator format', () => {
  it('cnn-static: QLinearConv x3, QLinearAdd, QLinearGlobalAveragePool, QGemm in the file; same outputs as QDQ', async () => {
    const m = cleaned('models/zoo/cnn-static/model.onnx');
    const calib = dataFor(m, { samples: 8 });
    const qdq = await quantized(m, calib);
    const qop = await quantized(m, calib, { format: 'qoperator' });
    const o = ops(qop.model);
    expect(o.QLinearConv).toBe(3);
    expect([o.QLinearAdd, o.QLinearGlobalAveragePool, o.QGemm]).toEqual([1, 1, 1]);
    expect(o.DequantizeLinear ?? 0).toBe(0);
    expect(o.QuantizeLinear).toBe(1);
    const err = await compare(qdq.model, qop.model, dataFor(m, { samples: 4, seed: 5 }));
    expect(err.relErr).toBeLessThan(1e-6);
    const ort = await ortOptimizedGraph(qop.model);
    expect(ort.floatMatmuls).toBe(0);
  });

  it('bert-static: QGemm x12 and the attention MatMuls as QLinearMatMul / MatMulIntegerToFloat; same outputs as QDQ', async () => {
    const m = cleaned('models/zoo/bert-static/model.onnx');
    const calib = dataFor(m, { samples: 8 });
    const qdq = await quantized(m, calib);
    const qop = await quantized(m, calib, { format: 'qoperator' });
    const o = ops(qop.model);
    expect(o.QGemm).toBe(12);
    expect((o.QLinearMatMul ?? 0) + (o.MatMulIntegerToFloat ?? 0)).toBe(4);
    expect((o.MatMul ?? 0) + (o.Gemm ?? 0)).toBe(0);
    const err = await compare(qdq.model, qop.model, dataFor(m, { samples: 4, seed: 5 }));
    expect(err.relErr).toBeLessThan(1e-5);
  });
});
