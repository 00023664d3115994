/**
 * Bias Add + Gelu -> com.microsoft BiasGelu; bias Add + FastGelu -> FastGelu with its bias input.
 *
 *   Gelu(Add(x, bias))      ->  BiasGelu(x, bias)
 *   FastGelu(Add(x, bias))  ->  FastGelu(x, bias)
 *
 * The Add is a linear layer's bias (BERT's intermediate/dense/Add before the activation); bias
 * must be a constant with one value per element of x's last axis (BiasGelu's B is 1-D,
 * ContribOperators.md), and the Add used only by the activation. Runs after the gelu and
 * fast-gelu fusions have made the activation one op. OperatorKernels.md: BiasGelu and FastGelu
 * take float32 on the CPU EP; float32/float64/float16/bfloat16 on the CUDA EP.
 */
import { k, op, typeFor, v, type Fusion } from './engine.js';
import { GELU_TYPES } from './gelu.js';
import { asVector, perLastAxis } from './norm-forms.js';

const biased = () => op('Add', [v('x'), k('bias', undefined, 'the bias')], { name: 'add', commutative: true });

export const biasGelu: Fusion = {
  name: 'bias-gelu',
  description: 'Add of a bias + Gelu/FastGelu -> com.microsoft BiasGelu / FastGelu with bias',
  targets: ['cpu', 'cuda'],
  patterns: [op('Gelu', [biased()], { domain: 'com.microsoft' }), op('FastGelu', [biased()], { domain: 'com.microsoft' })],
  checks: [perLastAxis('bias', 'the bias'), typeFor('x', GELU_TYPES, 'BiasGelu')],
  rewrite(m, r) {
    const fast = m.root.opType === 'FastGelu';
    const n = r.add(fast ? 'FastGelu' : 'BiasGelu', [m.value('x'), asVector(m, r, 'bias')], { domain: 'com.microsoft' });
    r.replace(m.root.outputs[0]!, n.outputs[0]!);
  },
};
