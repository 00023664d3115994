/**
 * A CNN trained on real data (models/digits, made by models/train_digits.py from scikit-learn's
 * bundled digits set): static INT8 calibrated on 256 training images keeps the held-out accuracy
 * within 0.5 points of fp32, with every Conv, the residual Add, the pooling and the classifier as
 * onnxruntime integer kernels.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { Model } from '../src/ir/model.js';
import { readArrays } from '../src/runtime/npy.js';
import { OrtSession } from '../src/runtime/ort.js';
import { ortOptimizedGraph } from '../src/quant/int8-kernels.js';
import { cleaned, dataFor, quantized } from './helpers-int8.js';

async function accuracy(model: Model): Promise<number> {
  const images = readArrays('models/digits/test_images.npy', 'x').get('x')!;
  const labels = readArrays('models/digits/test_labels.npy', 'x').get('x')!.toTypedArray<BigInt64Array>();
  const s = await OrtSession.create(model, { intraOpThreads: 2 });
  try {
    const logits = (await s.run({ image: images })).logits!.toTypedArray<Float32Array>();
    let right = 0;
    for (let i = 0; i < labels.length; i++) {
      let best = 0;
      for (let k = 1; k < 10; k++) if (logits[i * 10 + k]! > logits[i * 10 + best]!) best = k;
      if (BigInt(best) === labels[i]) right++;
    }
    return right / labels.length;
  } finally {
    await s.release();
  }
}

describe('digits CNN int8', () => {
  it('static int8 accuracy within 0.5 points of fp32, all integer kernels', async () => {
    const manifest = JSON.parse(readFileSync('models/digits/manifest.json', 'utf8')) as { fp32_test_accuracy_torch: number };
    const m = cleaned('models/digits/model.onnx');
    const fp32 = await accuracy(m);
    expect(Math.abs(fp32 - manifest.fp32_test_accuracy_torch)).toBeLessThan(1e-9);
    const calib = dataFor(m, 'models/digits/calib.npy');
    for (const calibMethod of ['minmax', 'percentile', 'mse'] as const) {
      const { model } = await quantized(m, calib, { calibMethod });
      const int8 = await accuracy(model);
      expect(Math.abs(int8 - fp32) * 100, calibMethod).toBeLessThanOrEqual(0.5);
      if (calibMethod === 'minmax') {
        const ort = await ortOptimizedGraph(model);
        const n = (op: string) => Object.entries(ort.ops).filter(([k]) => k.endsWith(op)).reduce((a, [, c]) => a + c, 0);
        expect(n('QLinearConv')).toBe(4);
        expect(n('QLinearAdd') + n('QLinearGlobalAveragePool') + n('QGemm')).toBe(3);
        expect(ort.floatMatmuls).toBe(0);
      }
    }
  });
});
