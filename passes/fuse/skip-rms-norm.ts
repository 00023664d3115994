/**
 * Residual Add + RMS normalization -> com.microsoft SkipSimplifiedLayerNormalization.
 *
 *   SimplifiedLayerNormalization(Add(Add(a, bias)?, skip), gamma)   (last axis)
 *     -> SkipSimplifiedLayerNormalization(a, skip, gamma, bias)    output 0: the normalized sum,
 *                                                                 output 3: the sum itself
 *
 * Llama's pre-norm residual stream: the sum feeds the next RMSNorm and the next residual Add, so
 * those other users read output 3 (input_skip_bias_sum). The rms-norm fusion runs first and makes
 * the SimplifiedLayerNormalization this matches. Input and skip are 3-D [B, S, H] or 2-D
 * [tokens, H] of the same shape (ContribOperators.md); gamma and bias one value per hidden
 * element; output 1 (inv_std_var) of the SimplifiedLayerNormalization unused.
 * OperatorKernels.md: CPU EP float32/float64/float16, CUDA EP float32/float16/bfloat16.
 *
 * Tagged for cpu and cuda (both EPs implement it), but left out of cpu's default set: measured on
 * onnxruntime 1.30's CPU EP, SkipSimplifiedLayerNormalization is slower than the Add + SimplifiedLayerNormalization it replaces
 * (bench/fusion.ts prints the per-block figures); `--fuse skip-rms-norm` still applies it.
 */
import { DataType } from '../../src/ir/dtype.js';
import type { Value } from '../../src/ir/graph.js';
import { k, op, typeFor, v, type Fusion, type OpPattern } from './engine.js';
import { addSkipNorm, asVector, perLastAxis, skipOperands } from './norm-forms.js';
import { rank } from './tensors.js';

function form(bias: boolean): OpPattern {
  const residual = bias ? op('Add', [v('a'), k('bias', undefined, 'the bias')], { name: 'biasAdd', commutative: true }) : v('a');
  const sum = op('Add', [residual, v('skip')], { name: 'x', commutative: true, shared: true });
  return op('SimplifiedLayerNormalization', [sum, k('gamma', undefined, 'the scale')], { name: 'norm' });
}

export const skipRmsNorm: Fusion = {
  name: 'skip-rms-norm',
  description: 'Add (residual, optional bias) + SimplifiedLayerNormalization (RMSNorm) -> com.microsoft SkipSimplifiedLayerNormalization',
  targets: ['cpu', 'cuda'],
  slowerOn: { cpu: 'onnxruntime 1.30\'s CPU SkipSimplifiedLayerNormalization kernel is slower than Add + SimplifiedLayerNormalization (up to several times per op at hidden 512-768; bench/fusion.ts)' },
  patterns: [form(true), form(false)],
  checks: [
    (m) => {
      const r = rank(m.value('x'));
      const axis = m.node('norm').attrInt('axis', -1);
      return r !== undefined && (axis === -1 || axis === r - 1) ? undefined : `SimplifiedLayerNormalization normalizes axis ${axis}, not the last`;
    },
    (m) => {
      const s = skipOperands(m.value('a'), m.value('skip'), [2, 3], false);
      return typeof s === 'string' ? s : undefined;
    },
    perLastAxis('gamma', 'the scale'),
    perLastAxis('bias', 'the bias'),
    typeFor('x', { cpu: [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16], cuda: [DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16] }, 'SkipSimplifiedLayerNormalization'),
  ],
  rewrite(m, r) {
    const { input, skip } = skipOperands(m.value('a'), m.value('skip'), [2, 3], false) as { input: Value; skip: Value };
    const inputs = [input, skip, asVector(m, r, 'gamma'), m.has('bias') ? asVector(m, r, 'bias') : null];
    addSkipNorm(m, r, 'SkipSimplifiedLayerNormalization', inputs, m.node('norm').attrFloat('epsilon', 1e-5));
  },
};
