/**
 * GPTQ through the weight-quant pass and `compileModelAsync --calib`, checked with onnxruntime:
 *  - bit-exact: MatMul(I, W) returns onnxruntime's dequantization of the emitted weight, which
 *    must equal peftc's own dequantization of gptqQuantizeRows on the same weight and Hessian
 *    (MatMulNBits, DequantizeLinear-21, MatMulBnb4 and NF4 standard ops);
 *  - calibration end to end: on a two-layer model (MatMul, Relu, MatMul) with correlated inputs,
 *    onnxruntime's outputs of the GPTQ model are closer to the float model's than RTN's and MSE's,
 *    on the calibration inputs and on held-out inputs from the same distribution; the Hessians
 *    captured from onnxruntime's activations match X^T X computed here.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { runPipeline } from '../passes/pass.js';
import { calibrationTargets, weightQuantization, type WeightQuantOptions } from '../passes/weight-quant.js';
import { compileModelAsync } from '../src/compile.js';
import { DataType, float16BitsToFloat32, float32ToFloat16Bits } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { encodeModel } from '../src/onnx/encode.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { CALIB_BATCH, captureHessians, matchCalibrationData, readCalibrationArrays } from '../src/quant/calibration.js';
import { defaultQuantConfig, dequantizeRows, quantizeRows, type QuantConfig } from '../src/quant/blockwise.js';
import { gptqQuantizeRows } from '../src/quant/gptq.js';
import { runModel } from '../src/runtime/ort.js';
import { correlatedInputs, weightsF32 } from './helpers-calibration.js';
import { writeNpy, writeNpz } from './helpers-npy.js';

const tmp = mkdtempSync(join(tmpdir(), 'peftc-gptq-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function matmulModel(K: number, N: number, W: Float32Array): Model {
  const b = new ModelBuilder({ opset: 21, irVersion: 10 });
  const x = b.input('x', DataType.FLOAT, [K, K]);
  const w = b.initializer('W', DataType.FLOAT, [K, N], W);
  b.output(b.op('MatMul', [x, w], {}, { name: 'mm' }), { dtype: DataType.FLOAT, shape: [K, N] });
  return b.build();
}

function configFor(o: WeightQuantOptions): QuantConfig {
  return defaultQuantConfig({
    format: o.mode === 'nf4' ? 'nf4' : 'int',
    bits: o.mode === 'int8' ? 8 : 4,
    blockSize: o.blockSize ?? 32,
    symmetric: o.mode === 'nf4' ? true : (o.symmetric ?? false),
    method: o.scaleSearch ?? 'mse',
  });
}

/** W[K, N] -> rows [N, K] and back. */
function transpose(a: Float32Array, r: number, c: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j]!;
  return out;
}

function identity(k: number): Float32Array {
  const I = new Float32Array(k * k);
  for (let i = 0; i < k; i++) I[i * k + i] = 1;
  return I;
}

