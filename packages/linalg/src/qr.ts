import { gemvN, ger, withWorkspace } from './gemm.js';
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
    // The panel, transposed (pt[i, p] = A[j0 + p, j0 + i]), factored in a workspace so the
    // reflector applications run in wasm (gemvN + ger).
    const { vt, tau } = withWorkspace(nb * len + nb, (ws) => {
      const pt = ws.heap.subarray(ws.offset, ws.offset + nb * len);
      const w = ws.heap.subarray(ws.offset + nb * len, ws.offset + nb * len + nb);
      for (let p = 0; p < len; p++) {
        const r = (j0 + p) * n + j0;
        for (let i = 0; i < nb; i++) pt[i * len + p] = A[r + i]!;
      }
      const tau = new Float64Array(nb);
      for (let i = 0; i < nb; i++) {
        const vi = i * len + i;
        const ti = householder(pt, vi, len - i, 1);
        tau[i] = ti;
        if (ti === 0 || i + 1 === nb) continue;
        // Rows i+1… of pt −= τ·(rows·v)·vᵀ, v = [1, pt[i, i+1:]].
        const beta = pt[vi]!;
        pt[vi] = 1;
        const rows = nb - i - 1;
        gemvN(pt, vi + len, len, rows, len - i, pt, vi, w, 0);
        for (let r = 0; r < rows; r++) w[r]! *= -ti;
        ger(pt, vi + len, len, rows, len - i, w, 0, pt, vi);
        pt[vi] = beta;
      }
      // R entries back into A; pt becomes V (unit diagonal, zeros before it).
      for (let i = 0; i < nb; i++) {
        for (let p = 0; p < len; p++) {
          const idx = (j0 + p) * n + j0 + i;
          A[idx] = p <= i ? pt[i * len + p]! : 0;
        }
        pt.fill(0, i * len, i * len + i);
        pt[i * len + i] = 1;
      }
      return { vt: pt.slice(), tau };
    });
    const block = blockReflector(j0, len, nb, vt, tau);
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
