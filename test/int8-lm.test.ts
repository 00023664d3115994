/**
 * INT8 on a decoder LM: models/lm (3.5M-parameter byte-level Llama, fp32 perplexity 2.1395 on the
 * 128 held-out windows of eval.bin), calibrated on models/lm/calib.npy (32 windows), evaluated on
 * onnxruntime-node by the same perplexity code as the bench.
 *
 *  - dynamic int8 (MatMulInteger form) within 1% of fp32;
 *  - static int8 with peftc's plan within 3%, and the naive plan (every op onnxruntime's
 *    quantize_static quantizes by default: residual Adds, norm Muls, the attention mask Add,
 *    Softmax, the rotary tables...) far outside it, the gap the remedies close;
 *  - SmoothQuant keeps it within 3% and folds its scales into the norms / up projections;
 *  - --max-error keeps the most sensitive nodes float until the simulated error fits the budget.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Model } from '../src/ir/model.js';
import type { InputData } from '../src/runtime/input-data.js';
import { ortOptimizedGraph } from '../src/quant/int8-kernels.js';
import { cleaned, dataFor, lmPerplexity, quantized } from './helpers-int8.js';

let lm: Model;
let calib: InputData;
let fp32: number;

beforeAll(async () => {
  lm = cleaned('models/lm/model.onnx');
  calib = dataFor(lm, 'models/lm/calib.npy');
  fp32 = await lmPerplexity(lm);
  expect(fp32).toBeCloseTo(2.1395, 3);
}, 120_000);

const count = (ops: Record<string, number>, op: string) => Object.entries(ops).filter(([k]) => k === op || k.endsWith(`::${op}`)).reduce((s, [, c]) => s + c, 0);

describe('models/lm int8', () => {
  it('dynamic: every linear layer integer (DynamicQuantizeMatMul / MatMulIntegerToFloat), perplexity within 1%', async () => {
    const { model, report } = await quantized(lm, calib, { mode: 'dynamic' });
    expect(report.nodes.length).toBe(29);
    const ort = await ortOptimizedGraph(model);
    expect(count(ort.ops, 'DynamicQuantizeMatMul') + count(ort.ops, 'MatMulIntegerToFloat')).toBe(29);
    const ppl = await lmPerplexity(model);
    expect(ppl / fp32).toBeLessThan(1.01);
  }, 120_000);

  it('static, peftc plan (minmax): within 3%; the naive everything-quantized plan is not', async () => {
    const { model, report } = await quantized(lm, calib, { calibMethod: 'minmax' });
    const ort = await ortOptimizedGraph(model);
    expect(count(ort.ops, 'QLinearMatMul') + count(ort.ops, 'MatMulIntegerToFloat')).toBe(37);
    expect(ort.integerKernels).toBe(report.nodes.length);
    const ppl = await lmPerplexity(model);
    expect(ppl / fp32).toBeLessThan(1.03);
    const naive = await quantized(lm, calib, { calibMethod: 'minmax', chainMode: 'all' });
    const nppl = await lmPerplexity(naive.model);
    expect(nppl / fp32).toBeGreaterThan(1.5);
  }, 240_000);

  it('static with SmoothQuant (alpha 0.5): within 3%, scales folded into the norms and up projections', async () => {
    const { model, report } = await quantized(lm, calib, { smoothQuant: 0.5, calibMethod: 'percentile' });
    const sq = report.smoothQuant!;
    expect(sq.groups.length).toBe(17);
    expect(sq.groups.filter((g) => g.foldedInto.includes('Mul by a constant')).length).toBe(9); // 8 layer norms + the final norm
    expect(sq.groups.filter((g) => g.foldedInto.includes('other factor')).length).toBe(4); // down_proj input -> up_proj columns
    for (const g of sq.groups) expect(g.activationMaxAfter).toBeLessThan(g.activationMaxBefore);
    const ppl = await lmPerplexity(model);
    expect(ppl / fp32).toBeLessThan(1.03);
  }, 240_000);

  it('--max-error: the most sensitive pairs go float until the simulated error fits', async () => {
    const budget = 0.03;
    const { model, report } = await quantized(lm, calib, { maxError: budget });
    expect(report.sensitivity!.length).toBeGreaterThan(50);
    expect(report.error!.met).toBe(true);
    expect(report.error!.relative).toBeLessThanOrEqual(budget);
    expect(report.keptFloat!.length).toBeGreaterThan(0);
    for (const k of report.keptFloat!) expect(k.errorAfter).toBeLessThan(k.errorBefore);
    const kept = report.keptFloat!.flatMap((k) => k.nodes.map((n) => n.node));
    for (const n of kept) expect(report.nodes.some((q) => q.name === n)).toBe(false);
    const ppl = await lmPerplexity(model);
    expect(ppl / fp32).toBeLessThan(1.03);
  }, 300_000);
});
