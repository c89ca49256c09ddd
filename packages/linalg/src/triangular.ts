import { gemm, withWorkspace } from './gemm.js';
import { identity64, type Matrix64, matrix64, transpose64 } from './matrix.js';

/** Rows per block of the blocked substitution. */
const NB = 64;

export interface TriangularSolveOptions {
  /** Whether `l` is lower (true) or upper (false) triangular; the other triangle is not read. */
  lower: boolean;
  /** Solve with the transpose of `l`. */
  trans?: boolean;
  /** 'left' (default): op(L)·X = B. 'right': X·op(L) = B. */
  side?: 'left' | 'right';
}

/**
 * Solves op(L)·X = B (side 'left', B n×k) or X·op(L) = B (side 'right', B k×n) for triangular n×n L,
 * op(L) = L or Lᵀ. Blocked substitution: 64 rows at a time, the coupling to the rows already solved as
 * one level-3 product. Throws a RangeError naming a zero diagonal entry.
 */
export function solveTriangular(l: Matrix64, b: Matrix64, opts: TriangularSolveOptions): Matrix64 {
  const n = l.rows;
  if (l.cols !== n)
    throw new RangeError(`solveTriangular: triangular matrix must be square, got ${l.rows}×${l.cols}`);
  const side = opts.side ?? 'left';
  const trans = opts.trans ?? false;
  if (side === 'right') {
    if (b.cols !== n)
      throw new RangeError(`solveTriangular: B has ${b.cols} columns, expected ${n} (side 'right')`);
    // X·op(L) = B  ⇔  op(L)ᵀ·Xᵀ = Bᵀ
    return transpose64(solveLeft(l, transpose64(b), opts.lower, !trans));
  }
  if (b.rows !== n)
    throw new RangeError(`solveTriangular: B has ${b.rows} rows, expected ${n} (side 'left')`);
  return solveLeft(l, b, opts.lower, trans);
}

function solveLeft(l: Matrix64, b: Matrix64, lower: boolean, trans: boolean): Matrix64 {
  const n = l.rows;
  const k = b.cols;
  const T = l.data;
  for (let i = 0; i < n; i++) {
    if (T[i * n + i] === 0)
      throw new RangeError(`solveTriangular: diagonal entry ${i} is zero (singular matrix)`);
  }
  const out = matrix64(n, k);
  if (n === 0 || k === 0) return out;
  // op(L)[i, j]
  const at = trans ? (i: number, j: number) => T[j * n + i]! : (i: number, j: number) => T[i * n + j]!;
  const forward = lower !== trans; // op(L) is lower triangular
  withWorkspace(n * k, (ws) => {
    const X = ws.heap.subarray(ws.offset, ws.offset + n * k);
    X.set(b.data);
    const solveRow = (i: number, j0: number, j1: number) => {
      const xi = i * k;
      for (let j = j0; j < j1; j++) {
        const c = at(i, j);
        if (c === 0) continue;
        const xj = j * k;
        for (let q = 0; q < k; q++) X[xi + q]! -= c * X[xj + q]!;
      }
      const inv = 1 / at(i, i);
      for (let q = 0; q < k; q++) X[xi + q]! *= inv;
    };
    if (forward) {
      for (let i0 = 0; i0 < n; i0 += NB) {
        const i1 = Math.min(n, i0 + NB);
        // X[i0:i1] −= op(L)[i0:i1, 0:i0]·X[0:i0]
        if (i0 > 0)
          gemm(trans, false, i1 - i0, k, i0, -1, T, trans ? i0 : i0 * n, n, X, 0, k, 1, X, i0 * k, k);
        for (let i = i0; i < i1; i++) solveRow(i, i0, i);
      }
    } else {
      for (let i1 = n; i1 > 0; i1 -= NB) {
        const i0 = Math.max(0, i1 - NB);
        // X[i0:i1] −= op(L)[i0:i1, i1:n]·X[i1:n]
        if (i1 < n) {
          gemm(
            trans,
            false,
            i1 - i0,
            k,
            n - i1,
            -1,
            T,
            trans ? i1 * n + i0 : i0 * n + i1,
            n,
            X,
            i1 * k,
            k,
            1,
            X,
            i0 * k,
            k,
          );
        }
        for (let i = i1 - 1; i >= i0; i--) solveRow(i, i + 1, i1);
      }
    }
    out.data.set(X);
  });
  return out;
}

/** L⁻¹ for triangular L (lower or upper); throws a RangeError naming a zero diagonal entry. */
export function invertTriangular(l: Matrix64, lower: boolean): Matrix64 {
  return solveTriangular(l, identity64(l.rows), { lower });
}
