import { cholesky } from './cholesky.js';
import { gemm } from './gemm.js';
import { type Matrix64, matrix64 } from './matrix.js';
import { invertTriangular } from './triangular.js';

export interface LdlOptions {
  /**
   * Size b of D's diagonal blocks (default 1: D diagonal, the textbook LDLᵀ). LDLQ takes b = the dimension
   * of the quantiser's codewords: 1 for a scalar grid, 8 for QuIP#'s E8 lattice codebooks. When b does not
   * divide n the last block is smaller.
   */
  block?: number;
  /**
   * Relative damping λ: factor H + λ·mean(diag H)·I instead of H (GPTQ's `percdamp`, CALDERA's σ_reg;
   * 0.01 is their usual value). Default 0: a matrix that is not numerically positive definite throws.
   */
  damp?: number;
}

export interface LdlResult {
  /** n×n unit lower block-triangular L: its diagonal b×b blocks are the identity. */
  L: Matrix64;
  /** D's diagonal blocks in order (b×b, symmetric positive definite; the last one smaller when b ∤ n). */
  D: Matrix64[];
  /** The absolute amount added to H's diagonal (λ·mean(diag H); 0 without damping). */
  shift: number;
}

/**
 * Block LDLᵀ of a symmetric positive definite H (only its lower triangle is read): H = L·D·Lᵀ with L unit
 * lower block-triangular and D block diagonal (blocks of `block`), in float64.
 *
 * Computed from the blocked Cholesky factor H = C·Cᵀ: D_k = C_kk·C_kkᵀ and L = C·diag(C_kk)⁻¹ (QuIP#'s
 * `block_LDL`); with b = 1 that is D = diag(C)², L = C·diag(C)⁻¹.
 *
 * How LDLQ (QuIP, QuIP#, CALDERA's Q step) uses it, for a weight W [out, in] and the input Hessian H = XᵀX
 * [in, in]: quantise W's column blocks from the LAST to the first, feeding the error of the blocks already
 * done forward through L,
 *
 *   Ŵ_k = Q(W_k + (W_{>k} − Ŵ_{>k})·L_{>k,k}).
 *
 * Then E = (W − Ŵ)·L has as block k exactly the rounding error of block k's input, and the proxy loss is
 * tr((W − Ŵ)·H·(W − Ŵ)ᵀ) = Σ_k tr(E_k·D_k·E_kᵀ): each block's rounding is weighted by D_k alone.
 */
export function ldl(h: Matrix64, opts?: LdlOptions): LdlResult {
  const n = h.rows;
  if (h.cols !== n) throw new RangeError(`ldl: matrix must be square, got ${h.rows}×${h.cols}`);
  const b = opts?.block ?? 1;
  if (!Number.isInteger(b) || b < 1) throw new RangeError(`ldl: block must be a positive integer, got ${b}`);
  const damp = opts?.damp ?? 0;
  if (!(damp >= 0) || !Number.isFinite(damp))
    throw new RangeError(`ldl: damp must be a finite number ≥ 0, got ${damp}`);

  let a = h;
  let shift = 0;
  if (damp > 0 && n > 0) {
    let tr = 0;
    for (let i = 0; i < n; i++) tr += h.data[i * n + i]!;
    shift = (damp * tr) / n;
    a = matrix64(n, n, h.data.slice());
    for (let i = 0; i < n; i++) a.data[i * n + i]! += shift;
  }

  let C: Matrix64;
  try {
    C = cholesky(a);
  } catch (e) {
    const why = e instanceof Error ? e.message.replace(/^cholesky: /, '') : String(e);
    throw new RangeError(
      damp > 0
        ? `ldl: ${why} (even with damp ${damp}; raise it)`
        : `ldl: ${why.replace(/; regularise.*$/, '')}; pass damp (e.g. 0.01) to factor H + damp·mean(diag H)·I`,
    );
  }

  // L's block column k = C's block column k (rows from the block down) times C_kk⁻¹.
  const L = matrix64(n, n);
  const D: Matrix64[] = [];
  for (let k0 = 0; k0 < n; k0 += b) {
    const k1 = Math.min(n, k0 + b);
    const w = k1 - k0;
    const ckk = matrix64(w, w);
    for (let i = 0; i < w; i++)
      for (let j = 0; j <= i; j++) ckk.data[i * w + j] = C.data[(k0 + i) * n + k0 + j]!;
    const dk = matrix64(w, w);
    gemm(false, true, w, w, w, 1, ckk.data, 0, w, ckk.data, 0, w, 0, dk.data, 0, w);
    symmetrize(dk);
    D.push(dk);
    for (let i = 0; i < w; i++) L.data[(k0 + i) * n + k0 + i] = 1;
    if (k1 === n) continue;
    if (w === 1) {
      const c = C.data[k0 * n + k0]!;
      for (let i = k1; i < n; i++) L.data[i * n + k0] = C.data[i * n + k0]! / c;
      continue;
    }
    // Rows below the block: L[k1:, k0:k1] = C[k1:, k0:k1]·C_kk⁻¹, one product on strided views.
    const inv = invertTriangular(ckk, true);
    gemm(false, false, n - k1, w, w, 1, C.data, k1 * n + k0, n, inv.data, 0, w, 0, L.data, k1 * n + k0, n);
  }
  return { L, D, shift };
}

/** Averages the two triangles (D_k = C·Cᵀ is symmetric up to rounding; make it exactly so). */
function symmetrize(m: Matrix64): void {
  const w = m.rows;
  for (let i = 0; i < w; i++)
    for (let j = 0; j < i; j++) {
      const v = 0.5 * (m.data[i * w + j]! + m.data[j * w + i]!);
      m.data[i * w + j] = v;
      m.data[j * w + i] = v;
    }
}
