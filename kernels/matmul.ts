/**
 * MatMul (numpy semantics: 1-D operands promoted and removed again, batch dimensions
 * broadcast) and Gemm (transA/transB, alpha, beta, C broadcast to [M, N]). Products accumulate
 * in float64 and are rounded to the output type once.
 */
import { DataType, dtypeName, elementCount } from '../src/ir/dtype.js';
import type { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported } from './registry.js';
import { broadcastIndex, broadcastShapes, fromF64, input, readF64, requireDtype } from './util.js';

const MATMUL_TYPES = new Set<DataType>([
  DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16,
  DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64,
]);

function checkExactInts(op: string, t: Tensor, v: Float64Array): void {
  if ((t.dtype === DataType.INT64 || t.dtype === DataType.UINT64) && v.some((x) => Math.abs(x) > 2 ** 26)) {
    throw new KernelUnsupported(op, 'int64 values too large for exact products');
  }
}

kernel('MatMul', 1, (inputs) => {
  const a = input('MatMul', inputs, 0);
  const b = input('MatMul', inputs, 1);
  requireDtype('MatMul', a, MATMUL_TYPES);
  if (a.dtype !== b.dtype) throw new KernelUnsupported('MatMul', `mixed types ${dtypeName(a.dtype)} and ${dtypeName(b.dtype)}`);
  const ad = a.dims.length === 1 ? [1, a.dims[0]!] : [...a.dims];
  const bd = b.dims.length === 1 ? [b.dims[0]!, 1] : [...b.dims];
  if (ad.length === 0 || bd.length === 0) throw new KernelUnsupported('MatMul', 'scalar operands');
  const M = ad[ad.length - 2]!;
  const K = ad[ad.length - 1]!;
  const N = bd[bd.length - 1]!;
  if (bd[bd.length - 2] !== K) throw new KernelUnsupported('MatMul', `inner dimensions ${K} and ${bd[bd.length - 2]} that differ`);
  const batch = broadcastShapes('MatMul', ad.slice(0, -2), bd.slice(0, -2));
  const nb = elementCount(batch);
  const ia = broadcastIndex(ad.slice(0, -2), batch);
  const ib = broadcastIndex(bd.slice(0, -2), batch);
  const va = readF64(a);
  const vb = readF64(b);
  checkExactInts('MatMul', a, va);
  checkExactInts('MatMul', b, vb);
  const out = new Float64Array(nb * M * N);
  const row = new Float64Array(N);
  for (let t = 0; t < nb; t++) {
    const oa = (ia ? ia[t]! : t) * M * K;
    const ob = (ib ? ib[t]! : t) * K * N;
    for (let i = 0; i < M; i++) {
      row.fill(0);
      for (let k = 0; k < K; k++) {
        const x = va[oa + i * K + k]!;
        const base = ob + k * N;
        for (let j = 0; j < N; j++) row[j]! += x * vb[base + j]!;
      }
      out.set(row, (t * M + i) * N);
    }
  }
  const dims = [...batch, ...(a.dims.length === 1 ? [] : [M]), ...(b.dims.length === 1 ? [] : [N])];
  return [fromF64(a.dtype, dims, out)];
});

kernel('Gemm', 7, (inputs, node) => {
  const a = input('Gemm', inputs, 0);
  const b = input('Gemm', inputs, 1);
  const c = inputs[2] ?? null;
  requireDtype('Gemm', a, MATMUL_TYPES);
  if (a.dims.length !== 2 || b.dims.length !== 2) throw new KernelUnsupported('Gemm', 'operands that are not matrices');
  const transA = node.attrInt('transA', 0) === 1;
  const transB = node.attrInt('transB', 0) === 1;
  const alpha = node.attrFloat('alpha', 1);
  const beta = node.attrFloat('beta', 1);
  const [M, K] = transA ? [a.dims[1]!, a.dims[0]!] : [a.dims[0]!, a.dims[1]!];
  const [K2, N] = transB ? [b.dims[1]!, b.dims[0]!] : [b.dims[0]!, b.dims[1]!];
  if (K !== K2) throw new KernelUnsupported('Gemm', 'inner dimensions that differ');
  const va = readF64(a);
  const vb = readF64(b);
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += va[transA ? k * M + i : i * K + k]! * vb[transB ? j * K + k : k * N + j]!;
      out[i * N + j] = alpha * s;
    }
  }
  if (c) {
    const ic = broadcastIndex(c.dims, broadcastShapes('Gemm', c.dims, [M, N]));
    const vc = readF64(c);
    for (let i = 0; i < M * N; i++) out[i]! += beta * vc[ic ? ic[i]! : i]!;
  }
  return [fromF64(a.dtype, [M, N], out)];
});
