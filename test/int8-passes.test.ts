/**
 * The INT8 passes one by one, on small graphs whose right answer is known:
 *  - dynamic-quant: MatMul and Gemm (transB, alpha, beta, bias) become the MatMulInteger form that
 *    onnxruntime fuses into DynamicQuantizeMatMul / MatMulIntegerToFloat, close to float;
 *  - int8-gemm-bias and smooth-quant are exact in float (same outputs before and after);
 *  - SmoothQuant divides the activation's channel maxima as designed and folds into producers;
 *  - sensitivity finds the one activation whose range wrecks quantization (an attention-mask-like
 *    -1e9), and --max-error keeps exactly the nodes that quantize it float.
 */
import { describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { dynamicQuantization } from '../passes/dynamic-quant.js';
import { matmulBiasToGemm } from '../passes/int8-gemm-bias.js';
import { smoothQuant } from '../passes/smooth-quant.js';
import { collectStatistics } from '../src/calibration/collect.js';
import { ortOptimizedGraph } from '../src/quant/int8-kernels.js';
import { smoothingTargets } from '../src/quant/int8-smooth.js';
import { mulberry32 } from './rng.js';
import { compare, copyOf, dataFor, quantized } from './helpers-int8.js';

function floats(n: number, seed: number, scale: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => Math.fround((r() * 2 - 1) * scale));
}

function cleanup(m: Model): Model {
  runPipeline(m, cleanupPipeline(), { fixpoint: true });
  return m;
}

const count = (ops: Record<string, number>, op: string) => Object.entries(ops).filter(([k]) => k === op || k.endsWith(`::${op}`)).reduce((s, [, c]) => s + c, 0);

/** RMSNorm-like scale (Mul by a constant gamma with outlier channels) -> q/k MatMuls, gated MLP (gate, up, down). */
function llamaBlock(): Model {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 16]);
  const gamma = floats(16, 1, 1).map((g, i) => (i === 3 ? 20 : 1 + Math.abs(g)));
  const h = b.op('Mul', [x, b.initializer('gamma', DataType.FLOAT, [16], gamma)], {}, { name: 'norm' });
  const q = b.op('MatMul', [h, b.initializer('wq', DataType.FLOAT, [16, 16], floats(256, 2, 0.3))], {}, { name: 'q_proj' });
  const k = b.op('MatMul', [h, b.initializer('wk', DataType.FLOAT, [16, 16], floats(256, 3, 0.3))], {}, { name: 'k_proj' });
  const gate = b.op('MatMul', [h, b.initializer('wg', DataType.FLOAT, [16, 32], floats(512, 4, 0.3))], {}, { name: 'gate_proj' });
  const up = b.op('MatMul', [h, b.initializer('wu', DataType.FLOAT, [16, 32], floats(512, 5, 0.3))], {}, { name: 'up_proj' });
  const act = b.op('Mul', [gate, b.op('Sigmoid', [gate], {}, { name: 'sigmoid' })], {}, { name: 'silu' });
  const prod = b.op('Mul', [act, up], {}, { name: 'gated' });
  const down = b.op('MatMul', [prod, b.initializer('wd', DataType.FLOAT, [32, 16], floats(512, 6, 0.3))], {}, { name: 'down_proj' });
  b.output(b.op('Add', [b.op('Add', [q, k], {}, { name: 'qk' }), down], {}, { name: 'sum' }), { dtype: DataType.FLOAT, shape: ['N', 16] });
  return cleanup(b.build());
}

describe('dynamic-quant', () => {
  it('MatMul and Gemm (transB, alpha, beta, bias) become MatMulInteger forms onnxruntime fuses', async () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, ['N', 24]);
    const h = b.op('MatMul', [x, b.initializer('w1', DataType.FLOAT, [24, 32], floats(768, 1, 0.4))], {}, { name: 'mm' });
    const y = b.op('Gemm', [b.op('Relu', [h]), b.initializer('w2', DataType.FLOAT, [8, 32], floats(256, 2, 0.4)), b.initializer('c', DataType.FLOAT, [8], floats(8, 3, 0.2))], { transB: 1, alpha: 0.5, beta: { float: 2 } }, { name: 'gemm' });
    b.output(y, { dtype: DataType.FLOAT, shape: ['N', 8] });
    const m = cleanup(b.build());
    const q = copyOf(m);
    const pass = dynamicQuantization();
    runPipeline(q, [pass], { check: true });
    expect(pass.report.nodes.map((n) => n.node)).toEqual(['mm', 'gemm']);
    expect(q.graph.nodes.filter((n) => n.opType === 'MatMulInteger').length).toBe(2);
    const ort = await ortOptimizedGraph(q);
    expect(count(ort.ops, 'DynamicQuantizeMatMul') + count(ort.ops, 'MatMulIntegerToFloat')).toBe(2);
    expect(ort.floatMatmuls).toBe(0);
    const err = await compare(m, q, dataFor(m, { samples: 8, dims: { N: 16 } }));
    expect(err.relErr).toBeLessThan(0.02);
  });
});

