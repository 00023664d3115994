/**
 * MatMul (numpy semantics: 1-D operands promoted and the added dimension removed again, batch
 * dimensions broadcast) and Gemm (transA/transB, alpha, beta, C broadcast unidirectionally to
 * [M, N]; the legacy `broadcast` attribute of opsets 1-6).
 *
 * Floats accumulate in float64 and are rounded to the output type once; results whose partial
 * sums could overflow float32/float16 are refused (they depend on accumulation order). int32/uint32 products
 * accumulate modulo 2^32 (Math.imul), int64/uint64 as bigints modulo 2^64: the wrapped result C
 * and numpy give. Integer Gemm is supported only with alpha = beta = 1 (with other scales the
 * implementations round differently).
 */
import { DataType, dtypeName, elementCount } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported } from './registry.js';
import { broadcastIndex, broadcastShapes, checkAttributes, domainOf, fromF64, input, isFloatType, readBig, readF64, requireDtype } from './util.js';

const MATMUL_TYPES = new Set<DataType>([
  DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16,
  DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64,
]);

/** C[M,N] (+)= A[M,K] * B[K,N] for one matrix pair at the given offsets and element strides. */
interface MatView {
  off: number;
  /** Stride between rows and between columns (transposed views swap them). */
  rs: number;
  cs: number;
}

function gemmF64(va: Float64Array, A: MatView, vb: Float64Array, B: MatView, out: Float64Array, outOff: number, M: number, K: number, N: number): void {
  const row = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const x = va[A.off + i * A.rs + k * A.cs]!;
      const base = B.off + k * B.rs;
      for (let j = 0; j < N; j++) row[j]! += x * vb[base + j * B.cs]!;
    }
    out.set(row, outOff + i * N);
  }
}

function gemmI32(va: Float64Array, A: MatView, vb: Float64Array, B: MatView, out: Float64Array, outOff: number, M: number, K: number, N: number, unsigned: boolean): void {
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s = (s + Math.imul(va[A.off + i * A.rs + k * A.cs]!, vb[B.off + k * B.rs + j * B.cs]!)) | 0;
      out[outOff + i * N + j] = unsigned ? s >>> 0 : s;
    }
  }
}

function gemmBig(
  va: BigInt64Array | BigUint64Array, A: MatView, vb: BigInt64Array | BigUint64Array, B: MatView,
  out: BigInt64Array | BigUint64Array, outOff: number, M: number, K: number, N: number,
): void {
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0n;
      for (let k = 0; k < K; k++) s += va[A.off + i * A.rs + k * A.cs]! * vb[B.off + k * B.rs + j * B.cs]!;
      out[outOff + i * N + j] = s; // the store wraps modulo 2^64
    }
  }
}

/**
 * float32/float16/bfloat16 results whose partial sums may overflow the type (or float32, where
 * half precision accumulates) depend on the accumulation order and precision: refuse them. The
 * bound is sum_k |a_ik b_kj| over finite products (non-finite inputs give the same inf/NaN in
 * every order), plus |beta * c|.
 */
function checkOverflow(op: string, dtype: DataType, va: Float64Array, A: MatView, vb: Float64Array, B: MatView, M: number, K: number, N: number, scale = 1, extra?: (i: number) => number): void {
  if (dtype === DataType.DOUBLE) return;
  const limit = (dtype === DataType.FLOAT16 ? 65504 : 3.4028234663852886e38) / 2;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const p = Math.abs(va[A.off + i * A.rs + k * A.cs]! * vb[B.off + k * B.rs + j * B.cs]!);
        if (Number.isFinite(p)) s += p;
      }
      s *= Math.abs(scale);
      if (extra) {
        const c = Math.abs(extra(i * N + j));
        if (Number.isFinite(c)) s += c;
      }
      if (s > limit) throw new KernelUnsupported(op, `${dtypeName(dtype)} sums large enough to overflow part way`);
    }
  }
}

kernel('MatMul', 1, (inputs, node) => {
  checkAttributes(node, []);
  const a = input('MatMul', inputs, 0);
  const b = input('MatMul', inputs, 1);
  requireDtype('MatMul', a, MATMUL_TYPES);
  if (a.dtype !== b.dtype) throw new KernelUnsupported('MatMul', `mixed types ${dtypeName(a.dtype)} and ${dtypeName(b.dtype)}`);
  if (a.dims.length === 0 || b.dims.length === 0) throw new KernelUnsupported('MatMul', 'scalar operands');
  const ad = a.dims.length === 1 ? [1, a.dims[0]!] : [...a.dims];
  const bd = b.dims.length === 1 ? [b.dims[0]!, 1] : [...b.dims];
  const M = ad[ad.length - 2]!;
  const K = ad[ad.length - 1]!;
  const N = bd[bd.length - 1]!;
  if (bd[bd.length - 2] !== K) throw new KernelUnsupported('MatMul', `inner dimensions ${K} and ${bd[bd.length - 2]} that differ`);
  const batch = broadcastShapes('MatMul', ad.slice(0, -2), bd.slice(0, -2));
  const nb = elementCount(batch);
  const ia = broadcastIndex(ad.slice(0, -2), batch);
  const ib = broadcastIndex(bd.slice(0, -2), batch);
  const dims = [...batch, ...(a.dims.length === 1 ? [] : [M]), ...(b.dims.length === 1 ? [] : [N])];
  const view = (t: number, rows: number, cols: number): MatView => ({ off: t * rows * cols, rs: cols, cs: 1 });
  if (domainOf(a.dtype) === 'big') {
    const va = readBig(a);
    const vb = readBig(b);
    const out = a.dtype === DataType.INT64 ? new BigInt64Array(nb * M * N) : new BigUint64Array(nb * M * N);
    for (let t = 0; t < nb; t++) gemmBig(va, view(ia ? ia[t]! : t, M, K), vb, view(ib ? ib[t]! : t, K, N), out, t * M * N, M, K, N);
    return [Tensor.fromTypedArray('', a.dtype, dims, out)];
  }
  const va = readF64(a);
  const vb = readF64(b);
  const out = new Float64Array(nb * M * N);
  for (let t = 0; t < nb; t++) {
    const A = view(ia ? ia[t]! : t, M, K);
    const B = view(ib ? ib[t]! : t, K, N);
    if (isFloatType(a.dtype)) {
      checkOverflow('MatMul', a.dtype, va, A, vb, B, M, K, N);
      gemmF64(va, A, vb, B, out, t * M * N, M, K, N);
    }
    else gemmI32(va, A, vb, B, out, t * M * N, M, K, N, a.dtype === DataType.UINT32);
  }
  return [fromF64(a.dtype, dims, out)];
});

