/**
 * Layer-by-layer calibration and quantization (src/quant/layerwise.ts):
 *  - sequential GPTQ against a reference computed here: layer 1's Hessian is X^T X of the data,
 *    layer 2's is A^T A of A = tanh(X W1q) with W1q the reference GPTQ of layer 1 (so layer i's
 *    quantized output feeds layer i + 1's capture; the float model's A gives a clearly different
 *    H), and the written model runs on onnxruntime as the reference weights do;
 *  - the Hessian limit: a step over `maxHessianBytes` is refused, and a model whose Hessians all
 *    together exceed it quantizes when each one fits;
 *  - AWQ layer by layer: after every fold (norm weights, an already quantized MatMulNBits, inserted
 *    Muls) the Hessian each group was quantized with is exactly that of what its layers read in the
 *    final model, measured on onnxruntime;
 *  - peak memory, in child processes: a generated 160-layer model whose Hessians alone take 320 MiB
 *    quantizes with GPTQ layer by layer under a 256 MiB peak RSS, where capturing every Hessian
 *    first goes over it. (The child runs the built dist/, as the CLI tests do: `npm test` builds it.)
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { saveModel } from '../src/onnx/io.js';
import { scaleHessian } from '../src/quant/awq.js';
import { defaultQuantConfig, dequantizeRows } from '../src/quant/blockwise.js';
import { captureHessians, matchCalibrationData } from '../src/quant/calibration.js';
import { gptqQuantizeRows } from '../src/quant/gptq.js';
import { quantizeLayerwise } from '../src/quant/layerwise.js';
import { runModel } from '../src/runtime/ort.js';
import { correlatedInputs, gaussian, weightsF32 } from './helpers-calibration.js';
import { writeNpy } from './helpers-npy.js';

const ROOT = resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'peftc-layerwise-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const data = (model: Model, X: Float32Array, k: number) =>
  matchCalibrationData({ path: 'calib', arrays: new Map([['x', Tensor.fromTypedArray('x', DataType.FLOAT, [X.length / k, k], X)]]) }, model);

function relFro(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

function gram(A: ArrayLike<number>, m: number, k: number): Float64Array {
  const H = new Float64Array(k * k);
  for (let i = 0; i < m; i++) for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) H[a * k + b]! += A[i * k + a]! * A[i * k + b]!;
  return H;
}

/** [k, n] <-> quantizer rows [n, k]. */
function t(a: ArrayLike<number>, r: number, c: number): Float32Array {
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j]!;
  return out;
}

