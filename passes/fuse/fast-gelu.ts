/**
 * GELU, tanh approximation -> com.microsoft FastGelu.
 *
 *   y = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))  ->  FastGelu(x)
 *
 * as GPT-2's NewGELU / nn.GELU(approximate='tanh') export it (gpt2-static in the zoo):
 * Mul(Mul(x, 0.5), Add(Tanh(Mul(Add(x, Mul(Pow(x, 3), 0.044715)), 0.7978846)), 1)), with the
 * half on any factor, x^3 as Pow(x, 3) or x*x*x, and the inner sum also written
 * sqrt(2/pi)*x + 0.035677*x^3 (onnxruntime's own form). FastGelu computes exactly this formula
 * (ContribOperators.md), so the constants must be these (relative 1e-4). OperatorKernels.md:
 * CPU EP float32 only; CUDA EP float32/float64/float16/bfloat16.
 */
import { alt, k, op, rootForms, typeFor, v, type Fusion } from './engine.js';
import { GELU_TYPES, halfTimes } from './gelu.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const x = v('x');
const cube = alt(op('Pow', [x, k(undefined, 3, 'the exponent 3')]), op('Mul', [x, op('Mul', [x, x])], { commutative: true }));
const inner = alt(
  op('Mul', [op('Add', [x, op('Mul', [cube, k(undefined, 0.044715, '0.044715')], { commutative: true })], { commutative: true }), k(undefined, SQRT_2_OVER_PI, 'sqrt(2/pi)')], { commutative: true }),
  op('Add', [op('Mul', [x, k(undefined, SQRT_2_OVER_PI, 'sqrt(2/pi)')], { commutative: true }), op('Mul', [cube, k(undefined, 0.044715 * SQRT_2_OVER_PI, '0.044715*sqrt(2/pi)')], { commutative: true })], { commutative: true }),
);
const onePlusTanh = op('Add', [op('Tanh', [inner]), k(undefined, 1, 'the 1 in 1 + tanh')], { commutative: true });

export const fastGelu: Fusion = {
  name: 'fast-gelu',
  description: '0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> com.microsoft FastGelu',
  targets: ['cpu', 'cuda'],
  patterns: rootForms(halfTimes(x, onePlusTanh)),
  checks: [typeFor('x', GELU_TYPES, 'FastGelu')],
  rewrite(m, r) {
    r.requireOpset('com.microsoft', 1);
    const n = r.add('FastGelu', [m.value('x')], { domain: 'com.microsoft' });
    r.replace(m.root.outputs[0]!, n.outputs[0]!);
  },
};
