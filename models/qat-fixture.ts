/**
 * A QAT-style fixture: what a quantization-aware-training export looks like. Every activation a
 * quantized node reads or writes sits behind QuantizeLinear -> DequantizeLinear with a fixed
 * ("trained") scale and zero point; weights are float constants behind their own
 * QuantizeLinear -> DequantizeLinear (int8, symmetric, per output channel for the convolutions,
 * per tensor for the classifier) whose scales are deliberately NOT max|w| / 127, so a compiler
 * that re-calibrated them would visibly change them; biases stay float, as PyTorch exports them.
 *
 *   x[N,1,8,8] -Q/DQ-> Conv(8, 3x3) -> Relu -Q/DQ-> Conv(16, 3x3) -> Relu -Q/DQ-> GlobalAveragePool
 *     -Q/DQ-> Flatten -Q/DQ-> Gemm(10, transB) -> logits
 */
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { ModelBuilder } from './builder.js';
import { mulberry32 as rng } from '../src/random.js';

/** The trained activation scales (uint8, zero point 0 after ReLU; 128 for the input). */
export const QAT_ACTIVATIONS = { input: { scale: 1 / 127, zeroPoint: 128 }, conv1: { scale: 0.021, zeroPoint: 0 }, conv2: { scale: 0.033, zeroPoint: 0 }, pool: { scale: 0.017, zeroPoint: 0 } };


export function buildQatFixture(options: { batch?: number | string } = {}): Model {
  const rand = rng(7);
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, [options.batch ?? 'N', 1, 8, 8]);
  const qdq = (v: Value, name: string, p: { scale: number; zeroPoint: number }) => {
    const s = b.initializer(`${name}_scale`, DataType.FLOAT, [], Float32Array.of(p.scale));
    const z = b.initializer(`${name}_zero_point`, DataType.UINT8, [], Uint8Array.of(p.zeroPoint));
    const q = b.op('QuantizeLinear', [v, s, z], {}, { name: `${name}_QuantizeLinear` });
    return b.op('DequantizeLinear', [q, s, z], {}, { name: `${name}_DequantizeLinear` });
  };
  const weight = (name: string, dims: number[], axis: number | undefined) => {
    const n = dims.reduce((a, c) => a * c, 1);
    const w = Float32Array.from({ length: n }, () => (rand() * 2 - 1) * 0.5);
    const channels = axis === undefined ? 1 : dims[axis]!;
    const inner = axis === undefined ? n : dims.slice(axis + 1).reduce((a, c) => a * c, 1);
    const max = new Float32Array(channels);
    for (let i = 0; i < n; i++) {
      const c = axis === undefined ? 0 : Math.floor(i / inner) % channels;
      max[c] = Math.max(max[c]!, Math.abs(w[i]!));
    }
    // "Trained" scales: 0.8 to 1.1 of max|w| / 127 (clipping some weights, as learnt ranges do).
    const scales = Float32Array.from(max, (m) => Math.fround((m / 127) * (0.8 + 0.3 * rand())));
    const wv = b.initializer(name, DataType.FLOAT, dims, w);
    const sv = b.initializer(`${name}_scale`, DataType.FLOAT, axis === undefined ? [] : [channels], scales);
    const zv = b.initializer(`${name}_zero_point`, DataType.INT8, axis === undefined ? [] : [channels], new Int8Array(channels));
    const attrs: Record<string, number> = axis === undefined ? {} : { axis };
    const q = b.op('QuantizeLinear', [wv, sv, zv], attrs, { name: `${name}_QuantizeLinear` });
    return b.op('DequantizeLinear', [q, sv, zv], attrs, { name: `${name}_DequantizeLinear` });
  };
  const bias = (name: string, n: number) => b.initializer(name, DataType.FLOAT, [n], Float32Array.from({ length: n }, () => (rand() * 2 - 1) * 0.1));
  const x0 = qdq(x, 'x', QAT_ACTIVATIONS.input);
  const c1 = b.op('Conv', [x0, weight('conv1.weight', [8, 1, 3, 3], 0), bias('conv1.bias', 8)], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv1' });
  const r1 = qdq(b.op('Relu', [c1], {}, { name: 'relu1' }), 'relu1', QAT_ACTIVATIONS.conv1);
  const c2 = b.op('Conv', [r1, weight('conv2.weight', [16, 8, 3, 3], 0), bias('conv2.bias', 16)], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv2' });
  const r2 = qdq(b.op('Relu', [c2], {}, { name: 'relu2' }), 'relu2', QAT_ACTIVATIONS.conv2);
  const pool = qdq(b.op('GlobalAveragePool', [r2], {}, { name: 'pool' }), 'pool', QAT_ACTIVATIONS.pool);
  const flat = qdq(b.op('Flatten', [pool], {}, { name: 'flatten' }), 'flatten', QAT_ACTIVATIONS.pool);
  const logits = b.op('Gemm', [flat, weight('fc.weight', [10, 16], undefined), bias('fc.bias', 10)], { transB: 1 }, { name: 'fc' });
  b.output(logits, { dtype: DataType.FLOAT, shape: [options.batch ?? 'N', 10] });
  const model = b.build();
  model.graph.renameValue(logits, 'logits');
  return model;
}