describe('sequential GPTQ against a reference', () => {
  const [K, D, N, M] = [48, 64, 32, 384];
  const W1 = weightsF32(K * D, 1, 0.3);
  const W2 = weightsF32(D * N, 2, 0.2);
  const build = () => {
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    const x = b.input('x', DataType.FLOAT, ['n', K]);
    const a = b.op('Tanh', [b.op('MatMul', [x, b.initializer('W1', DataType.FLOAT, [K, D], W1)], {}, { name: 'l1' })], {}, { name: 'act' });
    b.output(b.op('MatMul', [a, b.initializer('W2', DataType.FLOAT, [D, N], W2)], {}, { name: 'l2' }), { dtype: DataType.FLOAT, shape: ['n', N] });
    return b.build();
  };
  const X = correlatedInputs(M, K, 3).X;
  const heldOut = correlatedInputs(64, K, 4, 4).X;
  const config = defaultQuantConfig({ bits: 4, blockSize: 16, symmetric: false, method: 'mse' });

  it("layer 2's Hessian comes from layer 1 as quantized; the model matches the reference weights", async () => {
    const model = build();
    const seen = new Map<string, Float64Array>();
    const r = await quantizeLayerwise(model, data(model, X, K), { mode: 'int4', method: 'gptq', blockSize: 16, workers: 0, check: true, onHessian: (a, h) => seen.set(a, Float64Array.from(h)) });
    expect(r.layers.map((l) => [l.weight, l.method])).toEqual([
      ['W1', 'gptq'],
      ['W2', 'gptq'],
    ]);
    expect(r.activations).toBe(2);
    // Layer 1: X^T X.
    const H1 = gram(X, M, K);
    expect(relFro(seen.get('x')!, H1)).toBeLessThan(1e-12);
    // Layer 2: from the reference GPTQ of layer 1.
    const W1q = t(dequantizeRows(gptqQuantizeRows(t(W1, K, D), D, K, H1, config)), D, K); // [K, D]
    const act = (W: Float32Array) => {
      const A = new Float64Array(M * D);
      for (let i = 0; i < M; i++) for (let d = 0; d < D; d++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += X[i * K + k]! * W[k * D + d]!;
        A[i * D + d] = Math.tanh(s);
      }
      return A;
    };
    const H2ref = gram(act(W1q), M, D);
    const H2float = gram(act(W1), M, D);
    const H2 = seen.get(model.graph.nodes.find((n) => n.name === 'l2')!.inputs[0]!.name) ?? [...seen.values()][1]!;
    const got = relFro(H2, H2ref);
    expect(got).toBeLessThan(1e-5);
    // The float model's layer-2 inputs give a different Hessian: the check above can tell them apart.
    expect(relFro(H2float, H2ref)).toBeGreaterThan(100 * Math.max(got, 1e-9));
    // The written model: x -> tanh(x W1q) W2q on onnxruntime (W2q: GPTQ with the Hessian it used).
    const W2q = t(dequantizeRows(gptqQuantizeRows(t(W2, D, N), N, D, H2, config)), N, D);
    const out = Object.values(await runModel(model, { x: Tensor.fromTypedArray('x', DataType.FLOAT, [64, K], heldOut) }))[0]!.toTypedArray<Float32Array>();
    const want = new Float64Array(64 * N);
    for (let i = 0; i < 64; i++) {
      const a = new Float64Array(D);
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += heldOut[i * K + k]! * W1q[k * D + d]!;
        a[d] = Math.tanh(s);
      }
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += a[d]! * W2q[d * N + n]!;
        want[i * N + n] = s;
      }
    }
    expect(relFro(out, want)).toBeLessThan(1e-5);
  });

  it('maxHessianBytes: each step within the limit passes though all Hessians together exceed it; a step over it is refused', async () => {
    const h1 = K * K * 8;
    const h2 = D * D * 8;
    const model = build();
    const r = await quantizeLayerwise(model, data(model, X, K), { mode: 'int4', method: 'gptq', blockSize: 16, workers: 0, maxHessianBytes: h2 + 1024 });
    expect(r.peakHessianBytes).toBe(h2);
    expect(r.allHessianBytes).toBe(h1 + h2);
    expect(r.allHessianBytes).toBeGreaterThan(h2 + 1024);
    const again = build();
    await expect(quantizeLayerwise(again, data(again, X, K), { mode: 'int4', method: 'gptq', blockSize: 16, workers: 0, maxHessianBytes: h2 - 1 })).rejects.toThrow(/needs 0\.0 MiB of Hessian \(64 x 64 float64\), over the limit.*--hessian-memory/);
    // Refused from the plan, before the first (smaller) step quantized anything.
    expect(again.graph.nodes.filter((n) => n.opType === 'MatMulNBits')).toHaveLength(0);
  });
});

