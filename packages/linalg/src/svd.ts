import { bidiagonalize } from './bidiagonal.js';
import { bidiagonalSvd } from './bidiagonal-svd.js';
import { applyReflectors } from './householder.js';
import { type Matrix64, matrix64, transpose64 } from './matrix.js';
import { qrFactor } from './qr.js';

/** Thin SVD, k = min(m,n): A = U·diag(S)·Vᵀ, U m×k, V n×k, S descending, non-negative. */
export interface SvdResult {
  U: Matrix64;
  S: Float64Array;
  V: Matrix64;
}

export interface SvdOptions {
  /** Called with the fraction done (0…1) after each stage step: panels, merges, back-transformation. */
  onProgress?: (fraction: number) => void;
}

/** Tall inputs (m ≥ 1.6·n, LAPACK's crossover) are first reduced to their n×n R factor. */
const QR_FIRST = 1.6;

/**
 * Exact thin SVD in float64 (LAPACK dgesdd's route): QR first when tall, blocked Householder
 * bidiagonalisation, divide-and-conquer SVD of the bidiagonal, and blocked back-transformation of the
 * vectors. Wide inputs are decomposed through their transpose. Inputs whose largest entry is tiny or
 * huge are scaled by a power of two first (exactly undone on S).
 */
export function svd(a: Matrix64, opts?: SvdOptions): SvdResult {
  const bad = a.data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new RangeError(
      `svd: entry (${Math.floor(bad / a.cols)}, ${bad % a.cols}) is not finite (${a.data[bad]})`,
    );
  }
  if (a.rows < a.cols) {
    const r = svdTall(transpose64(a), opts?.onProgress);
    return { U: r.V, S: r.S, V: r.U };
  }
  return svdTall({ rows: a.rows, cols: a.cols, data: a.data.slice() }, opts?.onProgress);
}

/** Thin SVD of m×n with m ≥ n; `a` is consumed. */
function svdTall(a: Matrix64, onProgress?: (f: number) => void): SvdResult {
  const m = a.rows;
  const n = a.cols;
  const A = a.data;
  let amax = 0;
  for (let i = 0; i < A.length; i++) amax = Math.max(amax, Math.abs(A[i]!));
  const S = new Float64Array(n);
  if (n === 0 || amax === 0) {
    const U = matrix64(m, n);
    const V = matrix64(n, n);
    for (let i = 0; i < n; i++) {
      U.data[i * n + i] = 1;
      V.data[i * n + i] = 1;
    }
    onProgress?.(1);
    return { U, S, V };
  }
  // Power-of-two scaling keeps squares and products of entries in range (exact, undone on S).
  let scale = 1;
  if (amax < 2 ** -400 || amax > 2 ** 400) {
    scale = 2 ** -Math.round(Math.log2(amax));
    for (let i = 0; i < A.length; i++) A[i]! *= scale;
  }
  const progress = onProgress ?? (() => {});
  // Stage weights (rough shares of the time at n ≈ 1000–2000).
  const wQr = m >= QR_FIRST * n ? 0.15 : 0;
  const wBd = 0.45 * (1 - wQr);
  const wDc = 0.2 * (1 - wQr);
  let done = 0;

  let work = A;
  let mw = m;
  let qrBlocks: ReturnType<typeof qrFactor>['blocks'] | undefined;
  if (wQr > 0) {
    const f = qrFactor({ rows: m, cols: n, data: A });
    qrBlocks = f.blocks;
    work = f.R.data;
    mw = n;
    done = wQr;
    progress(done);
  }
  const bd = bidiagonalize(work, mw, n, (cols) => progress(done + (wBd * cols) / n));
  done += wBd;
  let merged = 0;
  const totalMerge = Math.max(1, n * Math.log2(Math.max(2, n / 24)));
  const r = bidiagonalSvd(bd.d, bd.e, true, (rows) => {
    merged += rows;
    progress(done + wDc * Math.min(1, merged / totalMerge));
  });
  done += wDc;
  progress(done);
  const rest = 1 - done;
  const steps = bd.qBlocks.length + bd.pBlocks.length + (qrBlocks?.length ?? 0);
  let step = 0;
  const tick = () => progress(done + (rest * ++step * 4) / Math.max(1, steps));

  // U = Q_qr·[Q_bd·[U_b; 0]; 0], V = P·V_b.
  const U = matrix64(m, n);
  U.data.set(r.U!);
  applyReflectors(bd.qBlocks, U.data, mw, n, tick);
  if (qrBlocks) applyReflectors(qrBlocks, U.data, m, n, tick);
  const V = matrix64(n, n, r.V);
  applyReflectors(bd.pBlocks, V.data, n, n, tick);
  for (let i = 0; i < n; i++) S[i] = r.sigma[i]! / scale;
  progress(1);
  return { U, S, V };
}

/**
 * ‖A − A_k‖_F for the rank-k truncation of an SVD with singular values S (Eckart–Young:
 * √(Σ_{i≥k} σᵢ²)), summed smallest first.
 */
export function truncationError(S: Float64Array, k: number): number {
  let s = 0;
  for (let i = S.length - 1; i >= Math.max(0, k); i--) s += S[i]! * S[i]!;
  return Math.sqrt(s);
}