kernel('Gemm', 1, (inputs, node, ctx) => {
  checkAttributes(node, ['alpha', 'beta', 'transA', 'transB', 'broadcast']);
  const a = input('Gemm', inputs, 0);
  const b = input('Gemm', inputs, 1);
  const c = inputs[2] ?? null;
  requireDtype('Gemm', a, MATMUL_TYPES);
  if (a.dtype !== b.dtype || (c && c.dtype !== a.dtype)) throw new KernelUnsupported('Gemm', 'mixed input types');
  if (a.dims.length !== 2 || b.dims.length !== 2) throw new KernelUnsupported('Gemm', 'operands that are not matrices');
  const transA = node.attrInt('transA', 0) !== 0;
  const transB = node.attrInt('transB', 0) !== 0;
  const alpha = node.attrFloat('alpha', 1);
  const beta = node.attrFloat('beta', 1);
  const [M, K] = transA ? [a.dims[1]!, a.dims[0]!] : [a.dims[0]!, a.dims[1]!];
  const [K2, N] = transB ? [b.dims[1]!, b.dims[0]!] : [b.dims[0]!, b.dims[1]!];
  if (K !== K2) throw new KernelUnsupported('Gemm', `inner dimensions ${K} and ${K2} that differ`);
  if (c) {
    // C broadcasts unidirectionally to [M, N]; before opset 7, only with broadcast=1.
    const legacyExact = ctx.opsetVersion < 7 && node.attrInt('broadcast', 0) === 0;
    const ok = c.dims.length <= 2 && c.dims.every((d, i) => {
      const target = [M, N][2 - c.dims.length + i]!;
      return d === target || (!legacyExact && d === 1);
    }) && (!legacyExact || c.dims.length === 2);
    if (!ok) throw new KernelUnsupported('Gemm', `C of shape [${c.dims.join(',')}] for [${M},${N}]`);
  }
  const A: MatView = { off: 0, rs: transA ? 1 : K, cs: transA ? M : 1 };
  const B: MatView = { off: 0, rs: transB ? 1 : N, cs: transB ? K : 1 };
  const ic = c ? broadcastIndex(c.dims, [M, N]) : null;
  if (!isFloatType(a.dtype)) {
    if (alpha !== 1 || (c && beta !== 1)) throw new KernelUnsupported('Gemm', 'integer inputs with alpha or beta other than 1');
    if (domainOf(a.dtype) === 'big') {
      const out = a.dtype === DataType.INT64 ? new BigInt64Array(M * N) : new BigUint64Array(M * N);
      gemmBig(readBig(a), A, readBig(b), B, out, 0, M, K, N);
      if (c) {
        const vc = readBig(c);
        for (let i = 0; i < M * N; i++) out[i] = out[i]! + vc[ic ? ic[i]! : i]!;
      }
      return [Tensor.fromTypedArray('', a.dtype, [M, N], out)];
    }
    const out = new Float64Array(M * N);
    gemmI32(readF64(a), A, readF64(b), B, out, 0, M, K, N, a.dtype === DataType.UINT32);
    if (c) {
      const vc = readF64(c);
      for (let i = 0; i < M * N; i++) out[i] = out[i]! + vc[ic ? ic[i]! : i]!; // fromF64 wraps
    }
    return [fromF64(a.dtype, [M, N], out)];
  }
  const out = new Float64Array(M * N);
  const va = readF64(a);
  const vb = readF64(b);
  const vc = c ? readF64(c) : null;
  checkOverflow('Gemm', a.dtype, va, A, vb, B, M, K, N, alpha, vc && beta !== 0 ? (i) => beta * vc[ic ? ic[i]! : i]! : undefined);
  gemmF64(va, A, vb, B, out, 0, M, K, N);
  if (alpha !== 1) for (let i = 0; i < M * N; i++) out[i] = alpha * out[i]!;
  if (vc && beta !== 0) {
    for (let i = 0; i < M * N; i++) out[i] = out[i]! + beta * vc[ic ? ic[i]! : i]!;
  }
  return [fromF64(a.dtype, [M, N], out)];
});
