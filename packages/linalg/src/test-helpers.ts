import { matmul64 } from './gemm.js';
import { type Matrix64, matrix64 } from './matrix.js';
import { qr } from './qr.js';
import { gaussian64 } from './random.js';

/** Seeded standard-normal m×n matrix. */
export const gaussian = gaussian64;

/** m×k with orthonormal columns (Q of a Gaussian). */
export function orthonormal(m: number, k: number, seed: number): Matrix64 {
  return qr(gaussian(m, k, seed)).Q;
}

/** U·diag(s)·Vᵀ for random orthonormal U (m×k), V (n×k), k = s.length. */
export function withSpectrum(m: number, n: number, s: ArrayLike<number>, seed: number): Matrix64 {
  const k = s.length;
  const U = orthonormal(m, k, seed);
  const V = orthonormal(n, k, seed + 1);
  return scaleColumnsTimesT(U, s, V);
}

/** U·diag(s)·Vᵀ. */
export function scaleColumnsTimesT(U: Matrix64, s: ArrayLike<number>, V: Matrix64): Matrix64 {
  const k = s.length;
  const us = matrix64(U.rows, k);
  for (let i = 0; i < U.rows; i++)
    for (let j = 0; j < k; j++) us.data[i * k + j] = U.data[i * U.cols + j]! * s[j]!;
  return matmul64(us, V, { transB: true });
}

/** max |QᵀQ − I| over the k×k Gram of the columns. */
export function orthogonalityError(Q: Matrix64): number {
  const g = matmul64(Q, Q, { transA: true });
  let e = 0;
  for (let i = 0; i < g.rows; i++)
    for (let j = 0; j < g.cols; j++) e = Math.max(e, Math.abs(g.data[i * g.cols + j]! - (i === j ? 1 : 0)));
  return e;
}

/** ‖A − U·diag(S)·Vᵀ‖_F / ‖A‖_F, computed on A scaled by a power of two (safe for tiny or huge A). */
export function reconstructionError(a: Matrix64, U: Matrix64, S: Float64Array, V: Matrix64): number {
  let amax = 0;
  for (const v of a.data) amax = Math.max(amax, Math.abs(v));
  const c = amax > 0 ? 2 ** -Math.round(Math.log2(amax)) : 1;
  const rec = scaleColumnsTimesT(
    U,
    Array.from(S, (s) => s * c),
    V,
  );
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.data.length; i++) {
    const x = a.data[i]! * c;
    num += (x - rec.data[i]!) ** 2;
    den += x * x;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Naive triple-loop op(A)·op(B). */
export function naiveMatmul(a: Matrix64, b: Matrix64, transA = false, transB = false): Matrix64 {
  const M = transA ? a.cols : a.rows;
  const K = transA ? a.rows : a.cols;
  const N = transB ? b.rows : b.cols;
  const c = matrix64(M, N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        s +=
          (transA ? a.data[k * a.cols + i]! : a.data[i * a.cols + k]!) *
          (transB ? b.data[j * b.cols + k]! : b.data[k * b.cols + j]!);
      }
      c.data[i * N + j] = s;
    }
  }
  return c;
}

/** max |a − b| elementwise. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!));
  return e;
}
