/**
 * AWQ (src/quant/awq.ts, `awq` in the weight-quant pass), against references written here:
 *  - the search: a slow, direct AWQ on a small layer group (mean |x| from the raw inputs, s on the
 *    grid, block rounding by the documented formulas, the loss ||X W - X W_hat||^2 summed over the
 *    group from X itself, not from H) picks the same alpha, with the same losses and scales;
 *  - folding: scaling a group's weights by s and its input by 1/s (into RMSNorm/LayerNorm weights,
 *    a Div, a Gemm's columns and bias, the up branch of a SwiGLU product, a quantized
 *    MatMulNBits' block scales, or an inserted Mul) leaves onnxruntime's outputs unchanged;
 *  - end to end: a norm + MatMul model quantized with awq runs on onnxruntime as
 *    x diag(1/s) Q(diag(s) W) of the reference, and its output error on the calibration data and
 *    on held-out inputs is below plain rounding's.
 */
import { describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { runPipeline } from '../passes/pass.js';
import { calibrationTargets, weightQuantization } from '../passes/weight-quant.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { applyAwqScales, awqScaleVector, awqSearch, scaleHessian, type AwqGroup } from '../src/quant/awq.js';
import { defaultQuantConfig, dequantizeRows } from '../src/quant/blockwise.js';
import { gptqQuantizeRows } from '../src/quant/gptq.js';
import { captureHessians, matchCalibrationData } from '../src/quant/calibration.js';
import { runModel } from '../src/runtime/ort.js';
import { gaussian, weightsF32 } from './helpers-calibration.js';
import { mulberry32 } from './rng.js';

const fround = Math.fround;

/** Inputs [m, k] with a few channels much larger than the rest (the case AWQ is for). */
function outlierInputs(m: number, k: number, seed: number): Float32Array {
  const z = gaussian(m * k, seed);
  const r = mulberry32(seed + 7);
  const gain = Float64Array.from({ length: k }, (_, j) => (j % 17 === 3 ? 12 : 0.5 + r()));
  return Float32Array.from(z, (v, i) => fround(v * gain[i % k]!));
}

/** Reference int4 asymmetric block rounding of one row (block `bs`), the formulas of blockwise.ts written out. */
function refRtnRow(w: Float64Array | Float32Array, bs: number): Float64Array {
  const out = new Float64Array(w.length);
  for (let b0 = 0; b0 < w.length; b0 += bs) {
    const blk = Array.from(w.slice(b0, Math.min(w.length, b0 + bs)), fround);
    const lo = Math.min(0, ...blk);
    const hi = Math.max(0, ...blk);
    const s = fround(fround(hi - lo) / 15);
    const zf = s !== 0 ? fround(-lo / s) : 0;
    const z = zf < 0 ? 0 : zf > 15 ? 15 : Math.sign(zf) * Math.floor(Math.abs(zf) + 0.5);
    const inv = s !== 0 ? fround(1 / s) : 0;
    blk.forEach((v, i) => {
      const y = fround(fround(v * inv) + z) + 0.5;
      const q = y <= 0 ? 0 : y >= 15 ? 15 : Math.floor(y);
      out[b0 + i] = fround((q - z) * s);
    });
  }
  return out;
}

/** The slow AWQ: for each alpha, quantize diag(s) W by the reference rounding, unscale, and measure ||X W - X W_hat||^2 from X. */
function referenceAwq(X: Float32Array, m: number, k: number, weights: Float32Array[], n: number, bs: number, grid: number) {
  const mean = new Float64Array(k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) mean[j]! += Math.abs(X[i * k + j]!) / m;
  const losses: number[] = [];
  const scalesAt: Float64Array[] = [];
  for (let g = 0; g < grid; g++) {
    const alpha = g / grid;
    let s = Array.from(mean, (v) => Math.max(alpha === 0 ? 1 : v ** alpha, 1e-4));
    const norm = Math.sqrt(Math.max(...s) * Math.min(...s));
    s = s.map((v) => v / norm);
    scalesAt.push(Float64Array.from(s));
    let loss = 0;
    for (const W of weights) {
      // W is [k, n] (a MatMul weight); rows of the quantizer are its columns.
      const What = new Float64Array(k * n);
      for (let c = 0; c < n; c++) {
        const row = new Float64Array(k);
        for (let j = 0; j < k; j++) row[j] = fround(W[j * n + c]! * s[j]!);
        const q = refRtnRow(row, bs);
        for (let j = 0; j < k; j++) What[j * n + c] = q[j]! / s[j]!;
      }
      for (let i = 0; i < m; i++) {
        for (let c = 0; c < n; c++) {
          let y = 0;
          let yh = 0;
          for (let j = 0; j < k; j++) {
            y += X[i * k + j]! * W[j * n + c]!;
            yh += X[i * k + j]! * What[j * n + c]!;
          }
          loss += (y - yh) ** 2;
        }
      }
    }
    losses.push(loss);
  }
  const best = losses.indexOf(Math.min(...losses));
  return { alpha: best / grid, losses, scales: scalesAt[best]!, mean };
}

function hessianOf(X: Float32Array, m: number, k: number): Float64Array {
  const H = new Float64Array(k * k);
  for (let i = 0; i < m; i++) for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) H[a * k + b]! += X[i * k + a]! * X[i * k + b]!;
  return H;
}

