/**
 * Residual Add (+ bias) + LayerNormalization -> com.microsoft SkipLayerNormalization.
 *
 *   LayerNormalization(Add(Add(a, bias)?, skip), gamma, beta?)   (last axis)
 *     -> SkipLayerNormalization(a, skip, gamma, beta, bias)      output 0: the normalized sum,
 *                                                               output 3: the sum itself
 *
 * BERT's post-LN blocks (output/dense/Add of the bias, output/Add of the residual, LayerNorm),
 * GPT-2's pre-LN residual stream and the embeddings' sum all have this shape once LayerNorm is one
 * op (the layer-norm fusion runs first). When the sum has other users (the next residual, in
 * pre-LN models) they read output 3 (input_skip_bias_sum). The input must be 3-D [B, S, H]
 * (ContribOperators.md), the skip of the same shape or [1, S, H] / [S, H]; gamma, beta and bias
 * one value per hidden element; the LayerNormalization's Mean/InvStdDev outputs unused.
 * OperatorKernels.md: CPU EP float32/float64/float16, CUDA EP float32/float16/bfloat16.
 *
 * Tagged for cpu and cuda (both EPs implement it), but left out of cpu's default set: measured on
 * onnxruntime 1.30's CPU EP, SkipLayerNormalization is slower than the Add + LayerNormalization it replaces
 * (bench/fusion.ts prints the per-block figures); `--fuse skip-layer-norm` still applies it.
 */
import { DataType } from '../../src/ir/dtype.js';
import type { Value } from '../../src/ir/graph.js';
import { k, op, typeFor, v, type Fusion, type OpPattern } from './engine.js';
import { addSkipNorm, asVector, perLastAxis, skipOperands } from './norm-forms.js';
import { rank } from './tensors.js';

function form(bias: boolean, beta: boolean): OpPattern {
  const residual = bias ? op('Add', [v('a'), k('bias', undefined, 'the bias')], { name: 'biasAdd', commutative: true }) : v('a');
  const sum = op('Add', [residual, v('skip')], { name: 'x', commutative: true, shared: true });
  return op('LayerNormalization', [sum, k('gamma', undefined, 'the scale'), ...(beta ? [k('beta', undefined, 'the shift')] : [])], { name: 'ln' });
}

export const skipLayerNorm: Fusion = {
  name: 'skip-layer-norm',
  description: 'Add (residual, optional bias) + LayerNormalization -> com.microsoft SkipLayerNormalization',
  targets: ['cpu', 'cuda'],
  slowerOn: { cpu: 'onnxruntime 1.30\'s CPU SkipLayerNormalization kernel is slower than Add + LayerNormalization (up to several times per op at hidden 512-768; bench/fusion.ts)' },
  patterns: [form(true, true), form(true, false), form(false, true), form(false, false)],
  checks: [
    (m) => {
      const ln = m.node('ln');
      const r = rank(m.value('x'));
      const axis = ln.attrInt('axis', -1);
      return r !== undefined && (axis === -1 || axis === r - 1) ? undefined : `LayerNormalization normalizes axis ${axis}, not the last`;
    },
    (m) => {
      const s = skipOperands(m.value('a'), m.value('skip'), [3], true);
      return typeof s === 'string' ? s : undefined;
    },
    perLastAxis('gamma', 'the scale'),
    perLastAxis('beta', 'the shift'),
    perLastAxis('bias', 'the bias'),
    typeFor('x', { cpu: [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16], cuda: [DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16] }, 'SkipLayerNormalization'),
  ],
  rewrite(m, r) {
    const { input, skip } = skipOperands(m.value('a'), m.value('skip'), [3], true) as { input: Value; skip: Value };
    const inputs = [input, skip, asVector(m, r, 'gamma'), m.has('beta') ? asVector(m, r, 'beta') : null, m.has('bias') ? asVector(m, r, 'bias') : null];
    addSkipNorm(m, r, 'SkipLayerNormalization', inputs, m.node('ln').attrFloat('epsilon', 1e-5));
  },
};
