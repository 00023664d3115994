/**
 * QAT graphs keep their trained scales: the fixture (models/qat-fixture.ts) is built with
 * QuantizeLinear/DequantizeLinear pairs whose scales are deliberately not what calibration would
 * choose. After cleanup and static INT8, every scale and zero point is the fixture's own, the
 * weights are int8 initializers equal to round_half_even(w / s) (not re-derived from max |w|), the
 * float biases became int32 from the trained scales, nothing was calibrated, and onnxruntime runs
 * every Conv/Gemm as an integer kernel. The outputs equal the fixture's own (its fake-quantized
 * float computation) within the requantization of the outputs.
 */
import { describe, expect, it } from 'vitest';
import { buildQatFixture, QAT_ACTIVATIONS } from '../models/qat-fixture.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { ortOptimizedGraph } from '../src/quant/int8-kernels.js';
import { quantizeValue } from '../src/quant/int8-math.js';
import { compare, copyOf, dataFor, quantized } from './helpers-int8.js';

/** Scale and zero point values of every QuantizeLinear/DequantizeLinear, keyed by the tensor they quantize. */
function scalesOf(m: Model): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const n of m.graph.nodes) {
    if (n.opType !== 'QuantizeLinear' && n.opType !== 'DequantizeLinear') continue;
    const s = n.inputs[1]!.initializer;
    const z = n.inputs[2]?.initializer;
    if (!s) continue;
    const key = n.opType === 'QuantizeLinear' ? n.inputs[0]!.name : n.outputs[0]!.uses[0]?.node.name + '#' + n.outputs[0]!.uses[0]?.index;
    out.set(key, [...s.toTypedArray<Float32Array>(), ...(z ? [...z.toTypedArray()].map(Number) : [])]);
  }
  return out;
}

describe('QAT fixture', () => {
  it('keeps every trained scale; weights folded to int8 with them; biases int32; integer kernels', async () => {
    const original = buildQatFixture();
    const fixture = copyOf(original);
    runPipeline(fixture, cleanupPipeline(), { fixpoint: true });
    // Cleanup folds the weight QuantizeLinear into int8 data but keeps every DequantizeLinear.
    expect(fixture.graph.nodes.filter((n) => n.opType === 'DequantizeLinear').length).toBe(8);
    const before = scalesOf(fixture);
    const { model, report } = await quantized(fixture, dataFor(fixture, { samples: 4, dims: { N: 2 } }));
    expect(report.nodes).toEqual([]);
    expect(report.calibration!.activations).toBe(0);
    expect(report.qat!.biases).toBe(3);
    const after = scalesOf(model);
    for (const [k, v] of before) expect(after.get(k), k).toEqual(v);
    const acts = [...after.values()].map((v) => v[0]);
    for (const a of Object.values(QAT_ACTIVATIONS)) expect(acts).toContain(Math.fround(a.scale));
    // Weights: int8 = round_half_even(w / trained scale), per output channel.
    const w = original.graph.localValue('conv2.weight')!.initializer!.toTypedArray<Float32Array>();
    const s = original.graph.localValue('conv2.weight_scale')!.initializer!.toTypedArray<Float32Array>();
    const dq = model.graph.nodes.find((n) => n.opType === 'DequantizeLinear' && n.inputs[1]!.name === 'conv2.weight_scale')!;
    const q = dq.inputs[0]!.initializer!;
    expect(q.dtype).toBe(DataType.INT8);
    const data = q.toTypedArray<Int8Array>();
    for (let i = 0; i < w.length; i++) expect(data[i]).toBe(quantizeValue(w[i]!, s[Math.floor(i / 72)]!, 0, -128, 127));
    const ort = await ortOptimizedGraph(model);
    expect(Object.entries(ort.ops).filter(([k]) => k.endsWith('QLinearConv')).reduce((a, [, c]) => a + c, 0)).toBe(2);
    expect(Object.entries(ort.ops).filter(([k]) => k.endsWith('QGemm')).reduce((a, [, c]) => a + c, 0)).toBe(1);
    expect(ort.floatMatmuls).toBe(0);
    const err = await compare(original, model, dataFor(original, { samples: 4, seed: 2, dims: { N: 4 } }));
    expect(err.cosine).toBeGreaterThan(0.999);
  });
});
