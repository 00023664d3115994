/**
 * Static INT8 QDQ placement, checked by what onnxruntime does with it: the graph onnxruntime
 * optimizes (its optimized-model dump) must hold the integer kernels (QLinearConv, QGemm,
 * QLinearMatMul, MatMulIntegerToFloat, QLinearAdd, QLinearGlobalAveragePool...) and no float
 * Conv/MatMul/Gemm where a quantized one was planned; the outputs must stay close to the float
 * model's on onnxruntime.
 */
import { describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { ortOptimizedGraph } from '../src/quant/int8-kernels.js';
import { planInt8 } from '../src/quant/int8-plan.js';
import { mulberry32 } from './rng.js';
import { cleaned, compare, dataFor, quantized } from './helpers-int8.js';

function floats(n: number, seed: number, scale: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => Math.fround((r() * 2 - 1) * scale));
}

/** Conv+Relu, Conv+Relu, residual Add, MaxPool, Conv+Relu, GlobalAveragePool, Flatten, Gemm+bias. */
function smallCnn(): Model {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('image', DataType.FLOAT, ['N', 3, 16, 16]);
  let seed = 1;
  const conv = (v: ReturnType<typeof b.input>, cin: number, cout: number, name: string) =>
    b.op('Relu', [b.op('Conv', [v, b.initializer(`${name}.w`, DataType.FLOAT, [cout, cin, 3, 3], floats(cout * cin * 9, seed++, 0.3)), b.initializer(`${name}.b`, DataType.FLOAT, [cout], floats(cout, seed++, 0.1))], { pads: [1, 1, 1, 1] }, { name })], {}, { name: `${name}_relu` });
  const c1 = conv(x, 3, 8, 'conv1');
  const c2 = conv(c1, 8, 8, 'conv2');
  const add = b.op('Add', [c1, c2], {}, { name: 'residual' });
  const pool = b.op('MaxPool', [add], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'pool' });
  const c3 = conv(pool, 8, 16, 'conv3');
  const gap = b.op('GlobalAveragePool', [c3], {}, { name: 'gap' });
  const flat = b.op('Flatten', [gap], {}, { name: 'flatten' });
  const fc = b.op('Gemm', [flat, b.initializer('fc.w', DataType.FLOAT, [10, 16], floats(160, seed++, 0.5)), b.initializer('fc.b', DataType.FLOAT, [10], floats(10, seed++, 0.1))], { transB: 1 }, { name: 'fc' });
  b.output(fc, { dtype: DataType.FLOAT, shape: ['N', 10] });
  return b.build();
}

/** Attention-like block with dynamic shapes: projections, heads, scores, softmax, context, output projection. */
function attentionBlock(): Model {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 'S', 32]);
  const w = (name: string, seed: number) => b.initializer(name, DataType.FLOAT, [32, 32], floats(1024, seed, 0.3));
  const shape = b.initializer('heads', DataType.INT64, [4], BigInt64Array.of(0n, 0n, 4n, 8n));
  const merge = b.initializer('merge', DataType.INT64, [3], BigInt64Array.of(0n, 0n, 32n));
  const split = (v: ReturnType<typeof b.input>, perm: number[], name: string) => b.op('Transpose', [b.op('Reshape', [v, shape], {}, { name: `${name}_reshape` })], { perm }, { name: `${name}_transpose` });
  const q = split(b.op('MatMul', [x, w('wq', 1)], {}, { name: 'q_proj' }), [0, 2, 1, 3], 'q');
  const k = split(b.op('MatMul', [x, w('wk', 2)], {}, { name: 'k_proj' }), [0, 2, 3, 1], 'k');
  const v = split(b.op('MatMul', [x, w('wv', 3)], {}, { name: 'v_proj' }), [0, 2, 1, 3], 'v');
  const scores = b.op('MatMul', [q, k], {}, { name: 'scores' });
  const probs = b.op('Softmax', [scores], { axis: -1 }, { name: 'softmax' });
  const ctx = b.op('MatMul', [probs, v], {}, { name: 'context' });
  const merged = b.op('Reshape', [b.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }, { name: 'ctx_transpose' }), merge], {}, { name: 'ctx_reshape' });
  const out = b.op('MatMul', [merged, w('wo', 4)], {}, { name: 'o_proj' });
  b.output(out, { dtype: DataType.FLOAT, shape: ['N', 'S', 32] });
  return b.build();
}