/** W [k, n] -> the quantizer's rows [n, k]. */
function rowsOf(W: Float32Array, k: number, n: number): Float32Array {
  const out = new Float32Array(k * n);
  for (let j = 0; j < k; j++) for (let c = 0; c < n; c++) out[c * k + j] = W[j * n + c]!;
  return out;
}

describe('awq search against a direct reference', () => {
  it('two layers sharing one input (q/k-like): same alpha, losses and scales as the slow AWQ on X', () => {
    const [m, k, n, bs, grid] = [96, 48, 20, 16, 10];
    const X = outlierInputs(m, k, 5);
    const Wq = weightsF32(k * n, 6, 0.2);
    const Wk = weightsF32(k * n, 7, 0.2);
    const ref = referenceAwq(X, m, k, [Wq, Wk], n, bs, grid);
    const config = defaultQuantConfig({ bits: 4, blockSize: bs, symmetric: false, method: 'rtn' });
    const got = awqSearch([{ values: rowsOf(Wq, k, n), rows: n }, { values: rowsOf(Wk, k, n), rows: n }], k, hessianOf(X, m, k), ref.mean, config, { grid });
    expect(got.alpha).toBe(ref.alpha);
    expect(got.alpha).toBeGreaterThan(0); // the outlier channels make scaling pay
    for (let i = 0; i < grid; i++) expect(Math.abs(got.losses[i]! - ref.losses[i]!)).toBeLessThanOrEqual(1e-6 * ref.losses[i]!);
    expect(got.plainLoss).toBe(got.losses[0]);
    expect(got.loss).toBeLessThan(0.8 * got.plainLoss);
    for (let j = 0; j < k; j++) expect(got.scales[j]).toBeCloseTo(ref.scales[j]!, 12);
  });

  it('row sampling scores evenly spaced rows only (a subset of the full loss)', () => {
    const [m, k, n, bs] = [64, 32, 40, 16];
    const X = outlierInputs(m, k, 9);
    const W = weightsF32(k * n, 10, 0.2);
    const config = defaultQuantConfig({ bits: 4, blockSize: bs, symmetric: false, method: 'rtn' });
    const H = hessianOf(X, m, k);
    const mean = referenceAwq(X, m, k, [W], n, bs, 1).mean;
    const all = awqSearch([{ values: rowsOf(W, k, n), rows: n }], k, H, mean, config, { grid: 4 });
    const half = awqSearch([{ values: rowsOf(W, k, n), rows: n }], k, H, mean, config, { grid: 4, searchRows: 20 });
    for (let i = 0; i < 4; i++) expect(half.losses[i]!).toBeLessThan(all.losses[i]!);
  });
});

