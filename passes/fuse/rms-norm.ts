/**
 * RMS normalization -> SimplifiedLayerNormalization.
 *
 *   y = x / sqrt(ReduceMean(x^2) + eps) [* gamma]      (mean over the last axis, keepdims)
 *     -> SimplifiedLayerNormalization(x, gamma, axis=-1, epsilon=eps)
 *
 * in the forms of norm-forms.ts: TorchScript writes Llama's RMSNorm as
 * Mul(w, Mul(x, Div(1, Sqrt(Add(ReduceMean(Pow(x, 2)), eps)))), dynamo as the same with
 * Reciprocal(Sqrt(..)) (both are in the zoo). eps must be a constant, gamma (optional: ones are
 * supplied) a constant with one value per element of the last axis.
 * SimplifiedLayerNormalization is onnxruntime's, registered in the default domain from version 1
 * (OperatorKernels.md: CPU EP float32/float64/float16, CUDA EP also bfloat16); other runtimes do
 * not know it, so it is tagged for cpu and cuda only.
 */
import { DataType } from '../../src/ir/dtype.js';
import { floatAttr, intAttr, k, op, rootForms, typeFor, v, type Fusion, type Pattern } from './engine.js';
import { asVector, divideByStd, filled, meanOverLastAxis, normalizedSize, perLastAxis, squared } from './norm-forms.js';
import { elemType } from './tensors.js';

function rmsNormForm(withGamma: boolean): Pattern {
  const x = v('x');
  const y = divideByStd(x, meanOverLastAxis(squared(x), 'variance'));
  return withGamma ? op('Mul', [y, k('gamma', undefined, 'the scale')], { commutative: true }) : y;
}

export const rmsNorm: Fusion = {
  name: 'rms-norm',
  description: 'x / sqrt(ReduceMean(x^2) + eps) [* gamma] over the last axis (RMSNorm) -> SimplifiedLayerNormalization',
  targets: ['cpu', 'cuda'],
  patterns: [rmsNormForm(true), rmsNormForm(false)].flatMap(rootForms),
  checks: [
    (m) => (normalizedSize(m.value('x')) === undefined ? 'the size of the normalized axis is unknown' : undefined),
    perLastAxis('gamma', 'the scale'),
    typeFor('x', { cpu: [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16], cuda: [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16] }, 'SimplifiedLayerNormalization'),
  ],
  rewrite(m, r) {
    const x = m.value('x');
    const gamma = m.has('gamma') ? asVector(m, r, 'gamma') : filled(r, `${m.scope}RMSNorm_ones`, elemType(x)!, normalizedSize(x)!, 1);
    const n = r.add('SimplifiedLayerNormalization', [x, gamma], { attributes: [intAttr('axis', -1), floatAttr('epsilon', m.scalar('eps'))] });
    r.replace(m.root.outputs[0]!, n.outputs[0]!);
  },
};
