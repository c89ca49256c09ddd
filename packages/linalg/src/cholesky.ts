import { gemm, withWorkspace } from './gemm.js';
import { type Matrix64, matrix64 } from './matrix.js';

/** Columns per block of the blocked factorisation. */
const NB = 64;

/**
 * Cholesky factor: lower triangular L with A = L·Lᵀ (only the lower triangle of `a` is read).
 * Right-looking blocked algorithm: factor a 64-column diagonal block, solve the panel below it, update
 * the trailing lower triangle by level-3 products (one per block row). Throws a RangeError naming the
 * pivot when A is not (numerically) positive definite.
 */
export function cholesky(a: Matrix64): Matrix64 {
  const n = a.rows;
  if (a.cols !== n) throw new RangeError(`cholesky: matrix must be square, got ${a.rows}×${a.cols}`);
  const out = matrix64(n, n);
  withWorkspace(n * n, (ws) => {
    const L = ws.heap.subarray(ws.offset, ws.offset + n * n);
    for (let i = 0; i < n; i++) {
      const row = i * n;
      for (let j = 0; j <= i; j++) {
        const v = a.data[row + j]!;
        if (!Number.isFinite(v)) throw new RangeError(`cholesky: entry (${i}, ${j}) is not finite`);
        L[row + j] = v;
      }
    }
    for (let k0 = 0; k0 < n; k0 += NB) {
      const k1 = Math.min(n, k0 + NB);
      // Diagonal block (already updated by earlier panels), unblocked, by rows.
      for (let i = k0; i < k1; i++) {
        const ri = i * n;
        for (let j = k0; j <= i; j++) {
          const rj = j * n;
          let s = L[ri + j]!;
          for (let p = k0; p < j; p++) s -= L[ri + p]! * L[rj + p]!;
          if (j === i) {
            if (!(s > 0)) {
              throw new RangeError(
                `cholesky: matrix is not positive definite: pivot ${i} is ${s} (of ${n}); regularise, e.g. add λ·mean(diag)·I`,
              );
            }
            L[ri + i] = Math.sqrt(s);
          } else L[ri + j] = s / L[rj + j]!;
        }
      }
      if (k1 === n) break;
      // Panel below: L21 = A21·L11⁻ᵀ, row by row (forward substitution against L11).
      for (let i = k1; i < n; i++) {
        const ri = i * n;
        for (let j = k0; j < k1; j++) {
          const rj = j * n;
          let s = L[ri + j]!;
          for (let p = k0; p < j; p++) s -= L[ri + p]! * L[rj + p]!;
          L[ri + j] = s / L[rj + j]!;
        }
      }
      // Trailing lower triangle: A22 −= L21·L21ᵀ, block row by block row (columns up to the diagonal).
      for (let r0 = k1; r0 < n; r0 += NB) {
        const r1 = Math.min(n, r0 + NB);
        gemm(
          false,
          true,
          r1 - r0,
          r1 - k1,
          k1 - k0,
          -1,
          L,
          r0 * n + k0,
          n,
          L,
          k1 * n + k0,
          n,
          1,
          L,
          r0 * n + k1,
          n,
        );
      }
    }
    // Copy the lower triangle out (the update products also wrote above the diagonal of each block).
    for (let i = 0; i < n; i++) out.data.set(L.subarray(i * n, i * n + i + 1), i * n);
  });
  return out;
}