describe('AWQ layer by layer: every group is quantized with the Hessian of what its layers read in the final model', () => {
  const K = 32;
  const D = 48;
  const build = () => {
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    const x = b.input('x', DataType.FLOAT, ['n', K]);
    const gamma = b.initializer('gamma', DataType.FLOAT, [K], Float32Array.from(gaussian(K, 1, 0.3), (v) => Math.fround(1 + v)));
    const n1 = b.op('Mul', [x, gamma], {}, { name: 'norm_mul' });
    const a = b.op('MatMul', [n1, b.initializer('Wa', DataType.FLOAT, [K, D], weightsF32(K * D, 2, 0.2))], {}, { name: 'a_proj' });
    const bb = b.op('MatMul', [n1, b.initializer('Wb', DataType.FLOAT, [K, D], weightsF32(K * D, 3, 0.2))], {}, { name: 'b_proj' });
    const prod = b.op('Mul', [b.op('Tanh', [a]), bb], {}, { name: 'glu' });
    const c = b.op('MatMul', [prod, b.initializer('Wc', DataType.FLOAT, [D, K], weightsF32(D * K, 4, 0.2))], {}, { name: 'c_proj' });
    const r = b.op('Add', [c, x], {}, { name: 'residual' });
    const e = b.op('MatMul', [b.op('Relu', [r]), b.initializer('We', DataType.FLOAT, [K, K], weightsF32(K * K, 5, 0.2))], {}, { name: 'e_proj' });
    b.output(e, { dtype: DataType.FLOAT, shape: ['n', K] });
    return b.build();
  };
  // Inputs with a few large channels.
  const M = 512;
  const X = Float32Array.from(gaussian(M * K, 7), (v, i) => Math.fround(v * (i % K === 5 ? 8 : 1)));

  it('folds into the norm weight, into the already quantized up branch (MatMulNBits scales) and through an inserted Mul', async () => {
    const model = build();
    const seen = new Map<string, Float64Array>();
    const r = await quantizeLayerwise(model, data(model, X, K), {
      mode: 'int4',
      method: 'gptq',
      awq: true,
      blockSize: 16,
      workers: 0,
      check: true,
      onHessian: (a, h) => seen.set(a, Float64Array.from(h)),
    });
    expect(r.awqGroups.map((g) => g.fold)).toEqual(["Mul 'norm_mul' constant", "MatMulNBits 'b_proj' block scales", 'inserted Mul']);
    expect(r.layers.map((l) => l.weight)).toEqual(['Wa', 'Wb', 'Wc', 'We']);
    // What each group's layers read in the final model, on the calibration data, from onnxruntime.
    const g = model.graph;
    const inputs = r.awqGroups.map((grp) => g.localValue(grp.input)!);
    const outputs = [...g.outputs];
    g.outputs.push(...inputs.filter((v) => !v.isGraphOutput));
    for (const v of inputs) v.type ??= { kind: 'tensor', elemType: DataType.FLOAT };
    let got: Record<string, Tensor>;
    try {
      got = await runModel(model, { x: Tensor.fromTypedArray('x', DataType.FLOAT, [M, K], X) });
    } finally {
      g.outputs = outputs;
    }
    for (const grp of r.awqGroups) {
      const k = grp.inverse.length;
      const A = got[grp.input]!.toTypedArray<Float32Array>();
      const want = scaleHessian(seen.get(grp.activation)!, k, grp.inverse);
      expect(relFro(gram(A, M, k), want), `group on '${grp.activation}' (${grp.fold})`).toBeLessThan(1e-5);
    }
    // And the model still computes what the float one does, roughly (int4).
    const float = build();
    const feed = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [M, K], X) };
    const yq = Object.values(await runModel(model, feed))[0]!.toTypedArray<Float32Array>();
    const yf = Object.values(await runModel(float, feed))[0]!.toTypedArray<Float32Array>();
    expect(relFro(yq, yf)).toBeLessThan(0.1);
  });

  it('gives the same Hessians as capturing all at once for the first layer input (nothing quantized before it)', async () => {
    const model = build();
    const seen = new Map<string, Float64Array>();
    await quantizeLayerwise(model, data(model, X, K), { mode: 'int4', method: 'gptq', blockSize: 16, workers: 0, onHessian: (a, h) => seen.set(a, Float64Array.from(h)) });
    const fresh = build();
    const all = await captureHessians(fresh, [{ activation: 'norm_mul_out0', k: K, dtype: DataType.FLOAT }], data(fresh, X, K));
    expect(relFro(seen.get('norm_mul_out0')!, all.hessians.get('norm_mul_out0')!)).toBeLessThan(1e-12);
  });
});

// ---------------------------------------------------------------------------------------------

const CHILD = String.raw`
const [dist, dir, mode, cap] = process.argv.slice(1);
const imp = (p) => import(new URL(p, dist).href);
const { loadModel, saveModel } = await imp('src/onnx/io.js');
const { calibrationTargets } = await imp('passes/weight-quant.js');
const { captureHessians, matchCalibrationData, readCalibrationArrays } = await imp('src/quant/calibration.js');
const { quantizeLayerwise } = await imp('src/quant/layerwise.js');
const model = loadModel(dir + '/deep.onnx');
const data = matchCalibrationData(readCalibrationArrays(dir + '/calib.npy'), model);
const opts = { mode: 'int4', method: 'gptq', workers: 0 };
let info = {};
if (mode === 'layerwise') {
  const r = await quantizeLayerwise(model, data, { ...opts, intraOpThreads: 1, maxHessianBytes: Number(cap) });
  saveModel(model, dir + '/out.onnx', { durable: false });
  info = { layers: r.layers.length, methods: [...new Set(r.layers.map((l) => l.method))], peakHessianBytes: r.peakHessianBytes, allHessianBytes: r.allHessianBytes };
} else {
  const c = await captureHessians(model, calibrationTargets(model, opts), data);
  info = { hessians: c.hessians.size };
}
console.log(JSON.stringify({ peakRssMiB: process.resourceUsage().maxRSS / 1024, ...info }));
`;