function firstMismatch(a: Float32Array, b: Float32Array): string | undefined {
  if (a.length !== b.length) return `length ${a.length} != ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `element ${i}: onnxruntime ${a[i]} vs peftc ${b[i]}`;
  return undefined;
}

describe('bit-exact: onnxruntime dequantizes GPTQ weights exactly as peftc does', () => {
  const cases: Array<[string, WeightQuantOptions, number, number]> = [
    ['int4 asymmetric MatMulNBits', { mode: 'int4', blockSize: 32 }, 96, 24],
    ['int4 symmetric MatMulNBits, K % bs != 0, rtn scales', { mode: 'int4', symmetric: true, blockSize: 16, scaleSearch: 'rtn' }, 77, 19],
    ['int8 asymmetric MatMulNBits', { mode: 'int8', blockSize: 64 }, 130, 10],
    ['int4 asymmetric QDQ', { mode: 'int4', format: 'qdq', blockSize: 32 }, 77, 21],
    ['int8 symmetric QDQ', { mode: 'int8', format: 'qdq', symmetric: true, blockSize: 16 }, 64, 9],
    ['nf4 MatMulBnb4', { mode: 'nf4', blockSize: 64 }, 128, 20],
    ['nf4 standard ops (K % bs != 0)', { mode: 'nf4', blockSize: 32 }, 90, 11],
  ];
  for (const [label, opts, K, N] of cases) {
    it(label, async () => {
      const W = weightsF32(K * N, K * 31 + N);
      const { H } = correlatedInputs(2 * K, K, K + N);
      const model = matmulModel(K, N, W);
      const pass = weightQuantization({ ...opts, method: 'gptq', hessians: new Map([['x', H]]), workers: 0 });
      runPipeline(model, [pass], { check: true });
      expect(pass.layers).toHaveLength(1);
      const layer = pass.layers[0]!;
      expect(layer.method).toBe('gptq');
      expect(layer.outputError!).toBeLessThan(layer.nearestOutputError!);
      const qdq = opts.format === 'qdq';
      const out = await runModel(model, { x: Tensor.fromTypedArray('x', DataType.FLOAT, [K, K], identity(K)) }, { graphOptimization: qdq ? 'basic' : 'all' });
      const got = Object.values(out)[0]!.toTypedArray<Float32Array>();
      const rows = transpose(W, K, N);
      const want = transpose(dequantizeRows(gptqQuantizeRows(rows, N, K, H, configFor(opts))), N, K);
      expect(firstMismatch(got, want), `${label}: ops ${model.graph.nodes.map((n) => n.opType).join(',')}`).toBeUndefined();
      // And it is not plain rounding in disguise.
      const plain = transpose(dequantizeRows(quantizeRows(rows, N, K, configFor(opts))), N, K);
      expect(firstMismatch(got, plain)).toBeDefined();
    });
  }

  it('Gemm (transB, alpha folded, beta * C): onnxruntime output equals the Gemm over peftc\'s GPTQ weights', async () => {
    const [M, K, N] = [8, 48, 20];
    const B = weightsF32(N * K, 31);
    const C = weightsF32(N, 32, 1);
    const build = (Bw: Float32Array, alpha: number) => {
      const b = new ModelBuilder({ opset: 21, irVersion: 10 });
      const x = b.input('x', DataType.FLOAT, [M, K]);
      const w = b.initializer('B', DataType.FLOAT, [N, K], Bw);
      b.output(b.op('Gemm', [x, w, b.initializer('C', DataType.FLOAT, [N], C)], { transB: 1, alpha: { float: alpha }, beta: { float: 0.5 } }, { name: 'g' }));
      return b.build();
    };
    const { H } = correlatedInputs(3 * K, K, 33);
    const model = build(B, 1.5);
    const opts: WeightQuantOptions = { mode: 'int4', blockSize: 16 };
    runPipeline(model, [weightQuantization({ ...opts, method: 'gptq', hessians: new Map([['x', H]]), workers: 0 })], { check: true });
    const Bq = dequantizeRows(gptqQuantizeRows(B.map((v) => Math.fround(v * 1.5)), N, K, H, configFor(opts)));
    const feeds = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [M, K], correlatedInputs(M, K, 34).X) };
    const got = Object.values(await runModel(model, feeds, { graphOptimization: 'basic' }))[0]!.toTypedArray<Float32Array>();
    const want = Object.values(await runModel(build(Bq, 1), feeds, { graphOptimization: 'basic' }))[0]!.toTypedArray<Float32Array>();
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(1e-5);
  });

  it('float16 model: float16 calibration data and activations; weights match peftc bit for bit', async () => {
    const [K, N] = [64, 16];
    const W = weightsF32(K * N, 41);
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    const x = b.input('x', DataType.FLOAT16, ['n', K]);
    const w = b.initializer('W', DataType.FLOAT16, [K, N], Uint16Array.from(W, float32ToFloat16Bits));
    b.output(b.op('MatMul', [x, w], {}, { name: 'mm' }), { dtype: DataType.FLOAT16, shape: ['n', N] });
    const path = join(tmp, 'fp16.onnx');
    saveModel(b.build(), path, { durable: false });
    const X = correlatedInputs(128, K, 42).X;
    const data = join(tmp, 'fp16.npy');
    const X16 = Uint16Array.from(X, float32ToFloat16Bits);
    writeNpy(data, { descr: '<f2', dims: [128, K], data: X16 });
    const out = join(tmp, 'fp16-gptq.onnx');
    const r = await compileModelAsync(path, { target: 'cpu', quant: 'int4', output: out, calib: data, weightQuant: { blockSize: 32 } });
    expect(r.quantization!.map((l) => l.method)).toEqual(['gptq']);
    // H from the float16 inputs as float32 values.
    const H = new Float64Array(K * K);
    for (let i = 0; i < 128; i++) for (let a = 0; a < K; a++) for (let c = 0; c < K; c++) H[a * K + c]! += float16BitsToFloat32(X16[i * K + a]!) * float16BitsToFloat32(X16[i * K + c]!);
    const rows = transpose(Float32Array.from(Uint16Array.from(W, float32ToFloat16Bits), float16BitsToFloat32), K, N);
    const want = transpose(dequantizeRows(gptqQuantizeRows(rows, N, K, H, { ...configFor({ mode: 'int4', blockSize: 32 }), scaleDtype: 'float16' })), N, K);
    const I = new Uint16Array(K * K);
    for (let i = 0; i < K; i++) I[i * K + i] = float32ToFloat16Bits(1);
    const got = Object.values(await runModel(out, { x: Tensor.fromTypedArray('x', DataType.FLOAT16, [K, K], I) }))[0]!.toTypedArray<Uint16Array>();
    // onnxruntime computes in float16: its output is peftc's weight rounded to float16.
    expect(firstMismatch(Float32Array.from(got, float16BitsToFloat32), Float32Array.from(want, (v) => float16BitsToFloat32(float32ToFloat16Bits(v))))).toBeUndefined();
  });

  it('worker threads (shared Hessians, two weights on one input) write the same model as the main thread', () => {
    const build = () => {
      const b = new ModelBuilder({ opset: 21, irVersion: 10 });
      const x = b.input('x', DataType.FLOAT, ['n', 64]);
      const q = b.op('MatMul', [x, b.initializer('Wq', DataType.FLOAT, [64, 48], weightsF32(64 * 48, 1))], {}, { name: 'q' });
      const k = b.op('MatMul', [x, b.initializer('Wk', DataType.FLOAT, [64, 48], weightsF32(64 * 48, 2))], {}, { name: 'k' });
      b.output(b.op('MatMul', [b.op('Add', [q, k]), b.initializer('Wo', DataType.FLOAT, [48, 16], weightsF32(48 * 16, 3))], {}, { name: 'o' }));
      return b.build();
    };
    const hessians = new Map([
      ['x', correlatedInputs(128, 64, 4).H],
      [build().graph.nodes[2]!.outputs[0]!.name, correlatedInputs(128, 48, 5).H],
    ]);
    expect(calibrationTargets(build(), { mode: 'int4' }).map((t) => [t.activation, t.k, t.weights])).toEqual([
      ['x', 64, ['Wq', 'Wk']],
      [[...hessians.keys()][1], 48, ['Wo']],
    ]);
    const encoded = (workers: number) => {
      const m = build();
      const pass = weightQuantization({ mode: 'int4', method: 'gptq', hessians, workers });
      runPipeline(m, [pass], { check: true });
      expect(pass.layers.map((l) => l.method)).toEqual(['gptq', 'gptq', 'gptq']);
      return encodeModel(m);
    };
    expect(Buffer.from(encoded(2)).equals(Buffer.from(encoded(0)))).toBe(true);
  });
});

describe('compile --calib: GPTQ output closer to the float model than RTN and MSE', () => {
  const K = 64;
  const D = 96;
  const N = 32;
  const build = () => {
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    const x = b.input('x', DataType.FLOAT, ['batch', K]);
    const h = b.op('MatMul', [x, b.initializer('fc1.weight', DataType.FLOAT, [K, D], weightsF32(K * D, 11, 0.15))], {}, { name: 'fc1' });
    const a = b.op('Relu', [h]);
    b.output(b.op('MatMul', [a, b.initializer('fc2.weight', DataType.FLOAT, [D, N], weightsF32(D * N, 12, 0.1))], {}, { name: 'fc2' }), { dtype: DataType.FLOAT, shape: ['batch', N] });
    return b.build();
  };
  const modelPath = join(tmp, 'two-layer.onnx');
  saveModel(build(), modelPath, { durable: false });
  const calib = correlatedInputs(256, K, 21, 100).X;
  const heldOut = correlatedInputs(256, K, 22, 100).X; // same mixing, other samples
  const calibPath = join(tmp, 'calib.npy');
  writeNpy(calibPath, { descr: '<f4', dims: [256, K], data: calib });

  const relErr = async (path: string, X: Float32Array) => {
    const feed = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [X.length / K, K], X) };
    const want = Object.values(await runModel(modelPath, feed))[0]!.toTypedArray<Float32Array>();
    const got = Object.values(await runModel(path, feed))[0]!.toTypedArray<Float32Array>();
    let num = 0;
    let den = 0;
    for (let i = 0; i < want.length; i++) {
      num += (got[i]! - want[i]!) ** 2;
      den += want[i]! ** 2;
    }
    return num / den;
  };

  it('int4: relative output error (squared) of gptq <= 0.7 x rtn and < mse, on calibration and held-out inputs', async () => {
    const errors: Record<string, [number, number]> = {};
    for (const method of ['rtn', 'mse', 'gptq', undefined] as const) {
      const out = join(tmp, `two-layer-${method ?? 'default'}.onnx`);
      const r = await compileModelAsync(modelPath, { target: 'cpu', quant: 'int4', output: out, check: true, calib: calibPath, weightQuant: method ? { method, blockSize: 16 } : { blockSize: 16 } });
      expect(r.calibration).toMatchObject({ runs: 256 / CALIB_BATCH, samples: 256, activations: 2 });
      expect(r.quantization!.map((l) => l.method)).toEqual([method ?? 'gptq', method ?? 'gptq']);
      for (const l of r.quantization!) {
        expect(l.outputError).toBeGreaterThan(0);
        if ((method ?? 'gptq') === 'gptq') expect(l.outputError!).toBeLessThan(l.nearestOutputError!);
      }
      errors[method ?? 'default'] = [await relErr(out, calib), await relErr(out, heldOut)];
    }
    console.log(`two-layer int4 block 16, relative squared output error [calibration, held-out]: ${Object.entries(errors).map(([k, [a, b]]) => `${k} ${a.toExponential(3)} ${b.toExponential(3)}`).join('; ')}`);
    expect(errors.default).toEqual(errors.gptq);
    for (const i of [0, 1]) {
      expect(errors.gptq![i]!).toBeLessThanOrEqual(0.7 * errors.rtn![i]!);
      expect(errors.gptq![i]!).toBeLessThan(errors.mse![i]!);
    }
  });

  it('captured Hessians equal X^T X of the layer inputs; stacked samples (.npy) and .npz give the same', async () => {
    const model = build();
    const targets = calibrationTargets(model, { mode: 'int4' });
    const whole = await captureHessians(model, targets, matchCalibrationData(readCalibrationArrays(calibPath), model));
    // The first layer's input is the graph input: H = X^T X directly.
    const { H } = correlatedInputs(256, K, 21, 100);
    const h0 = whole.hessians.get('x')!;
    for (let i = 0; i < K * K; i++) expect(Math.abs(h0[i]! - H[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(H[i]!)));
    // The second layer's input is Relu(X W1): computed here in float64 from the same inputs.
    const W1 = weightsF32(K * D, 11, 0.15);
    const H1 = new Float64Array(D * D);
    const a = new Float64Array(D);
    for (let r = 0; r < 256; r++) {
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += calib[r * K + k]! * W1[k * D + d]!;
        a[d] = Math.max(0, s);
      }
      for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) H1[i * D + j]! += a[i]! * a[j]!;
    }
    const h1 = whole.hessians.get(targets[1]!.activation)!;
    let maxRel = 0;
    for (let i = 0; i < D * D; i++) maxRel = Math.max(maxRel, Math.abs(h1[i]! - H1[i]!) / (1 + Math.sqrt(H1[Math.floor(i / D) * (D + 1)]! * H1[(i % D) * (D + 1)]!)));
    expect(maxRel).toBeLessThan(1e-5);
    expect(whole.rows.get('x')).toBe(256);

    // Fed whole, a batch axis is cut into runs of CALIB_BATCH rows that together are the array.
    const whole2 = matchCalibrationData(readCalibrationArrays(calibPath), model);
    expect([whole2.runs, whole2.samples]).toEqual([Math.ceil(256 / CALIB_BATCH), 256]);
    const parts = Array.from({ length: whole2.runs }, (_, r) => whole2.feed(r).x!);
    expect(parts.every((t, r) => t.dims[0] === Math.min(CALIB_BATCH, 256 - r * CALIB_BATCH) && t.dims[1] === K)).toBe(true);
    expect(Buffer.concat(parts.map((t) => t.bytes())).equals(Buffer.from([...readCalibrationArrays(calibPath).arrays.values()][0]!.bytes()))).toBe(true);

    // 4 stacked samples of 64 rows each, as .npy and as .npz: same sums (other order: close).
    const stackedPath = join(tmp, 'stacked.npy');
    writeNpy(stackedPath, { descr: '<f4', dims: [4, 64, K], data: calib });
    const npzPath = join(tmp, 'stacked.npz');
    writeNpz(npzPath, { x: { descr: '<f4', dims: [4, 64, K], data: calib } });
    for (const path of [stackedPath, npzPath]) {
      const data = matchCalibrationData(readCalibrationArrays(path), model);
      expect([data.runs, data.samples]).toEqual([4, 256]);
      // A small budget: one activation per onnxruntime run.
      const stacked = await captureHessians(model, targets, data, { budgetBytes: 1 });
      expect(stacked.sessionRuns).toBe(4);
      for (const t of targets) {
        const x = whole.hessians.get(t.activation)!;
        const y = stacked.hessians.get(t.activation)!;
        for (let i = 0; i < x.length; i++) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(1e-9 * (1 + Math.abs(x[i]!)));
      }
    }
  });

  it('never modifies the model it calibrates', async () => {
    const model = build();
    const before = encodeModel(model);
    const targets = calibrationTargets(model, { mode: 'int4' });
    await captureHessians(model, targets, matchCalibrationData(readCalibrationArrays(calibPath), model));
    expect(Buffer.from(encodeModel(model)).equals(Buffer.from(before))).toBe(true);
    expect(loadModel(modelPath).graph.outputs).toHaveLength(1);
  });

  it('refuses calibration data on which a layer sees only zeros; warns about never-active input channels', async () => {
    const zeros = join(tmp, 'zeros.npy');
    writeNpy(zeros, { descr: '<f4', dims: [16, K], data: new Float32Array(16 * K) });
    const out = join(tmp, 'zeros-out.onnx');
    await expect(compileModelAsync(modelPath, { target: 'cpu', quant: 'int4', output: out, calib: zeros })).rejects.toThrow(/every input of 'fc1.weight' is zero/);
    expect(existsSync(out)).toBe(false);
    // Half of the channels never active: quantized, with a warning naming the count.
    const half = new Float32Array(calib);
    for (let r = 0; r < 256; r++) for (let j = 0; j < K / 2; j++) half[r * K + j] = 0;
    const halfPath = join(tmp, 'half.npy');
    writeNpy(halfPath, { descr: '<f4', dims: [256, K], data: half });
    const logs: string[] = [];
    await compileModelAsync(modelPath, { target: 'cpu', quant: 'int4', output: out, calib: halfPath, log: (m) => logs.push(m) });
    expect(logs.some((m) => m.includes(`${K / 2} of ${K} input channels of 'fc1.weight' are zero`))).toBe(true);
  });
});
