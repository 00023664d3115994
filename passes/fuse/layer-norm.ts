/**
 * Decomposed layer normalization -> LayerNormalization.
 *
 *   d = x - ReduceMean(x)          (last axis, keepdims)
 *   y = d / sqrt(ReduceMean(d^2) + eps) [* gamma] [+ beta]
 *     -> LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps)
 *
 * in the forms of norm-forms.ts (Div by Sqrt, or Mul by 1/Sqrt or Reciprocal(Sqrt); Pow(d, 2)
 * or d*d), which is what the TorchScript exporter writes for nn.LayerNorm below opset 17 and
 * both exporters write for hand-written layer norms. Both reductions must be over the last axis
 * only, eps a constant, gamma/beta (each optional: ones/zeros are supplied) constants with one
 * value per element of the last axis. LayerNormalization is standard from opset 17; onnxruntime
 * also registers it in the default domain for opsets 1-16 (OperatorKernels.md, CPU and CUDA), so
 * older models may take it too. Element types: the CPU EP's kernel takes float32/float64/float16,
 * the CUDA EP's also bfloat16.
 */
import { DataType } from '../../src/ir/dtype.js';
import { floatAttr, intAttr, k, op, rootForms, typeFor, v, type Fusion, type Pattern } from './engine.js';
import { asVector, divideByStd, filled, meanOverLastAxis, normalizedSize, perLastAxis, squared } from './norm-forms.js';
import { elemType } from './tensors.js';

function layerNormForm(withGamma: boolean, withBeta: boolean): Pattern {
  const x = v('x');
  const diff = op('Sub', [x, meanOverLastAxis(x, 'mean')], { name: 'diff' });
  let y: Pattern = divideByStd(diff, meanOverLastAxis(squared(diff), 'variance'));
  if (withGamma) y = op('Mul', [y, k('gamma', undefined, 'the scale')], { commutative: true });
  if (withBeta) y = op('Add', [y, k('beta', undefined, 'the shift')], { commutative: true });
  return y;
}

export const layerNorm: Fusion = {
  name: 'layer-norm',
  description: 'ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div [Mul gamma] [Add beta] over the last axis -> LayerNormalization',
  targets: ['cpu', 'cuda'],
  // Largest form first; the engine visits consumers first, so the outermost op is tried first.
  patterns: [layerNormForm(true, true), layerNormForm(true, false), layerNormForm(false, true), layerNormForm(false, false)].flatMap(rootForms),
  checks: [
    (m) => (normalizedSize(m.value('x')) === undefined ? 'the size of the normalized axis is unknown' : undefined),
    perLastAxis('gamma', 'the scale'),
    perLastAxis('beta', 'the shift'),
    typeFor('x', { cpu: [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16], cuda: [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16] }, 'LayerNormalization'),
  ],
  rewrite(m, r) {
    const x = m.value('x');
    const h = normalizedSize(x)!;
    const t = elemType(x)!;
    const gamma = m.has('gamma') ? asVector(m, r, 'gamma') : filled(r, `${m.scope}LayerNorm_ones`, t, h, 1);
    const beta = m.has('beta') ? asVector(m, r, 'beta') : null;
    const ln = r.add('LayerNormalization', [x, gamma, beta], { attributes: [intAttr('axis', -1), floatAttr('epsilon', m.scalar('eps'))] });
    r.replace(m.root.outputs[0]!, ln.outputs[0]!);
  },
};
