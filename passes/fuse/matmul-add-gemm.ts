/**
 * MatMul + Add -> Gemm.
 *
 *   Add(MatMul(A, B), C)  (either operand order, C a constant)  ->  Gemm(A, B, C)
 *
 * Legal only where Gemm means the same thing: A and B are 2-D (Gemm has no batch axes; a 3-D A
 * is a near-miss, onnxruntime itself reshapes those around a Gemm at session creation), and C
 * broadcasts to the [M, N] product in Gemm's one direction (C is [N], [1, N], [M, N], [M, 1] or
 * a scalar), so the Add's result has the product's shape. Gemm is a standard ONNX op; the
 * element types are those OperatorKernels.md lists for Gemm (CPU EP: float32/float64; CUDA EP
 * also float16/bfloat16).
 */
import { DataType } from '../../src/ir/dtype.js';
import { constOperand, op, typeFor, v, type Fusion } from './engine.js';
import { rank, sameDim, shape, showShape } from './tensors.js';

export const matmulAddGemm: Fusion = {
  name: 'matmul-add-gemm',
  description: 'MatMul with 2-D operands + Add of a broadcastable bias -> Gemm',
  targets: ['cpu', 'cuda'],
  // The bias is a constant in the skeleton: an Add of a computed value (a residual) after a
  // MatMul is no Gemm candidate, so no near-miss either.
  patterns: [op('Add', [op('MatMul', [v('a'), v('b')], { name: 'mm' }), constOperand('c')], { name: 'add', commutative: true })],
  checks: [
    (m) => {
      const ra = rank(m.value('a'));
      if (ra !== 2) return ra === undefined ? 'the rank of MatMul input A is unknown' : `MatMul input A is ${ra}-D (Gemm takes 2-D A only)`;
      const rb = rank(m.value('b'));
      return rb === 2 ? undefined : rb === undefined ? 'the rank of MatMul input B is unknown' : `MatMul input B is ${rb}-D (Gemm takes 2-D B only)`;
    },
    (m) => {
      const rows = shape(m.value('a'))![0];
      const cols = shape(m.value('b'))![1];
      const c = shape(m.value('c'));
      if (!c) return 'the shape of the bias is unknown';
      const fits = (d: number | string | null, full: number | string | null | undefined) => d === 1 || sameDim(d, full);
      const ok = c.length === 0 || (c.length === 1 && fits(c[0]!, cols)) || (c.length === 2 && fits(c[0]!, rows) && fits(c[1]!, cols));
      return ok ? undefined : `bias ${showShape(c)} does not broadcast to the product [${rows ?? '?'}, ${cols ?? '?'}] in Gemm's direction`;
    },
    typeFor('a', { cpu: [DataType.FLOAT, DataType.DOUBLE], cuda: [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16] }, 'Gemm'),
  ],
  rewrite(m, r) {
    const gemm = r.add('Gemm', [m.value('a'), m.value('b'), m.value('c')]);
    r.replace(m.value('add'), gemm.outputs[0]!);
  },
};
