/**
 * Weight-only quantization against onnxruntime (which we did not write).
 *
 * Bit-exact: a model MatMul(I, W) whose input is the identity matrix I[K, K] returns W itself, so
 * after quantization onnxruntime's output IS its dequantization of peftc's packed weight; it must
 * equal peftc's own dequantization (quantizeRows + dequantizeRows on the same weight) bit for bit.
 * MatMulNBits runs with accuracy_level unset (A stays float32: no activation quantization).
 * The QDQ form runs at onnxruntime's 'basic' optimization level: from 'extended' on, onnxruntime
 * fuses an unsigned DequantizeLinear + MatMul into MatMulNBits with accuracy_level 4 (its session
 * option session.qdq_matmulnbits_accuracy_level), which quantizes A to int8 — close, not exact
 * (the property tests below run that path at 'all' within tolerance).
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { DataType, float16BitsToFloat32, float32ToFloat16Bits } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { runModel } from '../src/runtime/ort.js';
import { ModelBuilder } from '../models/builder.js';
import { runPipeline } from '../passes/pass.js';
import { weightQuantization, type WeightQuantOptions } from '../passes/weight-quant.js';
import { defaultQuantConfig, dequantizeRows, quantizeRows, type QuantConfig } from '../src/quant/blockwise.js';
import { randomFloats } from './arbitrary-graph.js';

/** Gaussian-ish weights with a few outliers, like trained layers. */
function weights(n: number, seed: number, scale = 0.05): Float32Array {
  const u = randomFloats(n * 2, seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // u is in [-2, 2] once rounded to float32 (2 itself happens): a stays in (0, 1] so log(a) <= 0
    const a = Math.min(1, (u[2 * i]! + 2) / 4 + 1e-7);
    const b = (u[2 * i + 1]! + 2) / 4;
    let g = Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * b);
    if (i % 97 === 13) g *= 6;
    out[i] = Math.fround(g * scale);
  }
  return out;
}

function identity(k: number): Float32Array {
  const I = new Float32Array(k * k);
  for (let i = 0; i < k; i++) I[i * k + i] = 1;
  return I;
}

function matmulModel(K: number, N: number, W: Float32Array, opts: { opset?: number; dtype?: DataType; M?: number } = {}): Model {
  const dtype = opts.dtype ?? DataType.FLOAT;
  const b = new ModelBuilder({ opset: opts.opset ?? 21, irVersion: 10 });
  const x = b.input('x', dtype, [opts.M ?? K, K]);
  const data = dtype === DataType.FLOAT16 ? Uint16Array.from(W, float32ToFloat16Bits) : W;
  const w = b.initializer('W', dtype, [K, N], data);
  b.output(b.op('MatMul', [x, w], {}, { name: 'mm' }), { dtype, shape: [opts.M ?? K, N] });
  return b.build();
}

/** peftc's dequantized W[K, N] for a MatMul weight W[K, N]. */
function expectedWeight(W: Float32Array, K: number, N: number, config: QuantConfig): Float32Array {
  const rows = new Float32Array(N * K);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) rows[n * K + k] = W[k * N + n]!;
  const deq = dequantizeRows(quantizeRows(rows, N, K, config));
  const out = new Float32Array(K * N);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) out[k * N + n] = deq[n * K + k]!;
  return out;
}

function quantize(model: Model, options: WeightQuantOptions) {
  const pass = weightQuantization({ workers: 0, ...options });
  const reports = runPipeline(model, [pass], { check: true });
  return { pass, report: reports[0]! };
}

function configFor(o: WeightQuantOptions, scaleDtype: 'float32' | 'float16' = 'float32'): QuantConfig {
  return defaultQuantConfig({
    format: o.mode === 'nf4' ? 'nf4' : 'int',
    bits: o.mode === 'int8' ? 8 : 4,
    blockSize: o.blockSize ?? 32,
    symmetric: o.mode === 'nf4' ? true : (o.symmetric ?? false),
    method: o.method === 'gptq' ? (o.scaleSearch ?? 'mse') : (o.method ?? 'mse'),
    scaleDtype,
    doubleQuant: o.doubleQuant ?? true,
  });
}

