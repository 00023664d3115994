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
      let s = a[ri + j]!;
      for (let k = 0; k < j; k++) s -= a[ri + k]! * a[rj + k]!;
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
 * it. Computed as L = chol(A), Y = (L^-1)^T, A^-1 = Y Y^T, U = chol(A^-1)^T. `a` is overwritten;
 * returns null when A is not positive definite.
 */
export function upperCholeskyOfInverse(a: Float64Array, n: number): Float64Array | null {
  if (!choleskyLower(a, n)) return null;
  const L = a;
  // Y = (L^-1)^T, upper triangular: Y[j][i] = -(sum_{k=j}^{i-1} L[i][k] Y[j][k]) / L[i][i].
  const Y = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    Y[rj + j] = 1 / L[rj + j]!;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = 0;
      for (let k = j; k < i; k++) s += L[ri + k]! * Y[rj + k]!;
      Y[rj + i] = -s / L[ri + i]!;
    }
  }
  // A^-1 = Y Y^T into L's storage: (a, b) = sum_{k >= max(a, b)} Y[a][k] Y[b][k].
  const inv = L;
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = i; j < n; j++) {
      const rj = j * n;
      let s = 0;
      for (let k = j; k < n; k++) s += Y[ri + k]! * Y[rj + k]!;
      inv[ri + j] = s;
      inv[rj + i] = s;
    }
  }
  if (!choleskyLower(inv, n)) return null;
  // U = L_inv^T, into Y's storage.
  const U = Y;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) U[i * n + j] = j >= i ? inv[j * n + i]! : 0;
  return U;
}