const count = (ops: Record<string, number>, op: string) => Object.entries(ops).filter(([k]) => k === op || k.endsWith(`::${op}`)).reduce((s, [, c]) => s + c, 0);

describe('QDQ placement forms onnxruntime integer kernels', () => {
  it('a CNN: every Conv, the residual Add, the pooling and the classifier run integer; Relu and MaxPool absorbed', async () => {
    const m = smallCnn();
    const { runPipeline } = await import('../passes/pass.js');
    const { cleanupPipeline } = await import('../passes/pipelines.js');
    runPipeline(m, cleanupPipeline(), { fixpoint: true });
    const data = dataFor(m, { samples: 8, dims: { N: 4 } });
    const { model, report } = await quantized(m, data);
    expect(report.nodes.map((n) => n.op).sort()).toEqual(['Add', 'Conv', 'Conv', 'Conv', 'Gemm', 'GlobalAveragePool']);
    // Placement: each quantized activation has one QuantizeLinear, read by its DequantizeLinear only,
    // and the producer of a quantized activation feeds that QuantizeLinear alone.
    const g = model.graph;
    for (const q of g.nodes.filter((n) => n.opType === 'QuantizeLinear')) {
      expect(q.outputs[0]!.uses.every((u) => u.node.opType === 'DequantizeLinear')).toBe(true);
      const src = q.inputs[0]!;
      if (src.producer) expect(src.uses.map((u) => u.node)).toEqual([q]);
    }
    expect(g.outputs[0]!.producer!.opType).toBe('Gemm'); // the graph output stays float
    // MaxPool between two quantized nodes shares its input's parameters (onnxruntime drops the pair).
    const pool = g.nodes.find((n) => n.name === 'pool')!;
    const before = pool.inputs[0]!.producer!;
    const after = pool.outputs[0]!.uses[0]!.node;
    expect(before.opType).toBe('DequantizeLinear');
    expect(after.opType).toBe('QuantizeLinear');
    expect(after.inputs[1]).toBe(before.inputs[1]);
    const ort = await ortOptimizedGraph(model);
    expect(count(ort.ops, 'QLinearConv')).toBe(3);
    expect(count(ort.ops, 'QLinearAdd')).toBe(1);
    expect(count(ort.ops, 'QLinearGlobalAveragePool')).toBe(1);
    expect(count(ort.ops, 'QGemm')).toBe(1);
    expect(ort.floatMatmuls).toBe(0);
    expect(count(ort.ops, 'Relu')).toBe(0);
    expect(ort.quantizeLinear).toBe(1); // the image, once
    expect(ort.dequantizeLinear).toBe(0); // QGemm writes float logits itself
    const err = await compare(m, model, dataFor(m, { samples: 4, seed: 1, dims: { N: 4 } }));
    expect(err.cosine).toBeGreaterThan(0.999);
  });

  it('attention with dynamic shapes: projections and both activation MatMuls integer, head reshapes on int8', async () => {
    const m = attentionBlock();
    const { runPipeline } = await import('../passes/pass.js');
    const { cleanupPipeline } = await import('../passes/pipelines.js');
    runPipeline(m, cleanupPipeline(), { fixpoint: true });
    const data = dataFor(m, { samples: 8, dims: { N: 2, S: 8 } });
    const { model, report } = await quantized(m, data);
    expect(report.nodes.filter((n) => n.op === 'MatMul').length).toBe(6);
    const ort = await ortOptimizedGraph(model);
    expect(count(ort.ops, 'QLinearMatMul') + count(ort.ops, 'MatMulIntegerToFloat')).toBe(6);
    expect(count(ort.ops, 'MatMulIntegerToFloat')).toBe(1); // o_proj writes the float output
    expect(ort.floatMatmuls).toBe(0);
    // Reshape/Transpose between quantized MatMuls run on uint8: no DequantizeLinear left in the graph.
    expect(ort.dequantizeLinear).toBe(0);
    const err = await compare(m, model, dataFor(m, { samples: 4, seed: 1, dims: { N: 2, S: 8 } }));
    expect(err.cosine).toBeGreaterThan(0.995);
  });

  it('excluded nodes stay float and the plan around them adapts', async () => {
    const m = smallCnn();
    const { runPipeline } = await import('../passes/pass.js');
    const { cleanupPipeline } = await import('../passes/pipelines.js');
    runPipeline(m, cleanupPipeline(), { fixpoint: true });
    const plan = planInt8(m.graph, { exclude: (n) => n.name === 'conv2' });
    // Without conv2 the residual Add has a float input: it is no longer a chain op.
    expect(plan.units.map((u) => u.node.name).sort()).toEqual(['conv1', 'conv3', 'fc', 'gap']);
    const data = dataFor(m, { samples: 4, dims: { N: 2 } });
    const { model, report } = await quantized(m, data, { exclude: ['conv2'] });
    expect(report.float.some((f) => f.node === 'conv2' && f.reason === 'excluded')).toBe(true);
    const ort = await ortOptimizedGraph(model);
    expect(count(ort.ops, 'QLinearConv')).toBe(2);
  });
});