function child(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => done({ code, out, err }));
  });
}

describe('peak memory: a model whose Hessians exceed the memory cap quantizes layer by layer under it', () => {
  const dist = join(ROOT, 'dist');
  const built = join(dist, 'src', 'quant', 'layerwise.js');

  it('160 residual layers, 320 MiB of Hessians: GPTQ layer by layer peaks under 256 MiB RSS; capturing all first does not', async () => {
    // The child runs the compiled sources; they must be current.
    expect(existsSync(built) && statSync(built).mtimeMs >= statSync(join(ROOT, 'src', 'quant', 'layerwise.ts')).mtimeMs, 'dist/ is missing or older than src/quant/layerwise.ts: run `npx tsc -p tsconfig.json` (npm test does)').toBe(true);
    const [L, K, R, rows] = [160, 512, 8, 512];
    const CAP_MIB = 256;
    // h_{i+1} = h_i + tanh(h_i A_i) B_i: the input of every A_i is K wide (a 2 MiB Hessian each).
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    let h = b.input('x', DataType.FLOAT, ['n', K]);
    for (let l = 0; l < L; l++) {
      const a = b.op('Tanh', [b.op('MatMul', [h, b.initializer(`a${l}`, DataType.FLOAT, [K, R], weightsF32(K * R, 100 + l, 3.4 / Math.sqrt(K) / 2))], {}, { name: `down${l}` })]);
      h = b.op('Add', [h, b.op('MatMul', [a, b.initializer(`b${l}`, DataType.FLOAT, [R, K], weightsF32(R * K, 1000 + l, 0.25 / Math.sqrt(R)))], {}, { name: `up${l}` })]);
    }
    b.output(h, { dtype: DataType.FLOAT, shape: ['n', K] });
    const dir = join(tmp, 'deep');
    mkdirSync(dir, { recursive: true });
    saveModel(b.build(), join(dir, 'deep.onnx'), { externalData: 'all', durable: false });
    writeNpy(join(dir, 'calib.npy'), { descr: '<f4', dims: [rows, K], data: Float32Array.from(gaussian(rows * K, 9), Math.fround) });
    const hessianMiB = (L * (K * K + R * R) * 8) / 2 ** 20;
    expect(hessianMiB).toBeGreaterThan(CAP_MIB);

    const distUrl = pathToFileURL(dist + '/').href;
    const [lw, all] = await Promise.all([child([distUrl, dir, 'layerwise', String(CAP_MIB * 2 ** 20)]), child([distUrl, dir, 'all', '0'])]);
    expect(lw.code, lw.err).toBe(0);
    expect(all.code, all.err).toBe(0);
    const a = JSON.parse(lw.out.trim().split('\n').at(-1)!);
    const c = JSON.parse(all.out.trim().split('\n').at(-1)!);
    console.log(`layer by layer: peak RSS ${a.peakRssMiB.toFixed(0)} MiB (Hessians at once ${(a.peakHessianBytes / 2 ** 20).toFixed(1)} of ${(a.allHessianBytes / 2 ** 20).toFixed(0)} MiB); capture all first: peak RSS ${c.peakRssMiB.toFixed(0)} MiB; cap ${CAP_MIB} MiB`);
    expect(a.layers).toBe(2 * L);
    expect(a.methods).toEqual(['gptq']);
    expect(a.peakRssMiB).toBeLessThan(CAP_MIB);
    expect(c.peakRssMiB).toBeGreaterThan(CAP_MIB);
    // The written model runs.
    const out = await runModel(join(dir, 'out.onnx'), { x: Tensor.fromTypedArray('x', DataType.FLOAT, [4, K], Float32Array.from(gaussian(4 * K, 10), Math.fround)) });
    expect(Object.values(out)[0]!.dims).toEqual([4, K]);
  }, 600_000);
});
