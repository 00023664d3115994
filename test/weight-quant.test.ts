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
import { describe, expect, it } from 'vitest';
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
    const a = (u[2 * i]! + 2) / 4 + 1e-7;
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
    method: o.method ?? 'mse',
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
