/**
 * Conv + BatchNormalization -> Conv with folded weights.
 *
 *   y = BatchNormalization(Conv(x, W, B?), scale, bias, mean, var, epsilon)
 *     = Conv(x, W * s, (B - mean) * s + bias)      with s = scale / sqrt(var + epsilon), per output channel
 *
 * Legal when W, B (if any) and the four BatchNormalization parameters are constants, the
 * BatchNormalization is in inference mode (training_mode absent or 0, only its first output used)
 * and the Conv has no other user. The folding is computed in float64 and stored in the weights'
 * type (float32 or float64). A standard ONNX Conv comes out, so every target runs it
 * (onnxruntime's OperatorKernels.md: Conv on the CPU and CUDA EPs).
 */
import { DataType } from '../../src/ir/dtype.js';
import { attrIs, k, op, v, type Fusion } from './engine.js';
import { floatData, floatTensor } from './tensors.js';

export const convBatchNorm: Fusion = {
  name: 'conv-bn',
  description: 'Conv + BatchNormalization (inference) -> Conv with the normalization folded into its weights and bias',
  targets: ['cpu', 'cuda'],
  patterns: [
    op('BatchNormalization', [op('Conv', [v('x'), k('w', undefined, 'Conv weight')], { name: 'conv' }), k('scale', undefined, 'BatchNormalization scale'), k('bias', undefined, 'BatchNormalization bias'), k('mean', undefined, 'running mean'), k('var', undefined, 'running variance')], {
      name: 'bn',
      check: attrIs('training_mode', 0, 0),
    }),
    op('BatchNormalization', [op('Conv', [v('x'), k('w', undefined, 'Conv weight'), k('b', undefined, 'Conv bias')], { name: 'conv' }), k('scale', undefined, 'BatchNormalization scale'), k('bias', undefined, 'BatchNormalization bias'), k('mean', undefined, 'running mean'), k('var', undefined, 'running variance')], {
      name: 'bn',
      check: attrIs('training_mode', 0, 0),
    }),
  ],
  checks: [
    (m) => {
      const w = m.constant('w');
      if (w.dtype !== DataType.FLOAT && w.dtype !== DataType.DOUBLE) return `Conv weight is ${w.dtype === DataType.FLOAT16 ? 'float16' : `type ${w.dtype}`}; only float32/float64 weights are folded`;
      const channels = w.dims[0];
      if (channels === undefined) return 'Conv weight has no output-channel axis';
      for (const name of ['scale', 'bias', 'mean', 'var', ...(m.has('b') ? ['b'] : [])]) {
        const t = m.constant(name);
        if (t.elementCount !== channels || !floatData(t)) return `${name} has ${t.elementCount} elements, expected ${channels} (one per output channel)`;
      }
      return w.dims.length >= 3 ? undefined : `Conv weight has rank ${w.dims.length}, expected at least 3`;
    },
  ],
  rewrite(m, r) {
    const conv = m.node('conv');
    const bn = m.node('bn');
    const w = m.constant('w');
    const eps = bn.attrFloat('epsilon', 1e-5);
    const scale = floatData(m.constant('scale'))!;
    const shift = floatData(m.constant('bias'))!;
    const mean = floatData(m.constant('mean'))!;
    const variance = floatData(m.constant('var'))!;
    const bias = m.has('b') ? floatData(m.constant('b'))! : new Float64Array(scale.length);
    const weights = floatData(w)!;
    const channels = w.dims[0]!;
    const per = weights.length / channels;
    const s = Float64Array.from(scale, (g, c) => g / Math.sqrt(variance[c]! + eps));
    const folded = Float64Array.from(weights, (x, i) => x * s[Math.floor(i / per)]!);
    const newBias = Float64Array.from(s, (sc, c) => (bias[c]! - mean[c]!) * sc + shift[c]!);
    const wv = r.constant(`${m.value('w').name}_bn`, floatTensor('', w.dtype, w.dims, folded));
    const bv = r.constant(`${m.value('w').name}_bn_bias`, floatTensor('', w.dtype, [channels], newBias));
    const fused = r.add('Conv', [m.value('x'), wv, bv], { attributes: conv.attributes.map((a) => ({ ...a })) });
    r.replace(bn.outputs[0]!, fused.outputs[0]!);
  },
};
