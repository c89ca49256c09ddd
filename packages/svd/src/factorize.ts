import { LineageError, type LinearLayer } from '@lineage/core';
import {
  cholesky,
  fromF32,
  type Matrix64,
  matmul64,
  matrix64,
  qr,
  type SvdResult,
  solveTriangular,
  svd,
  toF32,
  transpose64,
} from '@lineage/linalg';
import { LowRankLinear } from './low-rank-linear.js';

/** Where data-aware decomposition gets a layer's input Gram H = Σ xᵀx ([in, in], row-major). */
export interface GramSource {
  hessian(layer: string): Promise<Float64Array>;
  /** The statistics file the Grams come from, named in errors about them. */
  readonly path?: string | undefined;
}

/**
 * The whitening of a layer's input: S lower-triangular with S·Sᵀ = H + λ·mean(diag H)·I, λ the smallest
 * of 0, 1e-8, 1e-7, … that makes the Cholesky factorisation succeed (SVD-LLM's regularisation).
 */
export interface Whitening {
  S: Matrix64;
  lambda: number;
}

export function whiteningOf(hessian: Float64Array, n: number, where: string, file?: string): Whitening {
  if (hessian.length !== n * n)
    throw new LineageError(
      `the Gram of '${where}' has ${hessian.length} entries, the layer needs ${n}×${n} (statistics of another model?)`,
      file,
    );
  const bad = hessian.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0)
    throw new LineageError(
      `the Gram of '${where}' is not finite (entry (${Math.floor(bad / n)}, ${bad % n}) is ${hessian[bad]})`,
      file,
    );
  let meanDiag = 0;
  for (let i = 0; i < n; i++) meanDiag += hessian[i * n + i]!;
  meanDiag /= n;
  if (meanDiag === 0)
    throw new LineageError(
      `the Gram of '${where}' is empty (all zero: no calibration tokens reached it?)`,
      file,
    );
  const negative = Array.from({ length: n }, (_, i) => i).find((i) => hessian[i * n + i]! < 0);
  if (negative !== undefined)
    throw new LineageError(
      `the Gram of '${where}' is not positive semi-definite (diagonal entry ${negative} is ${hessian[negative * n + negative]}): not a Gram matrix`,
      file,
    );
  for (const lambda of [0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]) {
    const h = matrix64(n, n, Float64Array.from(hessian));
    for (let i = 0; i < n; i++) h.data[i * n + i] = h.data[i * n + i]! + lambda * meanDiag;
    try {
      return { S: cholesky(h), lambda };
    } catch {
      // not positive definite at this λ: regularise more
    }
  }
  throw new LineageError(
    `the Gram of '${where}' is indefinite: not positive definite even with 10% diagonal loading`,
    file,
  );
}

/**
 * A layer's decomposition, ready to be cut at any rank: W·S = U·diag(σ)·Vᵀ, with S the whitening (or the
 * identity). Truncating at rank r gives A = U_r·Σ_r^½ and B = Σ_r^½·V_rᵀ·S⁻¹, the rank-r layer closest to W
 * in ‖(W − A·B)·S‖ — the output error over the calibration inputs when data-aware, the weight error otherwise.
 */
export interface LayerFactorization {
  out: number;
  in: number;
  sigma: Float64Array;
  svd: SvdResult;
  whitening?: Whitening;
  bias?: Float32Array;
}

function scaleColumns(m: Matrix64, s: Float64Array, k: number, power: number): Matrix64 {
  const out = matrix64(m.rows, k);
  for (let i = 0; i < m.rows; i++)
    for (let j = 0; j < k; j++) out.data[i * k + j] = m.data[i * m.cols + j]! * s[j]! ** power;
  return out;
}

/**
 * Decomposes a linear layer of any kind. Dense layers take an exact SVD of W (or W·S); a LowRankLinear
 * A·B takes the thin route — QR of A and of (B·S)ᵀ, then the SVD of the r×r core — so lowering the rank
 * of a factored layer costs O((m+n)·r²), not a full SVD.
 */