describe('exact float rewrites', () => {
  it('int8-gemm-bias: MatMul + bias on a static 3-D input -> Reshape, Gemm, Reshape; same outputs', async () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, [2, 5, 12]);
    const y = b.op('Add', [b.op('MatMul', [x, b.initializer('w', DataType.FLOAT, [12, 7], floats(84, 1, 0.5))], {}, { name: 'dense' }), b.initializer('bias', DataType.FLOAT, [7], floats(7, 2, 0.5))]);
    b.output(b.op('Relu', [y]), { dtype: DataType.FLOAT, shape: [2, 5, 7] });
    const m = cleanup(b.build());
    const g = copyOf(m);
    runPipeline(g, [matmulBiasToGemm()], { check: true });
    expect(g.graph.nodes.map((n) => n.opType)).toEqual(['Reshape', 'Gemm', 'Reshape', 'Relu']);
    expect(g.graph.nodes[1]!.name).toBe('dense');
    const err = await compare(m, g, dataFor(m, { samples: 2 }));
    expect(err.relErr).toBeLessThan(1e-6);
  });

  it('smooth-quant: same outputs in float; scales folded into gamma and the up projection; channel maxima levelled', async () => {
    const m = llamaBlock();
    const data = dataFor(m, { samples: 8, dims: { N: 32 } });
    const targets = smoothingTargets(m.graph, {});
    expect(targets.map((t) => [t.activation, t.nodes.length])).toEqual([
      ['norm_out0', 4],
      ['gated_out0', 1],
    ]);
    const stats = await collectStatistics(m, data, targets.map((t) => ({ name: t.activation, histogram: false, channels: t.channels })), { progress: false });
    const maxima = new Map([...stats.channels].map(([k, v]) => [k, v.max]));
    const s = copyOf(m);
    const pass = smoothQuant({ maxima, alpha: 0.5, targets });
    runPipeline(s, [pass], { check: true });
    expect(pass.report.groups.map((r) => r.foldedInto)).toEqual(['norm (Mul by a constant)', 'up_proj (columns of the other factor\'s weight)']);
    expect(s.graph.nodes.length).toBe(m.graph.nodes.length); // nothing inserted
    const err = await compare(m, s, dataFor(m, { samples: 4, seed: 9, dims: { N: 32 } }));
    expect(err.relErr).toBeLessThan(1e-5);
    // The outlier channel (gamma 20) is divided the most; the activation's max shrinks.
    const norm = pass.report.groups[0]!;
    expect(norm.activationMaxAfter).toBeLessThan(norm.activationMaxBefore / 2);
    const after = await collectStatistics(s, data, [{ name: 'norm_out0', histogram: false, channels: 16 }], { progress: false });
    const before = maxima.get('norm_out0')!;
    const now = after.channels.get('norm_out0')!.max;
    expect(Math.max(...now) / Math.min(...now)).toBeLessThan(Math.max(...before) / Math.min(...before));
  });
});

describe('SmoothQuant alpha search', () => {
  it('measures no smoothing and every alpha on the calibration data and applies the best alpha', async () => {
    const m = llamaBlock();
    const calib = dataFor(m, { samples: 8, dims: { N: 32 } });
    const { report } = await quantized(m, calib, { smoothQuant: 'search' });
    const search = report.smoothQuant!.search!;
    expect(search.errors.map((e) => e.alpha)).toEqual(['none', 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    const best = search.errors.filter((e) => e.alpha !== 'none').reduce((a, b) => (b.error < a.error ? b : a));
    expect(report.smoothQuant!.alpha).toBe(best.alpha);
    expect(search.best).toBe(best.alpha);
  });
});

describe('sensitivity and --max-error', () => {
  /** x -> MatMul -> + mask (-1e9 on masked positions) -> Softmax -> MatMul -> out: the masked scores' range wrecks uint8. */
  function masked(): Model {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, ['N', 8, 16]);
    const mask = new Float32Array(64).map((_, i) => (i % 8 > Math.floor(i / 8) ? -1e9 : 0));
    const scores = b.op('MatMul', [x, b.initializer('wq', DataType.FLOAT, [16, 8], floats(128, 1, 0.5))], {}, { name: 'scores' });
    const biased = b.op('Add', [scores, b.initializer('mask', DataType.FLOAT, [8, 8], mask)], {}, { name: 'mask_add' });
    const p = b.op('Softmax', [biased], { axis: -1 }, { name: 'softmax' });
    const ctx = b.op('MatMul', [p, x], {}, { name: 'context' });
    const out = b.op('MatMul', [ctx, b.initializer('wo', DataType.FLOAT, [16, 16], floats(256, 2, 0.5))], {}, { name: 'out_proj' });
    b.output(out, { dtype: DataType.FLOAT, shape: ['N', 8, 16] });
    return cleanup(b.build());
  }

  it('the pair that wrecks the output is found first and kept float; the budget is met on the artifact too', async () => {
    const m = masked();
    const calib = dataFor(m, { samples: 8, dims: { N: 4 } });
    const naive = await quantized(m, calib, { chainMode: 'all' });
    const naiveErr = await compare(m, naive.model, calib);
    expect(naiveErr.relErr).toBeGreaterThan(0.3);
    const { model, report } = await quantized(m, calib, { chainMode: 'all', maxError: 0.05, errorRuns: 8, errorRows: 4 });
    expect(report.sensitivity![0]!.tensor).toBe('mask_add_out0');
    expect(report.keptFloat![0]!.nodes.map((n) => n.node).sort()).toEqual(['mask_add', 'softmax']);
    expect(report.error!.met).toBe(true);
    expect(report.nodes.map((n) => n.name)).toContain('out_proj');
    const err = await compare(m, model, calib);
    expect(err.relErr).toBeLessThan(0.05 * 1.5);
  });
});
