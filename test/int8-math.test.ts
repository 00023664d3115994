/**
 * INT8 arithmetic against onnxruntime's QuantizeLinear / DequantizeLinear (round half to even,
 * saturation, float32 division) and against the parameter formula onnxruntime's quantization tools
 * use (range widened to include 0; symmetric int8 on [-127, 127]).
 */
import { describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { runModel } from '../src/runtime/ort.js';
import { dequantizeValue, paramsForRange, quantizeBias, quantizeValue, quantizeWeightSymmetric } from '../src/quant/int8-math.js';
import { mulberry32 } from './rng.js';

describe('quantization parameters', () => {
  it('follow onnxruntime compute_scale_zp', () => {
    // uint8 asymmetric over [-1, 3]: scale 4/255, zero point round(0 + 1/scale) = round(63.75) = 64.
    const p = paramsForRange(-1, 3, 'uint8', false);
    expect(p.scale).toBe(Math.fround(4 / 255));
    expect(p.zeroPoint).toBe(64);
    // A positive-only range still includes 0 (ReLU outputs: zero point 0, exactly what makes Relu redundant).
    expect(paramsForRange(0.5, 2, 'uint8', false)).toEqual({ scale: Math.fround(2 / 255), zeroPoint: 0, type: 'uint8' });
    // int8 symmetric: [-m, m] on [-127, 127], zero point 0.
    expect(paramsForRange(-0.5, 2.54, 'int8', true)).toEqual({ scale: Math.fround((2 * 2.54) / 254), zeroPoint: 0, type: 'int8' });
    // int8 asymmetric on [-128, 127].
    const q = paramsForRange(-2, 1, 'int8', false);
    expect(q.zeroPoint).toBe(Math.round(-128 + 2 / q.scale));
    // No range: scale 1, zero point 0.
    expect(paramsForRange(0, 0, 'uint8', false)).toEqual({ scale: 1, zeroPoint: 0, type: 'uint8' });
  });
});

describe('QuantizeLinear / DequantizeLinear agree with onnxruntime', () => {
  for (const type of ['uint8', 'int8'] as const) {
    it(`${type}: ties round half to even, out-of-range values saturate`, async () => {
      const scale = Math.fround(0.1);
      const zp = type === 'uint8' ? 128 : -3;
      const [qmin, qmax] = type === 'uint8' ? [0, 255] : [-128, 127];
      const r = mulberry32(5);
      const xs: number[] = [];
      // Exact ties k + 0.5 (in float32 division), random values, and far outside the range.
      for (let k = -140; k <= 140; k++) xs.push(Math.fround((k + 0.5) * scale));
      for (let i = 0; i < 500; i++) xs.push(Math.fround((r() * 2 - 1) * 30));
      xs.push(1e6, -1e6, 0, -0);
      const b = new ModelBuilder({ opset: 17 });
      const x = b.input('x', DataType.FLOAT, [xs.length]);
      const s = b.initializer('s', DataType.FLOAT, [], Float32Array.of(scale));
      const z = type === 'uint8' ? b.initializer('z', DataType.UINT8, [], Uint8Array.of(zp)) : b.initializer('z', DataType.INT8, [], Int8Array.of(zp));
      const q = b.op('QuantizeLinear', [x, s, z]);
      b.output(q, { dtype: type === 'uint8' ? DataType.UINT8 : DataType.INT8, shape: [xs.length] });
      b.output(b.op('DequantizeLinear', [q, s, z]), { dtype: DataType.FLOAT, shape: [xs.length] });
      const out = await runModel(b.build(), { x: Tensor.fromTypedArray('x', DataType.FLOAT, [xs.length], Float32Array.from(xs)) });
      const [qo, dqo] = b.graph.outputs.map((v) => out[v.name]!.toTypedArray());
      const mine = xs.map((v) => quantizeValue(v, scale, zp, qmin, qmax));
      expect([...qo!].map(Number)).toEqual(mine);
      expect([...dqo!]).toEqual(mine.map((m) => dequantizeValue(m, scale, zp)));
    });
  }
});

describe('weights and biases', () => {
  it('per-channel symmetric int8: each channel reaches +-127, zero point 0, error below half a step', () => {
    const r = mulberry32(3);
    const dims = [4, 3, 2, 2];
    const w = Float32Array.from({ length: 48 }, (_, i) => Math.fround((r() * 2 - 1) * (1 + Math.floor(i / 12))));
    const q = quantizeWeightSymmetric(w, dims, 0);
    expect(q.scales.length).toBe(4);
    for (let c = 0; c < 4; c++) {
      const slice = [...q.data.subarray(c * 12, (c + 1) * 12)];
      expect(Math.max(...slice.map(Math.abs))).toBe(127);
      for (let i = 0; i < 12; i++) expect(Math.abs(w[c * 12 + i]! - slice[i]! * q.scales[c]!)).toBeLessThanOrEqual(q.scales[c]! / 2 + 1e-7);
    }
    // Axis 1 of a [K, N] MatMul weight: one scale per column.
    const mm = quantizeWeightSymmetric(Float32Array.of(1, -10, 2, 5), [2, 2], 1);
    expect([...mm.scales]).toEqual([Math.fround(2 / 127), Math.fround(10 / 127)]);
    expect([...mm.data]).toEqual([64, -127, 127, 64]);
  });

  it('int32 bias with scale = input scale x weight scale (float32)', () => {
    const { data, scales } = quantizeBias(Float32Array.of(0.5, -1, 0.25), Math.fround(0.02), Float32Array.of(0.1, 0.05, 0.01));
    expect([...scales]).toEqual([Math.fround(0.02 * Math.fround(0.1)), Math.fround(0.02 * Math.fround(0.05)), Math.fround(0.02 * Math.fround(0.01))]);
    expect([...data]).toEqual([Math.round(0.5 / scales[0]!), Math.round(-1 / scales[1]!), Math.round(0.25 / scales[2]!)]);
  });
});