export function factorize(layer: LinearLayer, whitening?: Whitening, name?: string): LayerFactorization {
  const m = layer.outFeatures;
  const n = layer.inFeatures;
  // NaN or Inf weights would reach the SVD as an internal error: say which layer of the model is broken
  const weights =
    layer instanceof LowRankLinear ? [layer.A.value.toF32(), layer.B.value.toF32()] : [layer.denseWeight()];
  for (const w of weights) {
    const bad = w.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0)
      throw new LineageError(
        `the weights of '${name ?? 'a layer'}' are not finite (${w[bad]} at element ${bad}): the model cannot be decomposed`,
      );
  }
  const bias = layer.denseBias();
  let result: SvdResult;
  if (layer instanceof LowRankLinear) {
    const r = layer.rank;
    const A = fromF32(m, r, layer.A.value.toF32());
    let B = fromF32(r, n, layer.B.value.toF32());
    if (whitening) B = matmul64(B, whitening.S);
    const qa = qr(A); // A = Qa·Ra
    const qb = qr(transpose64(B)); // Bᵀ = Qb·Rb
    const core = matmul64(qa.R, qb.R, { transB: true }); // Ra·Rbᵀ, r×r (or smaller)
    const c = svd(core);
    result = { U: matmul64(qa.Q, c.U), S: c.S, V: matmul64(qb.Q, c.V) };
  } else {
    let W = fromF32(m, n, layer.denseWeight());
    if (whitening) W = matmul64(W, whitening.S);
    result = svd(W);
  }
  return {
    out: m,
    in: n,
    sigma: result.S,
    svd: result,
    ...(whitening ? { whitening } : {}),
    ...(bias ? { bias } : {}),
  };
}

/**
 * Rescales component j of A (column) and Bᵀ (column) by c and 1/c so both have the same norm: A·B is
 * unchanged, but the factors are on one scale. Unwhitening puts S⁻¹ (of the scale 1/√tokens·|x|) into B
 * only; left unbalanced, one learning rate is far too large for one factor and too small for the other.
 */
function balance(A: Matrix64, Bt: Matrix64, rank: number): void {
  for (let j = 0; j < rank; j++) {
    let na = 0;
    let nb = 0;
    for (let i = 0; i < A.rows; i++) na += A.data[i * rank + j]! ** 2;
    for (let i = 0; i < Bt.rows; i++) nb += Bt.data[i * rank + j]! ** 2;
    if (!(na > 0 && nb > 0)) continue;
    const c = Math.sqrt(Math.sqrt(nb / na)); // ‖c·a‖ = ‖b/c‖
    for (let i = 0; i < A.rows; i++) A.data[i * rank + j]! *= c;
    for (let i = 0; i < Bt.rows; i++) Bt.data[i * rank + j]! /= c;
  }
}

/** The rank-r LowRankLinear of a factorization (r ≤ the number of singular values). */
export function truncate(f: LayerFactorization, rank: number): LowRankLinear {
  const k = f.sigma.length;
  if (!Number.isInteger(rank) || rank < 1 || rank > k)
    throw new RangeError(`truncate: rank ${rank} outside 1..${k}`);
  const A = scaleColumns(f.svd.U, f.sigma, rank, 0.5); // U_r·Σ_r^½, m×r
  let Bt = scaleColumns(f.svd.V, f.sigma, rank, 0.5); // V_r·Σ_r^½, n×r = Bᵀ before unwhitening
  // B = Σ^½·V_rᵀ·S⁻¹  ⇔  Bᵀ = S⁻ᵀ·(V_r·Σ^½): one triangular solve with Sᵀ.
  if (f.whitening) {
    Bt = solveTriangular(f.whitening.S, Bt, { lower: true, trans: true });
    balance(A, Bt, rank);
  }
  const B = matrix64(rank, f.in);
  for (let i = 0; i < f.in; i++) for (let j = 0; j < rank; j++) B.data[j * f.in + i] = Bt.data[i * rank + j]!;
  return LowRankLinear.fromFactors(toF32(A), toF32(B), f.out, rank, f.in, f.bias?.slice());
}

/** ‖discarded σ‖² / ‖σ‖²: the relative (whitened) squared error of truncating at `rank`. */
export function truncationError(f: LayerFactorization, rank: number): number {
  let kept = 0;
  let total = 0;
  f.sigma.forEach((s, i) => {
    total += s * s;
    if (i < rank) kept += s * s;
  });
  return total > 0 ? (total - kept) / total : 0;
}
