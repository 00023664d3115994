/**
 * SiLU / Swish (and QuickGelu) -> com.microsoft QuickGelu.
 *
 *   y = x * sigmoid(alpha * x)  ->  QuickGelu(x, alpha)      (alpha = 1 for SiLU)
 *
 * Llama's MLP activation (act_fn: Mul(x, Sigmoid(x)) in both exporters' forms, in the zoo), and
 * CLIP's QuickGELU (alpha 1.702). QuickGelu computes x * Sigmoid(alpha * x) (ContribOperators.md);
 * alpha must be a constant. OperatorKernels.md: CPU EP float32 only; CUDA EP
 * float32/float64/float16/bfloat16.
 */
import { floatAttr, k, op, typeFor, v, type Fusion } from './engine.js';
import { GELU_TYPES } from './gelu.js';
import { scalarConstant } from './tensors.js';

const x = v('x');

export const silu: Fusion = {
  name: 'silu',
  description: 'x * sigmoid(alpha * x) (SiLU/Swish, QuickGelu) -> com.microsoft QuickGelu',
  targets: ['cpu', 'cuda'],
  patterns: [
    op('Mul', [x, op('Sigmoid', [x])], { commutative: true }),
    op('Mul', [x, op('Sigmoid', [op('Mul', [x, k('alpha', undefined, 'alpha')], { commutative: true })])], { commutative: true }),
  ],
  checks: [(m) => (m.has('alpha') && scalarConstant(m.value('alpha')) === undefined ? 'alpha is not a single number' : undefined), typeFor('x', GELU_TYPES, 'QuickGelu')],
  rewrite(m, r) {
    r.requireOpset('com.microsoft', 1);
    const alpha = m.has('alpha') ? m.scalar('alpha') : 1;
    const n = r.add('QuickGelu', [m.value('x')], { domain: 'com.microsoft', attributes: [floatAttr('alpha', alpha)] });
    r.replace(m.root.outputs[0]!, n.outputs[0]!);
  },
};
