/**
 * Dense symmetric positive-definite factorizations in float64 on row-major typed arrays, for
 * GPTQ's inverse Hessian. Loops run along rows (contiguous memory) wherever the math allows,
 * because the matrices are K x K with K up to tens of thousands.
 */

/**
 * In place: the lower Cholesky factor L of A = L L^T (row-major n x n; the strict upper triangle
 * is zeroed). Returns false, leaving A partly overwritten, when A is not positive definite.
 */
export function choleskyLower(a: Float64Array, n: number): boolean {
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      const s = a[ri + j]! - dot(a, ri, a, rj, j);
      if (j === i) {
        if (!(s > 0) || !Number.isFinite(s)) return false;
        a[ri + i] = Math.sqrt(s);
      } else {
        a[ri + j] = s / a[rj + j]!;
      }
    }
    for (let j = i + 1; j < n; j++) a[ri + j] = 0;
  }
  return true;
}

/**
 * The upper Cholesky factor U of A^-1 (A^-1 = U^T U), which is what GPTQ reads: row p of U,
 * divided by U[p][p], is the update that spreads column p's rounding error over the columns after
 * it. With J the order-reversing permutation: J A J = L L^T gives A^-1 = (J L^-T J)(J L^-1 J),
 * a lower triangle times its transpose, so U = J L^-1 J — one factorization and one triangular
 * inverse (n^3 / 2 flops) instead of factorizing A and then A^-1. `a` is overwritten; returns null
 * when A is not positive definite.
 */
export function upperCholeskyOfInverse(a: Float64Array, n: number): Float64Array | null {
  // J A J is A with both axes reversed: the flat array reversed.
  a.reverse();
  if (!choleskyLower(a, n)) return null;
  const L = a;
  // Y = (L^-1)^T, upper triangular: Y[j][i] = -(sum_{k=j}^{i-1} L[i][k] Y[j][k]) / L[i][i].
  const Y = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    Y[rj + j] = 1 / L[rj + j]!;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      Y[rj + i] = -dot(L, ri + j, Y, rj + j, i - j) / L[ri + i]!;
    }
  }
  // U[i][j] = (L^-1)[n-1-i][n-1-j] = Y[n-1-j][n-1-i]: Y transposed, then both axes reversed.
  const U = L;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) U[i * n + j] = Y[(n - 1 - j) * n + (n - 1 - i)]!;
  return U;
}

/** sum_{t < len} a[ia + t] * b[ib + t], four partial sums (the adds overlap instead of queueing). */
export function dot(a: Float64Array, ia: number, b: Float64Array, ib: number, len: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let t = 0;
  for (; t + 3 < len; t += 4) {
    s0 += a[ia + t]! * b[ib + t]!;
    s1 += a[ia + t + 1]! * b[ib + t + 1]!;
    s2 += a[ia + t + 2]! * b[ib + t + 2]!;
    s3 += a[ia + t + 3]! * b[ib + t + 3]!;
  }
  for (; t < len; t++) s0 += a[ia + t]! * b[ib + t]!;
  return s0 + s1 + (s2 + s3);
}
