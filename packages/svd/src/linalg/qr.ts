import {
  applyBlockReflector,
  applyReflectors,
  type BlockReflector,
  blockReflector,
  householder,
} from './householder.js';
import { type Matrix64, matrix64 } from './matrix.js';

/** Reflectors per panel of the blocked factorisations. */
export const PANEL = 32;

/** A Householder QR in compact form: A = H·[R; 0] with H = H₀·H₁·… given as block reflectors. */
export interface QrFactors {
  rows: number;
  cols: number;
  /** k×n upper trapezoidal R, k = min(m, n). */
  R: Matrix64;
  blocks: BlockReflector[];
}

/**
 * Blocked Householder QR (LAPACK dgeqrf): each panel of 32 columns is factored on a transposed copy
 * (so every reflector works on contiguous rows), then the trailing columns get the panel's compact-WY
 * block reflector through two level-3 products. `a` is left untouched.
 */
export function qrFactor(a: Matrix64): QrFactors {
  const m = a.rows;
  const n = a.cols;
  const k = Math.min(m, n);
  const A = a.data.slice();
  const blocks: BlockReflector[] = [];
  for (let j0 = 0; j0 < k; j0 += PANEL) {
    const nb = Math.min(PANEL, k - j0);
    const len = m - j0;
    // pt[i, p] = A[j0 + p, j0 + i]
    const pt = new Float64Array(nb * len);
    for (let p = 0; p < len; p++) {
      const r = (j0 + p) * n + j0;
      for (let i = 0; i < nb; i++) pt[i * len + p] = A[r + i]!;
    }
    const tau = new Float64Array(nb);
    for (let i = 0; i < nb; i++) {
      const vi = i * len;
      const ti = householder(pt, vi + i, len - i, 1);
      tau[i] = ti;
      if (ti === 0) continue;
      for (let r = i + 1; r < nb; r++) {
        const vr = r * len;
        let s = pt[vr + i]!;
        for (let p = i + 1; p < len; p++) s += pt[vi + p]! * pt[vr + p]!;
        s *= ti;
        pt[vr + i]! -= s;
        for (let p = i + 1; p < len; p++) pt[vr + p]! -= s * pt[vi + p]!;
      }
    }
    // R entries back into A; pt becomes V (unit diagonal, zeros before it).
    for (let i = 0; i < nb; i++) {
      for (let p = 0; p < len; p++) {
        const idx = (j0 + p) * n + j0 + i;
        if (p <= i) A[idx] = pt[i * len + p]!;
        else A[idx] = 0;
      }
      pt.fill(0, i * len, i * len + i);
      pt[i * len + i] = 1;
    }
    const block = blockReflector(j0, len, nb, pt, tau);
    blocks.push(block);
    if (j0 + nb < n) applyBlockReflector(block, true, A, n, j0 + nb, n);
  }
  const R = matrix64(k, n);
  for (let i = 0; i < k; i++) R.data.set(A.subarray(i * n + i, i * n + n), i * n + i);
  return { rows: m, cols: n, R, blocks };
}

/** The thin Q (m×k) of a factorisation. */
export function formQ(f: QrFactors): Matrix64 {
  const k = Math.min(f.rows, f.cols);
  const Q = matrix64(f.rows, k);
  for (let i = 0; i < k; i++) Q.data[i * k + i] = 1;
  applyReflectors(f.blocks, Q.data, f.rows, k);
  return Q;
}

/** Thin QR: A = Q·R with Q m×k orthonormal columns and R k×n upper trapezoidal, k = min(m, n). */
export function qr(a: Matrix64): { Q: Matrix64; R: Matrix64 } {
  const f = qrFactor(a);
  return { Q: formQ(f), R: f.R };
}