// ---------------------------------------------------------------------------------------------

interface Built {
  model: Model;
  /** The i-th layer group, built from the graph as it is now. */
  group: (i: number) => AwqGroup;
}

const K = 32;
const D = 48;

/**
 * x -> Mul(gamma) -> {MatMul Wa, MatMul Wb} -> Tanh(a) * b -> MatMul Wc -> + x -> LayerNormalization
 *   -> Gemm(transB, bias) -> {Relu -> MatMul We (inserted Mul), Div(delta) -> MatMul Wf (Div folds)}
 */
function buildBlock(): Built {
  const b = new ModelBuilder({ opset: 21, irVersion: 10 });
  const x = b.input('x', DataType.FLOAT, ['n', K]);
  const gamma = b.initializer('gamma', DataType.FLOAT, [K], Float32Array.from(gaussian(K, 1, 0.3), (v) => fround(1 + v)));
  const n1 = b.op('Mul', [x, gamma], {}, { name: 'norm_mul' });
  const a = b.op('MatMul', [n1, b.initializer('Wa', DataType.FLOAT, [K, D], weightsF32(K * D, 2, 0.2))], {}, { name: 'a_proj' });
  const bb = b.op('MatMul', [n1, b.initializer('Wb', DataType.FLOAT, [K, D], weightsF32(K * D, 3, 0.2))], {}, { name: 'b_proj' });
  const prod = b.op('Mul', [b.op('Tanh', [a]), bb], {}, { name: 'glu' });
  const c = b.op('MatMul', [prod, b.initializer('Wc', DataType.FLOAT, [D, K], weightsF32(D * K, 4, 0.2))], {}, { name: 'c_proj' });
  const r = b.op('Add', [c, x]);
  const ln = b.op('LayerNormalization', [r, b.initializer('ln_scale', DataType.FLOAT, [K], Float32Array.from(gaussian(K, 5, 0.2), (v) => fround(1 + v))), b.initializer('ln_bias', DataType.FLOAT, [K], Float32Array.from(gaussian(K, 6, 0.1), fround))], { axis: -1 }, { name: 'ln' });
  const d = b.op('Gemm', [ln, b.initializer('Wd', DataType.FLOAT, [D, K], weightsF32(D * K, 7, 0.2)), b.initializer('bd', DataType.FLOAT, [D], Float32Array.from(gaussian(D, 8, 0.1), fround))], { transB: 1 }, { name: 'd_proj' });
  const e = b.op('MatMul', [b.op('Relu', [d]), b.initializer('We', DataType.FLOAT, [D, K], weightsF32(D * K, 9, 0.2))], {}, { name: 'e_proj' });
  const f = b.op('MatMul', [b.op('Div', [d, b.initializer('delta', DataType.FLOAT, [D], Float32Array.from(gaussian(D, 10, 0.2), (v) => fround(1.5 + v)))], {}, { name: 'div' }), b.initializer('Wf', DataType.FLOAT, [D, K], weightsF32(D * K, 11, 0.2))], {}, { name: 'f_proj' });
  b.output(b.op('Add', [e, f]), { dtype: DataType.FLOAT, shape: ['n', K] });
  const model = b.build();
  const g = model.graph;
  const node = (name: string) => g.nodes.find((n) => n.name === name)!;
  const w = (name: string, consumer: string, transpose = true) => {
    const v = g.localValue(name)!;
    const [d0, d1] = v.initializer!.dims as [number, number];
    return { weight: v, rows: transpose ? d1 : d0, cols: transpose ? d0 : d1, transpose, multiplier: 1, consumers: [node(consumer)] };
  };
  const groups = [
    () => ({ activation: node('a_proj').inputs[0]!, k: K, weights: [w('Wa', 'a_proj'), w('Wb', 'b_proj')] }),
    () => ({ activation: node('c_proj').inputs[0]!, k: D, weights: [w('Wc', 'c_proj')] }),
    () => ({ activation: node('d_proj').inputs[0]!, k: K, weights: [w('Wd', 'd_proj', false)] }),
    () => ({ activation: node('e_proj').inputs[0]!, k: D, weights: [w('We', 'e_proj')] }),
    () => ({ activation: node('f_proj').inputs[0]!, k: D, weights: [w('Wf', 'f_proj')] }),
  ];
  return { model, group: (i) => groups[i]!() };
}