describe('activation types and weight granularity', () => {
  // onnxruntime's x86 CPU provider rewrites int8 activations to uint8 itself (QDQS8ToU8Transformer)
  // where it can, and a Relu is not redundant behind a symmetric range (zero point 0, not -128):
  // int8 symmetric activations form fewer integer kernels there; uint8 is the default for that.
  it('int8 symmetric activations and per-tensor weights also form integer kernels', async () => {
    const m = cleaned('models/zoo/cnn-static/model.onnx');
    const calib = dataFor(m, { samples: 8 });
    for (const o of [{ activationType: 'int8' as const }, { perChannel: false }]) {
      const { model } = await quantized(m, calib, o);
      const zps = model.graph.nodes.filter((n) => n.opType === 'QuantizeLinear').map((n) => n.inputs[2]!.initializer!);
      if (o.activationType) for (const z of zps) expect([z.dtype, Number(z.toTypedArray()[0])]).toEqual([DataType.INT8, 0]);
      if (o.perChannel === false) for (const n of model.graph.nodes.filter((x) => x.opType === 'DequantizeLinear' && x.inputs[0]!.initializer?.dtype === DataType.INT8)) expect(n.inputs[1]!.initializer!.elementCount).toBe(1);
      const ort = await ortOptimizedGraph(model);
      expect(count(ort.ops, 'QLinearConv'), JSON.stringify(o)).toBe(o.activationType ? 2 : 3);
      expect(ort.floatMatmuls).toBe(o.activationType ? 1 : 0);
      const err = await compare(m, model, dataFor(m, { samples: 4, seed: 3 }));
      expect(err.cosine).toBeGreaterThan(0.995);
    }
  });
});

describe('model zoo', () => {
  it('cnn-static: 3 QLinearConv, QLinearAdd, QLinearGlobalAveragePool, QGemm, nothing float; every calibration method', async () => {
    const m = cleaned('models/zoo/cnn-static/model.onnx');
    const calib = dataFor(m, { samples: 16 });
    const evalData = dataFor(m, { samples: 8, seed: 3 });
    for (const calibMethod of ['minmax', 'percentile', 'entropy', 'mse'] as const) {
      const { model } = await quantized(m, calib, { calibMethod });
      const ort = await ortOptimizedGraph(model);
      expect(count(ort.ops, 'QLinearConv')).toBe(3);
      expect(count(ort.ops, 'QLinearAdd') + count(ort.ops, 'QLinearGlobalAveragePool') + count(ort.ops, 'QGemm')).toBe(3);
      expect(ort.floatMatmuls).toBe(0);
      const err = await compare(m, model, evalData);
      expect(err.cosine, calibMethod).toBeGreaterThan(0.995);
    }
  });

  it('bert-static: all 16 MatMuls integer (12 QGemm with int32 biases, 4 attention MatMuls); output cosine >= 0.99', async () => {
    const m = cleaned('models/zoo/bert-static/model.onnx');
    const { model, report } = await quantized(m, dataFor(m, { samples: 32 }));
    expect(report.insertion!.biases).toBe(12);
    const ort = await ortOptimizedGraph(model);
    expect(count(ort.ops, 'QGemm')).toBe(12);
    expect(count(ort.ops, 'QLinearMatMul') + count(ort.ops, 'MatMulIntegerToFloat')).toBe(4);
    expect(ort.floatMatmuls).toBe(0);
    const err = await compare(m, model, dataFor(m, { samples: 16, seed: 7 }));
    expect(err.cosine).toBeGreaterThanOrEqual(0.99);
  });
});