async function runIdentity(model: Model, K: number, graphOptimization: 'basic' | 'all' = 'all'): Promise<Float32Array> {
  const out = await runModel(model, { x: Tensor.fromTypedArray('x', DataType.FLOAT, [K, K], identity(K)) }, { graphOptimization });
  return Object.values(out)[0]!.toTypedArray<Float32Array>();
}

function firstMismatch(a: Float32Array, b: Float32Array): string | undefined {
  if (a.length !== b.length) return `length ${a.length} != ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `element ${i}: onnxruntime ${a[i]} vs peftc ${b[i]}`;
  return undefined;
}

const opsOf = (m: Model) => m.graph.nodes.map((n) => n.opType);

describe('bit-exact: onnxruntime dequantizes peftc RTN weights exactly as peftc does', () => {
  const cases: Array<[string, WeightQuantOptions, number, number]> = [
    ['int4 asymmetric MatMulNBits', { mode: 'int4', method: 'rtn', blockSize: 32 }, 96, 24],
    ['int4 asymmetric MatMulNBits, K % bs != 0', { mode: 'int4', method: 'rtn', blockSize: 16 }, 77, 19],
    ['int4 symmetric MatMulNBits', { mode: 'int4', method: 'rtn', symmetric: true, blockSize: 64 }, 200, 17],
    ['int4 block 256', { mode: 'int4', method: 'rtn', blockSize: 256 }, 300, 9],
    ['int8 asymmetric MatMulNBits', { mode: 'int8', method: 'rtn', blockSize: 32 }, 70, 12],
    ['int8 symmetric MatMulNBits', { mode: 'int8', method: 'rtn', symmetric: true, blockSize: 128 }, 130, 10],
    ['int4 asymmetric QDQ', { mode: 'int4', method: 'rtn', format: 'qdq', blockSize: 32 }, 77, 21],
    ['int4 symmetric QDQ', { mode: 'int4', method: 'rtn', format: 'qdq', symmetric: true, blockSize: 16 }, 64, 8],
    ['int8 asymmetric QDQ', { mode: 'int8', method: 'rtn', format: 'qdq', blockSize: 64 }, 100, 7],
    ['int8 symmetric QDQ', { mode: 'int8', method: 'rtn', format: 'qdq', symmetric: true, blockSize: 32 }, 64, 5],
    ['nf4 MatMulBnb4', { mode: 'nf4', method: 'rtn', blockSize: 64 }, 128, 20],
    ['nf4 standard ops (K % bs != 0)', { mode: 'nf4', method: 'rtn', blockSize: 32 }, 90, 11],
    ['nf4 standard ops (qdq), no double quantization', { mode: 'nf4', method: 'rtn', format: 'qdq', blockSize: 16, doubleQuant: false }, 48, 6],
    ['int4 MSE MatMulNBits', { mode: 'int4', method: 'mse', blockSize: 32 }, 96, 24],
    ['nf4 MSE MatMulBnb4', { mode: 'nf4', method: 'mse', blockSize: 32 }, 64, 24],
  ];
  for (const [label, options, K, N] of cases) {
    it(label, async () => {
      const W = weights(K * N, K * 31 + N);
      const model = matmulModel(K, N, W);
      const { report } = quantize(model, options);
      expect(report.details.quantized).toBe(1);
      const got = await runIdentity(model, K, options.format === 'qdq' ? 'basic' : 'all');
      const want = expectedWeight(W, K, N, configFor(options));
      expect(firstMismatch(got, want), `${label}: ops ${opsOf(model).join(',')}`).toBeUndefined();
    });
  }
});

describe('bit-exact: Gemm, Gather and float16 weights', () => {
  /** W[K, N] of a Gemm's B (transposed when transB). */
  const asKN = (B: Float32Array, K: number, N: number, transB: boolean) => {
    if (!transB) return B;
    const W = new Float32Array(K * N);
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) W[k * N + n] = B[n * K + k]!;
    return W;
  };

  for (const transB of [false, true]) {
    for (const format of ['matmulnbits', 'qdq'] as const) {
      it(`Gemm transB=${Number(transB)} ${format} (no C, alpha 1)`, async () => {
        const K = 80;
        const N = 12;
        const B = weights(K * N, 5 + Number(transB));
        const b = new ModelBuilder({ opset: 21, irVersion: 10 });
        const x = b.input('x', DataType.FLOAT, [K, K]);
        const w = b.initializer('B', DataType.FLOAT, transB ? [N, K] : [K, N], B);
        b.output(b.op('Gemm', [x, w], { transB: Number(transB) }, { name: 'gemm' }));
        const model = b.build();
        const options: WeightQuantOptions = { mode: 'int4', method: 'rtn', blockSize: 16, format };
        quantize(model, options);
        expect(opsOf(model)).toEqual(format === 'qdq' ? ['DequantizeLinear', 'Gemm'] : ['MatMulNBits']);
        const got = await runIdentity(model, K, format === 'qdq' ? 'basic' : 'all');
        expect(firstMismatch(got, expectedWeight(asKN(B, K, N, transB), K, N, configFor(options)))).toBeUndefined();
      });
    }
  }

  const gatherCases: Array<[string, WeightQuantOptions]> = [
    ['int4 asymmetric GatherBlockQuantized', { mode: 'int4', method: 'rtn', blockSize: 16, gather: true }],
    ['int4 symmetric GatherBlockQuantized', { mode: 'int4', method: 'rtn', blockSize: 32, gather: true, symmetric: true }],
    ['int8 asymmetric GatherBlockQuantized', { mode: 'int8', method: 'rtn', blockSize: 16, gather: true }],
    ['int8 symmetric GatherBlockQuantized', { mode: 'int8', method: 'rtn', blockSize: 16, gather: true, symmetric: true }],
    ['int4 asymmetric Gather QDQ', { mode: 'int4', method: 'rtn', blockSize: 16, gather: true, format: 'qdq' }],
  ];
  for (const [label, options] of gatherCases) {
    it(label, async () => {
      const V = 37;
      const D = 48;
      const T = weights(V * D, 77);
      const b = new ModelBuilder({ opset: 21, irVersion: 8 }); // int4 tensors make the pass raise it to 10
      const idx = b.input('idx', DataType.INT64, [V]);
      const t = b.initializer('table', DataType.FLOAT, [V, D], T);
      b.output(b.op('Gather', [t, idx], { axis: 0 }, { name: 'embed' }));
      const model = b.build();
      const { report } = quantize(model, options);
      expect(report.details.quantized).toBe(1);
      expect(model.irVersion).toBe(options.mode === 'int4' ? 10 : 8);
      const out = await runModel(model, { idx: Tensor.fromTypedArray('idx', DataType.INT64, [V], BigInt64Array.from({ length: V }, (_, i) => BigInt(i))) });
      const got = Object.values(out)[0]!.toTypedArray<Float32Array>();
      const want = dequantizeRows(quantizeRows(T, V, D, configFor(options)));
      expect(firstMismatch(got, want), `ops ${opsOf(model).join(',')}`).toBeUndefined();
    });
  }

  for (const format of ['matmulnbits', 'qdq'] as const) {
    it(`float16 weights, float16 scales (${format})`, async () => {
      const K = 64;
      const N = 16;
      const W = Float32Array.from(weights(K * N, 9), (v) => float16BitsToFloat32(float32ToFloat16Bits(v)));
      const model = matmulModel(K, N, W, { dtype: DataType.FLOAT16 });
      const options: WeightQuantOptions = { mode: 'int4', method: 'rtn', blockSize: 32, format };
      quantize(model, options);
      const I = Uint16Array.from(identity(K), float32ToFloat16Bits);
      const out = await runModel(model, { x: Tensor.fromTypedArray('x', DataType.FLOAT16, [K, K], I) }, { graphOptimization: format === 'qdq' ? 'basic' : 'all' });
      const got = Float32Array.from(Object.values(out)[0]!.toTypedArray<Uint16Array>(), float16BitsToFloat32);
      const want = Float32Array.from(expectedWeight(W, K, N, configFor(options, 'float16')), (v) => float16BitsToFloat32(float32ToFloat16Bits(v)));
      expect(firstMismatch(got, want), `ops ${opsOf(model).join(',')}`).toBeUndefined();
    });
  }
});

describe('property: onnxruntime runs quantized models as x @ (peftc dequantized W)', () => {
  const blockSize = fc.constantFrom(16, 32, 64, 128, 256);
  const caseArb = fc.record({
    K: fc.integer({ min: 1, max: 300 }),
    N: fc.integer({ min: 1, max: 40 }),
    batch: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }),
    blockSize,
    mode: fc.constantFrom('int4', 'int8', 'nf4') as fc.Arbitrary<'int4' | 'int8' | 'nf4'>,
    symmetric: fc.boolean(),
    format: fc.constantFrom('matmulnbits', 'qdq') as fc.Arbitrary<'matmulnbits' | 'qdq'>,
    method: fc.constantFrom('rtn', 'mse') as fc.Arbitrary<'rtn' | 'mse'>,
    seed: fc.nat(),
    spread: fc.constantFrom(0.01, 0.5, 20),
  });

  it('outputs agree within float32 rounding (random shapes, K not a multiple of the block, sym/asym, all forms)', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const W = weights(c.K * c.N, c.seed, c.spread);
        const b = new ModelBuilder({ opset: 21, irVersion: 10 });
        const xShape = [...c.batch, c.K];
        const x = b.input('x', DataType.FLOAT, xShape);
        const w = b.initializer('W', DataType.FLOAT, [c.K, c.N], W);
        b.output(b.op('MatMul', [x, w], {}, { name: 'mm' }));
        const model = b.build();
        const options: WeightQuantOptions = { mode: c.mode, symmetric: c.symmetric, blockSize: c.blockSize, format: c.format, method: c.method };
        quantize(model, options);
        const M = c.batch.reduce((a, v) => a * v, 1);
        const xs = randomFloats(M * c.K, c.seed + 1);
        const out = await runModel(model, { x: Tensor.fromTypedArray('x', DataType.FLOAT, xShape, xs) }, { graphOptimization: c.format === 'qdq' ? 'basic' : 'all' });
        const got = Object.values(out)[0]!.toTypedArray<Float32Array>();
        const Wq = expectedWeight(W, c.K, c.N, configFor(options));
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < c.N; n++) {
            let ref = 0;
            let mag = 0;
            for (let k = 0; k < c.K; k++) {
              ref += xs[m * c.K + k]! * Wq[k * c.N + n]!;
              mag += Math.abs(xs[m * c.K + k]! * Wq[k * c.N + n]!);
            }
            const err = Math.abs(got[m * c.N + n]! - ref);
            // float32 accumulation over K terms: a few ulps of the magnitude per term.
            if (!(err <= 4 * 2 ** -23 * mag * Math.max(1, Math.log2(c.K + 1)) + 1e-30)) {
              throw new Error(`${JSON.stringify(c)}: y[${m},${n}] = ${got[m * c.N + n]} vs reference ${ref} (magnitude ${mag}); ops ${opsOf(model).join(',')}`);
            }
          }
        }
      }),
      { numRuns: 60 },
    );
  });

  it('the weight error of MSE search is never above RTN (and the stats are the real error)', () => {
    fc.assert(
      fc.property(
        fc.record({
          rows: fc.integer({ min: 1, max: 24 }),
          cols: fc.integer({ min: 1, max: 300 }),
          blockSize,
          mode: fc.constantFrom('int4', 'int8'),
          symmetric: fc.boolean(),
          scaleDtype: fc.constantFrom('float32', 'float16') as fc.Arbitrary<'float32' | 'float16'>,
          seed: fc.nat(),
          spread: fc.constantFrom(1e-3, 0.05, 3),
        }),
        (c) => {
          const values = weights(c.rows * c.cols, c.seed, c.spread);
          const base = { bits: c.mode === 'int8' ? 8 : 4, blockSize: c.blockSize, symmetric: c.symmetric, scaleDtype: c.scaleDtype } as const;
          const rtn = quantizeRows(values, c.rows, c.cols, defaultQuantConfig({ ...base, method: 'rtn' }));
          const mse = quantizeRows(values, c.rows, c.cols, defaultQuantConfig({ ...base, method: 'mse' }));
          const err = (q: typeof rtn) => {
            const d = dequantizeRows(q);
            let sse = 0;
            let max = 0;
            for (let i = 0; i < values.length; i++) {
              sse += (values[i]! - d[i]!) ** 2;
              max = Math.max(max, Math.abs(values[i]! - d[i]!));
            }
            return { sse, max };
          };
          const eR = err(rtn);
          const eM = err(mse);
          expect(eM.sse).toBeLessThanOrEqual(eR.sse * (1 + 1e-12) + 1e-300);
          expect(Math.abs(rtn.stats.sse - eR.sse)).toBeLessThanOrEqual(1e-9 * eR.sse + 1e-300);
          expect(Math.abs(mse.stats.sse - eM.sse)).toBeLessThanOrEqual(1e-9 * eM.sse + 1e-300);
          expect(mse.stats.maxAbs).toBe(eM.max);
          expect(Math.abs(mse.stats.rtnSse! - eR.sse)).toBeLessThanOrEqual(1e-9 * eR.sse + 1e-300);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('the weight-quant pass', () => {
  const twoLayer = (opts: { opset?: number } = {}) => {
    const b = new ModelBuilder({ opset: opts.opset ?? 21, irVersion: 10 });
    const x = b.input('x', DataType.FLOAT, [2, 64]);
    const w1 = b.initializer('layers.0.fc.weight', DataType.FLOAT, [64, 48], weights(64 * 48, 1));
    const w2 = b.initializer('lm_head.weight', DataType.FLOAT, [48, 32], weights(48 * 32, 2));
    const h = b.op('MatMul', [x, w1], {}, { name: '/layers.0/fc/MatMul' });
    b.output(b.op('MatMul', [b.op('Relu', [h]), w2], {}, { name: '/lm_head/MatMul' }));
    return b.build();
  };

  it('reports per-layer error and byte counts, and removes the float weights', () => {
    const model = twoLayer();
    const logs: string[] = [];
    const pass = weightQuantization({ mode: 'int4', workers: 0 });
    const [report] = runPipeline(model, [pass], { check: true, log: (m) => logs.push(m) });
    expect(report!.details).toMatchObject({ quantized: 2, excluded: 0, skipped: 0, workers: 0, bytesBefore: (64 * 48 + 48 * 32) * 4 });
    expect(model.graph.initializers.map((v) => v.name)).not.toContain('layers.0.fc.weight');
    expect(pass.layers.map((l) => [l.weight, l.form, l.rows, l.cols])).toEqual([
      ['layers.0.fc.weight', 'MatMulNBits', 48, 64],
      ['lm_head.weight', 'MatMulNBits', 32, 48],
    ]);
    for (const l of pass.layers) {
      expect(l.rmse).toBeGreaterThan(0);
      expect(l.relativeRmse).toBeLessThan(0.2);
      expect(l.rtnRmse).toBeGreaterThanOrEqual(l.rmse);
      expect(l.bytesAfter).toBeLessThan(l.bytesBefore / 4);
    }
    expect(logs.filter((m) => /rmse .* relative .* max abs/.test(m))).toHaveLength(2);
    expect(model.opsetImports).toContainEqual({ domain: 'com.microsoft', version: 1 });
  });

  it('--exclude keeps matching nodes or weights in full precision', () => {
    for (const pattern of ['lm_head', '/lm_head/*', '*head.weight']) {
      const model = twoLayer();
      const [report] = runPipeline(model, [weightQuantization({ mode: 'int4', exclude: [pattern], workers: 0 })], { check: true });
      expect(report!.details).toMatchObject({ quantized: 1, excluded: 1 });
      expect(opsOf(model)).toEqual(['MatMulNBits', 'Relu', 'MatMul']);
      expect(model.graph.localValue('lm_head.weight')?.initializer).toBeDefined();
    }
  });

  it('quantizes a shared weight once; a weight other nodes read in full precision stays for them', async () => {
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    const x = b.input('x', DataType.FLOAT, [32, 32]);
    const W = weights(32 * 32, 3);
    const w = b.initializer('W', DataType.FLOAT, [32, 32], W);
    const y1 = b.op('MatMul', [x, w], {}, { name: 'a' });
    const y2 = b.op('MatMul', [y1, w], {}, { name: 'b' });
    b.output(b.op('Add', [y2, w], {}, { name: 'plus_w' }));
    const model = b.build();
    const pass = weightQuantization({ mode: 'int4', method: 'rtn', workers: 0 });
    runPipeline(model, [pass], { check: true });
    expect(pass.layers).toHaveLength(1);
    expect(pass.layers[0]!.nodes).toEqual(['a', 'b']);
    expect(opsOf(model)).toEqual(['MatMulNBits', 'MatMulNBits', 'Add']);
    const [a, bNode] = model.graph.nodes;
    expect(a!.inputs.slice(1)).toEqual(bNode!.inputs.slice(1));
    expect(model.graph.localValue('W')?.uses.map((u) => u.node.name)).toEqual(['plus_w']);
    // Outputs: x @ Wq @ Wq + W.
    const xs = randomFloats(32 * 32, 4);
    const out = Object.values(await runModel(model, { x: Tensor.fromTypedArray('x', DataType.FLOAT, [32, 32], xs) }))[0]!.toTypedArray<Float32Array>();
    const Wq = expectedWeight(W, 32, 32, configFor({ mode: 'int4', method: 'rtn' }));
    const mm = (A: Float64Array | Float32Array, B: Float32Array) => {
      const C = new Float64Array(32 * 32);
      for (let i = 0; i < 32; i++) for (let j = 0; j < 32; j++) for (let k = 0; k < 32; k++) C[i * 32 + j]! += A[i * 32 + k]! * B[k * 32 + j]!;
      return C;
    };
    const ref = mm(mm(xs, Wq), Wq).map((v, i) => v + W[i]!);
    for (let i = 0; i < ref.length; i++) expect(out[i]).toBeCloseTo(ref[i]!, 4);
  });

  for (const format of ['matmulnbits', 'qdq'] as const) {
    it(`Gemm with alpha, beta and C (constant and computed), ${format}`, async () => {
      const M = 4;
      const K = 40;
      const N = 24;
      const B = weights(N * K, 11);
      const C = weights(N, 12, 1);
      const build = (Bw: Float32Array, alpha: number) => {
        const b = new ModelBuilder({ opset: 21, irVersion: 10 });
        const x = b.input('x', DataType.FLOAT, [M, K]);
        const c2 = b.input('c2', DataType.FLOAT, [M, N]);
        const w = b.initializer('B', DataType.FLOAT, [N, K], Bw);
        const c = b.initializer('C', DataType.FLOAT, [N], C);
        b.output(b.op('Gemm', [x, w, c], { transB: 1, alpha: { float: alpha }, beta: { float: 0.5 } }, { name: 'g1' }));
        b.output(b.op('Gemm', [x, w, c2], { transB: 1, alpha: { float: alpha }, beta: { float: 1 } }, { name: 'g2' }));
        return b.build();
      };
      const model = build(B, 1.5);
      const options: WeightQuantOptions = { mode: 'int8', method: 'rtn', blockSize: 16, format, workers: 0 };
      runPipeline(model, [weightQuantization(options)], { check: true });
      // Reference: the same Gemms over the dequantized weights (alpha folded first for MatMulNBits).
      const folded = format === 'matmulnbits';
      const Bs = folded ? B.map((v) => Math.fround(v * 1.5)) : B;
      const Bq = dequantizeRows(quantizeRows(Bs, N, K, configFor(options)));
      const reference = build(Bq, folded ? 1 : 1.5);
      const feeds = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [M, K], randomFloats(M * K, 1)), c2: Tensor.fromTypedArray('c2', DataType.FLOAT, [M, N], randomFloats(M * N, 2)) };
      const got = await runModel(model, feeds, { graphOptimization: 'basic' });
      const want = await runModel(reference, feeds, { graphOptimization: 'basic' });
      for (const name of Object.keys(want)) {
        const g = got[name]!.toTypedArray<Float32Array>();
        const w = want[name]!.toTypedArray<Float32Array>();
        for (let i = 0; i < w.length; i++) expect(Math.abs(g[i]! - w[i]!)).toBeLessThan(1e-5);
      }
    });
  }

  it('refuses what it cannot do, with a clear message', () => {
    expect(() => runPipeline(twoLayer({ opset: 17 }), [weightQuantization({ mode: 'int4', format: 'qdq' })])).toThrow(/opset 21.*opset 17.*--quant-format matmulnbits/);
    expect(() => runPipeline(twoLayer(), [weightQuantization({ mode: 'int4', blockSize: 48 })])).toThrow(/block size 48.*power of two from 16 to 256/);
    expect(() => runPipeline(twoLayer(), [weightQuantization({ mode: 'int4', method: 'awq' as never })])).toThrow(/method 'awq' is unknown.*AWQ is the 'awq' option/);
    expect(() => runPipeline(twoLayer(), [weightQuantization({ mode: 'int4', method: 'gptq' })])).toThrow(/gptq needs calibration data/);
    expect(() => runPipeline(twoLayer(), [weightQuantization({ mode: 'int4', scaleDtype: 'float16' })])).toThrow(/float16 scales need --quant-format qdq/);
  });

  it('float16 scales on a float32 model (qdq): DequantizeLinear in float16, then Cast', async () => {
    const K = 64;
    const N = 8;
    const W = weights(K * N, 21);
    const model = matmulModel(K, N, W);
    const options: WeightQuantOptions = { mode: 'int4', method: 'mse', format: 'qdq', scaleDtype: 'float16', workers: 0 };
    runPipeline(model, [weightQuantization(options)], { check: true });
    expect(opsOf(model)).toEqual(['DequantizeLinear', 'Cast', 'MatMul']);
    const got = await runIdentity(model, K, 'basic');
    // DequantizeLinear computes in float16: (q - z) * s rounded to float16.
    const want = Float32Array.from(expectedWeight(W, K, N, configFor(options, 'float16')), (v) => float16BitsToFloat32(float32ToFloat16Bits(v)));
    expect(firstMismatch(got, want)).toBeUndefined();
  });
});

describe('worker threads', () => {
  const manyLayers = (n: number) => {
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    let h = b.input('x', DataType.FLOAT, [1, 96]);
    for (let i = 0; i < n; i++) h = b.op('MatMul', [h, b.initializer(`w${i}`, DataType.FLOAT, [96, 96], weights(96 * 96, 100 + i))], {}, { name: `mm${i}` });
    b.output(h);
    return b.build();
  };
  const initializerBytes = (m: Model) => m.graph.initializers.map((v) => [v.name, Buffer.from(v.initializer!.bytes()).toString('base64')]);

  it('give the same model as quantizing in this thread, and read external data themselves', () => {
    const inThread = manyLayers(6);
    runPipeline(inThread, [weightQuantization({ mode: 'int4', workers: 0 })], { check: true });

    const threaded = manyLayers(6);
    const [report] = runPipeline(threaded, [weightQuantization({ mode: 'int4', workers: 2 })], { check: true });
    expect(report!.details.workers).toBe(2);
    expect(initializerBytes(threaded)).toEqual(initializerBytes(inThread));

    // Weights in an external data file: the workers read their ranges from the file.
    const dir = mkdtempSync(join(tmpdir(), 'peftc-wq-'));
    try {
      saveModel(manyLayers(6), join(dir, 'm.onnx'), { externalData: 'all', durable: false });
      const external = loadModel(join(dir, 'm.onnx'));
      expect(external.graph.initializers.every((v) => v.initializer!.isExternal)).toBe(true);
      const [r] = runPipeline(external, [weightQuantization({ mode: 'int4', workers: 2 })], { check: true });
      expect(r!.details.workers).toBe(2);
      expect(initializerBytes(external)).toEqual(initializerBytes(inThread));
      // Quantized weights of external weights stay external when written.
      expect(external.graph.initializers.every((v) => v.initializer!.prefersExternal)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('weights quantized in parts', () => {
  const forms: Array<[string, WeightQuantOptions, 'matmul' | 'gemmT' | 'gather']> = [
    ['int4 MatMulNBits, cut along K', { mode: 'int4', blockSize: 16 }, 'matmul'],
    ['int8 MatMulNBits, cut along K', { mode: 'int8', blockSize: 16, symmetric: true }, 'matmul'],
    ['int4 MatMulNBits from Gemm transB, cut along rows', { mode: 'int4', blockSize: 32 }, 'gemmT'],
    ['int4 QDQ axis 0, cut along K', { mode: 'int4', blockSize: 16, format: 'qdq' }, 'matmul'],
    ['int4 QDQ axis 1, cut along rows', { mode: 'int4', blockSize: 16, format: 'qdq' }, 'gemmT'],
    ['int4 GatherBlockQuantized, cut along rows', { mode: 'int4', blockSize: 16, gather: true }, 'gather'],
    ['nf4 MatMulBnb4, cut along K', { mode: 'nf4', blockSize: 16 }, 'matmul'],
    ['nf4 MatMulBnb4 from Gemm transB, cut along rows', { mode: 'nf4', blockSize: 16 }, 'gemmT'],
    ['nf4 standard ops, cut along K', { mode: 'nf4', blockSize: 32, format: 'qdq' }, 'matmul'],
  ];
  const build = (kind: 'matmul' | 'gemmT' | 'gather') => {
    // K = 200 (not a multiple of the cut), 600 rows (more than two 256-row parts, odd count of 4-bit pairs).
    const [K, N] = kind === 'matmul' ? [208, 37] : [200, 601];
    const b = new ModelBuilder({ opset: 21, irVersion: 10 });
    if (kind === 'gather') {
      const idx = b.input('idx', DataType.INT64, [3]);
      b.output(b.op('Gather', [b.initializer('T', DataType.FLOAT, [N, K], weights(N * K, 8)), idx], {}, { name: 'g' }));
    } else {
      const x = b.input('x', DataType.FLOAT, [2, K]);
      const w = kind === 'matmul' ? b.initializer('W', DataType.FLOAT, [K, N], weights(K * N, 8)) : b.initializer('W', DataType.FLOAT, [N, K], weights(K * N, 8));
      b.output(b.op(kind === 'matmul' ? 'MatMul' : 'Gemm', [x, w], kind === 'gemmT' ? { transB: 1 } : {}, { name: 'mm' }));
    }
    return b.build();
  };
  const contents = (m: Model) => m.graph.initializers.map((v) => [v.name, v.initializer!.dtype, v.initializer!.dims.join('x'), Buffer.from(v.initializer!.bytes()).toString('base64')]);
  for (const [label, options, kind] of forms) {
    it(`${label}: the same model as in one piece`, () => {
      const whole = build(kind);
      const wholePass = weightQuantization({ ...options, workers: 0 });
      runPipeline(whole, [wholePass], { check: true });
      for (const workers of [0, 2]) {
        const cut = build(kind);
        const cutPass = weightQuantization({ ...options, workers, maxPartWeights: 4000 });
        runPipeline(cut, [cutPass], { check: true });
        expect(contents(cut)).toEqual(contents(whole));
        expect(cut.graph.nodes.map((n) => n.opType)).toEqual(whole.graph.nodes.map((n) => n.opType));
        const [a, b] = [wholePass.layers[0]!, cutPass.layers[0]!];
        expect(b.maxAbsError).toBe(a.maxAbsError);
        expect(b.rmse).toBeCloseTo(a.rmse, 12);
      }
    });
  }
});