async function outputs(model: Model, X: Float32Array): Promise<Float32Array> {
  const out = await runModel(model, { x: Tensor.fromTypedArray('x', DataType.FLOAT, [X.length / K, K], X) }, { graphOptimization: 'disabled' });
  return Object.values(out)[0]!.toTypedArray<Float32Array>();
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

function randomScales(k: number, seed: number): Float64Array {
  const r = mulberry32(seed);
  return Float64Array.from({ length: k }, () => Math.exp(2 * (r() - 0.5) * 1.5));
}

describe('folding 1/s: onnxruntime outputs do not change', () => {
  const X = outlierInputs(16, K, 21);

  it('norm weight, SwiGLU up branch, LayerNormalization, Gemm columns, Div, inserted Mul', async () => {
    const { model, group } = buildBlock();
    const before = await outputs(model, X);
    const folds: string[] = [];
    // Last group first, as the pass does (a fold into an earlier layer before that layer's own scaling).
    for (let i = 4; i >= 0; i--) {
      const g = group(i);
      folds[i] = applyAwqScales(model.graph, g, randomScales(g.k, 100 + i)).fold;
    }
    expect(folds).toEqual([
      "Mul 'norm_mul' constant",
      "MatMul 'b_proj' weight columns",
      "LayerNormalization 'ln' scale + LayerNormalization 'ln' bias",
      'inserted Mul',
      "Div 'div' divisor",
    ]);
    // The weights did change (not a no-op).
    expect(model.graph.localValue('Wa')!.initializer!.toTypedArray<Float32Array>()[0]).not.toBe(weightsF32(K * D, 2, 0.2)[0]);
    const after = await outputs(model, X);
    expect(relDiff(after, before)).toBeLessThan(1e-5);
  });

  it('a Gemm producer with bias, a shared norm output read by Shape, and a value read elsewhere (Mul inserted)', async () => {
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    const x = b.input('x', DataType.FLOAT, ['n', K]);
    const g1 = b.op('Gemm', [x, b.initializer('W1', DataType.FLOAT, [K, D], weightsF32(K * D, 31, 0.2)), b.initializer('b1', DataType.FLOAT, [D], Float32Array.from(gaussian(D, 32, 0.1), fround))], {}, { name: 'g1' });
    const shape = b.op('Shape', [g1]);
    const y = b.op('MatMul', [g1, b.initializer('W2', DataType.FLOAT, [D, K], weightsF32(D * K, 33, 0.2))], {}, { name: 'mm2' });
    const n2 = b.op('Mul', [y, b.initializer('g2', DataType.FLOAT, [K], Float32Array.from(gaussian(K, 34, 0.2), (v) => fround(1 + v)))], {}, { name: 'n2' });
    const z = b.op('MatMul', [n2, b.initializer('W3', DataType.FLOAT, [K, K], weightsF32(K * K, 35, 0.2))], {}, { name: 'mm3' });
    b.output(b.op('Add', [z, n2]), { dtype: DataType.FLOAT, shape: ['n', K] }); // n2 also read by the Add: no fold
    b.output(shape);
    const model = b.build();
    const g = model.graph;
    const node = (name: string) => g.nodes.find((n) => n.name === name)!;
    const before = await outputs(model, X);
    const fold2 = applyAwqScales(g, { activation: node('mm2').inputs[0]!, k: D, weights: [{ weight: g.localValue('W2')!, rows: K, cols: D, transpose: true, multiplier: 1, consumers: [node('mm2')] }] }, randomScales(D, 5));
    const fold3 = applyAwqScales(g, { activation: node('mm3').inputs[0]!, k: K, weights: [{ weight: g.localValue('W3')!, rows: K, cols: K, transpose: true, multiplier: 1, consumers: [node('mm3')] }] }, randomScales(K, 6));
    expect(fold2.fold).toBe("Gemm 'g1' weight columns + Gemm 'g1' bias");
    expect(fold3.fold).toBe('inserted Mul');
    expect(fold3.activationChanged).toBe(false);
    expect(relDiff(await outputs(model, X), before)).toBeLessThan(1e-5);
  });

  it("onnxruntime's fused norms (SimplifiedLayerNormalization, SkipSimplifiedLayerNormalization with its sum read on, SkipLayerNormalization): scale and bias", async () => {
    const b = new ModelBuilder({ opset: 21, irVersion: 10, extraOpsets: { 'com.microsoft': 1 } });
    const x = b.input('x', DataType.FLOAT, ['n', K]);
    const vec = (name: string, seed: number, base: number) => b.initializer(name, DataType.FLOAT, [K], Float32Array.from(gaussian(K, seed, 0.3), (v) => fround(base + v)));
    const mat = (name: string, seed: number) => b.initializer(name, DataType.FLOAT, [K, K], weightsF32(K * K, seed, 0.2));
    const n1 = b.op('SimplifiedLayerNormalization', [x, vec('g1', 51, 1)], { axis: -1, epsilon: 1e-5 }, { name: 'rms1' });
    const y1 = b.op('MatMul', [n1, mat('W1', 52)], {}, { name: 'mm1' });
    // Skip RMSNorm: output 0 feeds mm2, output 3 (x + y1) is the residual read by the next norm.
    const [n2, , , sum] = b.opMulti('SkipSimplifiedLayerNormalization', [x, y1, vec('g2', 53, 1)], { epsilon: 1e-5 }, { domain: 'com.microsoft', name: 'skip_rms', outputs: 4 });
    const y2 = b.op('MatMul', [n2!, mat('W2', 54)], {}, { name: 'mm2' });
    const [n3] = b.opMulti('SkipLayerNormalization', [sum!, y2, vec('g3', 55, 1), vec('b3', 56, 0)], { epsilon: 1e-5 }, { domain: 'com.microsoft', name: 'skip_ln', outputs: 1 });
    b.output(b.op('MatMul', [n3!, mat('W3', 57)], {}, { name: 'mm3' }), { dtype: DataType.FLOAT, shape: ['n', K] });
    const model = b.build();
    const g = model.graph;
    const node = (name: string) => g.nodes.find((n) => n.name === name)!;
    const before = await outputs(model, X);
    const folds = ['mm3', 'mm2', 'mm1'].map((mm, i) => {
      const w = node(mm).inputs[1]!;
      return applyAwqScales(g, { activation: node(mm).inputs[0]!, k: K, weights: [{ weight: w, rows: K, cols: K, transpose: true, multiplier: 1, consumers: [node(mm)] }] }, randomScales(K, 60 + i)).fold;
    });
    expect(folds).toEqual([
      "SkipLayerNormalization 'skip_ln' scale + SkipLayerNormalization 'skip_ln' bias",
      "SkipSimplifiedLayerNormalization 'skip_rms' scale",
      "SimplifiedLayerNormalization 'rms1' scale",
    ]);
    expect(relDiff(await outputs(model, X), before)).toBeLessThan(1e-5);
  });

  it('into a producer already quantized (MatMulNBits block scales): outputs unchanged, codes untouched', async () => {
    const { model, group } = buildBlock();
    // Quantize Wb first (as layer-by-layer quantization does), then scale the group that reads glu's output.
    runPipeline(model, [weightQuantization({ mode: 'int4', method: 'rtn', only: new Set(['Wb']), workers: 0 })]);
    const codes = model.graph.localValue('Wb_Q4')!.initializer!.bytes().slice();
    const before = await outputs(model, X);
    const g = group(1);
    const r = applyAwqScales(model.graph, g, randomScales(D, 7));
    expect(r.fold).toBe("MatMulNBits 'b_proj' block scales");
    expect(r.activationChanged).toBe(true);
    expect(Buffer.from(model.graph.localValue('Wb_Q4')!.initializer!.bytes()).equals(Buffer.from(codes))).toBe(true);
    expect(relDiff(await outputs(model, X), before)).toBeLessThan(1e-5);
  });

  it('into a producer already quantized as DequantizeLinear (qdq): its scales columns', async () => {
    const { model, group } = buildBlock();
    runPipeline(model, [weightQuantization({ mode: 'int4', method: 'rtn', format: 'qdq', only: new Set(['Wb']), workers: 0 })]);
    const before = await outputs(model, X);
    const r = applyAwqScales(model.graph, group(1), randomScales(D, 8));
    expect(r.fold).toMatch(/^DequantizeLinear '.*' scales$/);
    expect(relDiff(await outputs(model, X), before)).toBeLessThan(1e-5);
  });
});

describe('weight-quant pass with awq, on onnxruntime', () => {
  const [k, n, m] = [64, 24, 256];
  const gamma = Float32Array.from(gaussian(k, 41, 0.3), (v) => fround(1 + v));
  const W = weightsF32(k * n, 42, 0.2);
  const build = () => {
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    const x = b.input('x', DataType.FLOAT, ['n', k]);
    const h = b.op('Mul', [x, b.initializer('gamma', DataType.FLOAT, [k], gamma)], {}, { name: 'norm' });
    b.output(b.op('MatMul', [h, b.initializer('W', DataType.FLOAT, [k, n], W)], {}, { name: 'proj' }), { dtype: DataType.FLOAT, shape: ['n', n] });
    return b.build();
  };
  const calib = outlierInputs(m, k, 43);
  const heldOut = outlierInputs(m, k, 44);
  const run = async (model: Model, X: Float32Array) =>
    Object.values(await runModel(model, { x: Tensor.fromTypedArray('x', DataType.FLOAT, [X.length / k, k], X) }))[0]!.toTypedArray<Float32Array>();
  const normed = (X: Float32Array) => Float32Array.from(X, (v, i) => fround(v * gamma[i % k]!));

  it('int4 rtn + awq: the output is x diag(1/s) Q(diag(s) W) of the reference search, and beats plain rtn', async () => {
    const model = build();
    const targets = calibrationTargets(model, { mode: 'int4' });
    const data = matchCalibrationData({ path: 'calib', arrays: new Map([['x', Tensor.fromTypedArray('x', DataType.FLOAT, [m, k], calib)]]) }, model);
    const cap = await captureHessians(model, targets, data, { absMeans: true });
    const act = targets[0]!.activation;
    const pass = weightQuantization({ mode: 'int4', method: 'rtn', blockSize: 16, awq: true, hessians: cap.hessians, activationMeans: cap.absMeans, workers: 0 });
    runPipeline(model, [pass], { check: true });
    expect(pass.awqGroups).toHaveLength(1);
    const group = pass.awqGroups[0]!;
    expect(group.fold).toBe("Mul 'norm' constant");
    expect(pass.layers[0]!.awq).toEqual({ alpha: group.alpha, fold: group.fold, activation: act });
    // The reference search on the normalized calibration inputs.
    const ref = referenceAwq(normed(calib), m, k, [W], n, 16, 20);
    expect(group.alpha).toBe(ref.alpha);
    expect(group.alpha).toBeGreaterThan(0);
    // onnxruntime's output against X_normed diag(1/s) Q(diag(s) W) computed by the reference.
    const What = new Float64Array(k * n);
    for (let c = 0; c < n; c++) {
      const row = new Float64Array(k);
      for (let j = 0; j < k; j++) row[j] = fround(W[j * n + c]! * ref.scales[j]!);
      const q = refRtnRow(row, 16);
      for (let j = 0; j < k; j++) What[j * n + c] = q[j]! / ref.scales[j]!;
    }
    const Xn = normed(heldOut);
    const want = new Float32Array(m * n);
    for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += Xn[i * k + j]! * What[j * n + c]!;
      want[i * n + c] = s;
    }
    expect(relDiff(await run(model, heldOut), want)).toBeLessThan(2e-6);

    // Against plain rounding of the same model: lower output error on calibration and held-out data.
    const plain = build();
    runPipeline(plain, [weightQuantization({ mode: 'int4', method: 'rtn', blockSize: 16, workers: 0 })]);
    const float = build();
    for (const X of [calib, heldOut]) {
      const ref32 = await run(float, X);
      const eAwq = relDiff(await run(model, X), ref32);
      const ePlain = relDiff(await run(plain, X), ref32);
      expect(eAwq).toBeLessThan(0.85 * ePlain);
    }
  });

  it('awq + gptq: the output is x diag(1/s) GPTQ(diag(s) W, diag(1/s) H diag(1/s)); both awq forms beat gptq alone here', async () => {
    const errors: Record<string, number> = {};
    const float = build();
    // GPTQ needs many more rows than K not to fit the calibration data.
    const rows = 16 * k;
    const many = outlierInputs(rows, k, 45);
    const ref32 = await run(float, heldOut);
    for (const [label, opts] of [
      ['gptq', { method: 'gptq' }],
      ['awq', { method: 'mse', awq: true }],
      ['awq+gptq', { method: 'gptq', awq: true }],
    ] as const) {
      const model = build();
      const targets = calibrationTargets(model, { mode: 'int4' });
      const data = matchCalibrationData({ path: 'calib', arrays: new Map([['x', Tensor.fromTypedArray('x', DataType.FLOAT, [rows, k], many)]]) }, model);
      const cap = await captureHessians(model, targets, data, { absMeans: true });
      const pass = weightQuantization({ mode: 'int4', blockSize: 16, hessians: cap.hessians, activationMeans: cap.absMeans, workers: 0, ...opts });
      runPipeline(model, [pass], { check: true });
      errors[label] = relDiff(await run(model, heldOut), ref32);
      if (label !== 'awq+gptq') continue;
      // The composition, from the library's GPTQ (checked against references in gptq.test.ts) on
      // the scaled weights and the Hessian of the normalized inputs as computed here.
      const group = pass.awqGroups[0]!;
      const Xn = normed(many);
      const mean = new Float64Array(k);
      for (let i = 0; i < rows; i++) for (let j = 0; j < k; j++) mean[j]! += Math.abs(Xn[i * k + j]!) / rows;
      const s = awqScaleVector(mean, group.alpha);
      const H = hessianOf(Xn, rows, k);
      const Hs = scaleHessian(H, k, Float64Array.from(s, (v) => 1 / v));
      const scaledRows = rowsOf(W, k, n).map((v, i) => v * s[i % k]!);
      const q = dequantizeRows(gptqQuantizeRows(scaledRows, n, k, Hs, defaultQuantConfig({ bits: 4, blockSize: 16, symmetric: false, method: 'mse' })));
      const Xh = normed(heldOut);
      const want = new Float32Array(m * n);
      for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) {
        let acc = 0;
        for (let j = 0; j < k; j++) acc += (Xh[i * k + j]! / s[j]!) * q[c * k + j]!;
        want[i * n + c] = acc;
      }
      expect(relDiff(await run(model, heldOut), want)).toBeLessThan(1e-5);
    }
    console.log(`awq test layer, held-out relative output error: ${Object.entries(errors).map(([a, b]) => `${a} ${b.toExponential(3)}`).join(', ')}`);
    expect(errors.awq!).toBeLessThan(0.8 * errors.gptq!);
    expect(errors['awq+gptq']!).toBeLessThan(0.8 * errors.gptq!);
  });

  it('refuses awq without calibration data', () => {
    expect(() => runPipeline(build(), [weightQuantization({ mode: 'int4', awq: true })])).toThrow(/awq needs calibration data/);
  });
});
