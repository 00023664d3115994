/**
 * GELU, erf form -> com.microsoft Gelu.
 *
 *   y = 0.5 * x * (1 + erf(x / sqrt(2)))  ->  Gelu(x)
 *
 * as exporters write nn.GELU() / F.gelu (BERT's and ViT's intermediate activation in the zoo):
 * Mul(Mul(x, Add(Erf(Div(x, 1.4142135)), 1)), 0.5), with the 0.5 on any of the three factors,
 * operands in either order, and x * 0.70710677 for x / sqrt(2). Constants must be those numbers
 * (relative 1e-4). Gelu is a contrib op on both EPs (OperatorKernels.md: the CPU kernel takes
 * float32 only; CUDA float32/float64/float16/bfloat16), so a float16 model on cpu is a near-miss.
 * (The opset-20 Gelu would do for models at opset 20+; the contrib op serves every opset.)
 */
import { DataType } from '../../src/ir/dtype.js';
import { alt, k, op, rootForms, typeFor, v, type Fusion, type Pattern } from './engine.js';

/** 0.5 * x * inner, with the half on any factor and operands in either order. */
export function halfTimes(x: Pattern, inner: Pattern): Pattern {
  const half = () => k(undefined, 0.5, 'the factor 1/2');
  return alt(
    op('Mul', [op('Mul', [x, inner], { commutative: true }), half()], { commutative: true }),
    op('Mul', [op('Mul', [x, half()], { commutative: true }), inner], { commutative: true }),
    op('Mul', [x, op('Mul', [inner, half()], { commutative: true })], { commutative: true }),
  );
}

const x = v('x');
const scaled = alt(op('Div', [x, k(undefined, Math.SQRT2, 'sqrt(2)')]), op('Mul', [x, k(undefined, Math.SQRT1_2, '1/sqrt(2)')], { commutative: true }));
const onePlusErf = op('Add', [op('Erf', [scaled]), k(undefined, 1, 'the 1 in 1 + erf')], { commutative: true });

export const GELU_TYPES = { cpu: [DataType.FLOAT], cuda: [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16] } as const;

export const gelu: Fusion = {
  name: 'gelu',
  description: '0.5 * x * (1 + erf(x / sqrt(2))) -> com.microsoft Gelu',
  targets: ['cpu', 'cuda'],
  patterns: rootForms(halfTimes(x, onePlusErf)),
  checks: [typeFor('x', GELU_TYPES, 'Gelu')],
  rewrite(m, r) {
    r.requireOpset('com.microsoft', 1);
    const n = r.add('Gelu', [m.value('x')], { domain: 'com.microsoft' });
    r.replace(m.root.outputs[0]!, n.outputs[0]!);
  },
};
