/**
 * MatMul with a transposed operand and/or a constant scale -> com.microsoft FusedMatMul.
 *
 *   MatMul(Transpose(a)?, Transpose(b)?) [* alpha | / d]  ->  FusedMatMul(a, b, transA, transB, alpha)
 *
 * A Transpose is absorbed when it swaps the last two axes and nothing else (FusedMatMul's transA /
 * transB, ContribOperators.md; its input's rank must be known); other permutations stay (the
 * MatMul reads the transposed value as it is). A scale is absorbed when it is a one-element constant (Llama's attention scores:
 * MatMul(q, Transpose(k, [0, 1, 3, 2])) * 0.25). A plain MatMul with neither is left alone, and a
 * Mul whose other operand is computed is not a scale (no near-miss). The attention fusion runs
 * first and takes these MatMuls where the whole attention block matches. OperatorKernels.md:
 * FusedMatMul on the CPU EP takes float32; CUDA EP float32/float64/float16/bfloat16.
 */
import { DataType } from '../../src/ir/dtype.js';
import type { Node } from '../../src/ir/graph.js';
import { alt, constOperand, floatAttr, intAttr, op, typeFor, v, type Fusion, type Pattern } from './engine.js';
import { rank, scalarConstant } from './tensors.js';

// Only a swap of the last two axes is a FusedMatMul operand: a MatMul reading another
// permutation (attention's V in [0, 2, 1, 3]) is no candidate, so no near-miss either.
const transposed = (value: string, name: string) => op('Transpose', [v(value)], { name, require: (t) => swapsLastTwo(t) === undefined });
const either = (value: string, name: string): Pattern => alt(transposed(value, name), v(value));
const product = () => op('MatMul', [either('a', 'ta'), either('b', 'tb')], { name: 'mm' });

/** Why a Transpose is not a swap of its input's last two axes, or undefined when it is. */
function swapsLastTwo(t: Node): string | undefined {
  const r = rank(t.inputs[0]);
  if (r === undefined) return `the rank of '${t.name}' (Transpose)'s input is unknown`;
  if (r < 2) return `'${t.name}' (Transpose) has a ${r}-D input`;
  const perm = t.attrInts('perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i);
  const swap = perm.every((p, i) => (i < r - 2 ? p === i : p === (i === r - 2 ? r - 1 : r - 2)));
  return swap ? undefined : `'${t.name}' (Transpose) permutes [${perm.join(', ')}], not only the last two axes`;
}

export const fusedMatMul: Fusion = {
  name: 'fused-matmul',
  description: 'MatMul with last-two-axes Transposes on its operands and/or a constant scale -> com.microsoft FusedMatMul',
  targets: ['cpu', 'cuda'],
  patterns: [
    op('Mul', [product(), constOperand('alpha')], { commutative: true }),
    op('Div', [product(), constOperand('divisor')]),
    op('MatMul', [transposed('a', 'ta'), either('b', 'tb')], { name: 'mm' }),
    op('MatMul', [v('a'), transposed('b', 'tb')], { name: 'mm' }),
  ],
  checks: [
    (m) => {
      for (const s of ['alpha', 'divisor']) {
        if (!m.has(s)) continue;
        const x = scalarConstant(m.value(s));
        if (x === undefined) return `the ${s === 'alpha' ? 'scale' : 'divisor'} '${m.value(s).name}' is not a single number`;
        if (x === 0 && s === 'divisor') return 'the divisor is 0';
      }
      return undefined;
    },
    (m) => ((rank(m.value('a')) ?? 0) >= 2 && (rank(m.value('b')) ?? 0) >= 2 ? undefined : 'MatMul operands are not known to be at least 2-D'),
    typeFor('a', { cpu: [DataType.FLOAT], cuda: [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16] }, 'FusedMatMul'),
  ],
  rewrite(m, r) {
    const alpha = m.has('alpha') ? m.scalar('alpha') : m.has('divisor') ? 1 / m.scalar('divisor') : 1;
    r.requireOpset('com.microsoft', 1);
    const n = r.add('FusedMatMul', [m.value('a'), m.value('b')], {
      domain: 'com.microsoft',
      attributes: [floatAttr('alpha', alpha), intAttr('transA', m.has('ta') ? 1 : 0), intAttr('transB', m.has('tb') ? 1 : 0)],
    });
    r.replace(m.root.outputs[0]!, n.outputs[0]!);
  },
};
