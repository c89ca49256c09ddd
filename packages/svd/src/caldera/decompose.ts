import { LineageError } from '@lineage/core';
import {
  cholesky,
  eigh,
  type Matrix64,
  matmul64,
  matrix64,
  qr,
  randomizedSvd,
  type SvdResult,
  solveTriangular,
  svd,
} from '@lineage/linalg';

/** A quantized matrix as the algorithm sees it: its dequantized values (float64) and the quantizer's payload. */
export interface Quantized<P = unknown> {
  values: Float64Array;
  payload: P;
}

/**
 * Quantizes a rows×cols row-major matrix. `h` (cols×cols, row-major) is the input Hessian for data-aware
 * quantizers (LDLQ); plain rounding ignores it. Injected, so the algorithm depends on no quantizer.
 */
export type MatrixQuantizer<P = unknown> = (
  w: Float64Array,
  rows: number,
  cols: number,
  h?: Float64Array,
) => Quantized<P>;

export interface CalderaSettings<PQ = unknown, PL = unknown, PR = unknown> {
  rank: number;
  /** Outer iterations (LR step then Q step), reference 20. */
  outerIters: number;
  /** LPLR iterations inside each LR step, reference 5 (the shipped script 50). */
  lplrIters: number;
  /** Q's quantizer (LDLQ on the Hessian in the reference). */
  quantizeQ: MatrixQuantizer<PQ>;
  /** L's quantizer ([rows, rank]); absent: L stays in floating point (and LPLR is skipped when R's is too). */
  quantizeL?: MatrixQuantizer<PL>;
  /** R's quantizer ([rank, cols]); absent: R stays in floating point. */
  quantizeR?: MatrixQuantizer<PR>;
  /**
   * Deflate H along the row space of L·R before each Q step (the reference's Q_hessian_downdate): LDLQ
   * then spends less precision where the next LR step will correct anyway.
   */
  hessianDowndate?: boolean;
  /** Regularisation of H, relative to its mean diagonal (reference σ_reg = 1e-2). */
  sigmaReg?: number;
  /**
   * 'auto' (default): randomized (rank + 10 columns, 2 power iterations) when the short side is ≥ 512 and
   * at least 4·(rank + 10) — at 1024 × 1024, rank 64 it matched the exact SVD's errors within 0.6% per step
   * (best 0.0643 vs 0.0644) at a fifth of its time (BENCHMARKS.md) — else exact.
   */
  svd?: 'exact' | 'randomized' | 'auto';
  /** The layer's name, for error messages. */
  name?: string;
  /** Called after every step with its relative error. */
  onStep?: (s: CalderaStep) => void;
  /** Seconds spent per phase are added here (profiling: `eigh` of H, the LR step's `svd`, `lplr`, `quantizeQ` (LDLQ), `error`). */
  profile?: Record<string, number>;
}

export interface CalderaStep {
  /** Outer iteration, from 0. */
  iteration: number;
  step: 'LR' | 'Q';
  /** √(tr(ΔHΔᵀ) / tr(WHWᵀ)) with Δ = W − Q − L·R (H regularised). */
  error: number;
}

/** W ≈ scale·(Q + L·R), every part in the coordinates W was given in. */
export interface CalderaDecomposition<PQ = unknown, PL = unknown, PR = unknown> {
  rows: number;
  cols: number;
  rank: number;
  /** W's RMS: the parts approximate W / scale. */
  scale: number;
  Q: Quantized<PQ>;
  /** [rows, rank]; payload undefined when not quantized. */
  L: Quantized<PL | undefined>;
  /** [rank, cols]; payload undefined when not quantized. */
  R: Quantized<PR | undefined>;
  /** Every step's error, in order. */
  steps: CalderaStep[];
  /** The best (kept) decomposition's error and the step that produced it. */
  error: number;
  best: CalderaStep;
  /** Absolute diagonal loading added to H (σ_reg·mean diag H, less the smallest eigenvalue). */
  shift: number;
}

const name = (s: { name?: string }) => (s.name ? `'${s.name}'` : 'the layer');

/** H regularised as the reference does, relative to its scale: raise its smallest eigenvalue to σ·mean(diag). */
export function regularisedHessian(
  h: Float64Array,
  n: number,
  sigmaReg: number,
  where: string,
): { h: Matrix64; values: Float64Array; vectors: Matrix64; shift: number } {
  if (h.length !== n * n)
    throw new LineageError(`the Hessian of ${where} has ${h.length} entries, the layer needs ${n}×${n}`);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i]!;
  mean /= n;
  if (!(mean > 0) || !Number.isFinite(mean) || h.some((v) => !Number.isFinite(v)))
    throw new LineageError(
      `the Hessian of ${where} is empty, not finite or has a non-positive diagonal (no calibration tokens reached it?)`,
    );
  const a = matrix64(n, n, Float64Array.from(h));
  let roots: { values: Float64Array; vectors: Matrix64 };
  try {
    roots = eigh(a);
  } catch (e) {
    throw new LineageError(`the Hessian of ${where} cannot be decomposed: ${(e as Error).message}`);
  }
  const floor = sigmaReg * mean;
  const min = roots.values[0]!;
  const shift = min < floor ? floor - min : 0;
  if (shift > 0) {
    for (let i = 0; i < n; i++) a.data[i * n + i]! += shift;
    for (let i = 0; i < n; i++) roots.values[i]! += shift;
  }
  if (!(roots.values[0]! > 0) || !Number.isFinite(roots.values[n - 1]!))
    throw new LineageError(
      `the Hessian of ${where} is not positive definite even after damping by ${sigmaReg} of its mean diagonal`,
    );
  return { h: a, values: roots.values, vectors: roots.vectors, shift };
}

/**
 * A·E·diag(√λ) for H = E·diag(λ)·Eᵀ: the H^½-weighted coordinates, where tr(A·H·Aᵀ) = ‖A·E·diag(√λ)‖²_F
 * (E is orthogonal). Every error of the algorithm is a Frobenius norm there.
 */
function weigh(a: Matrix64, E: Matrix64, sqrtL: Float64Array): Matrix64 {
  const y = matmul64(a, E);
  const n = y.cols;
  for (let i = 0; i < y.rows; i++) for (let j = 0; j < n; j++) y.data[i * n + j]! *= sqrtL[j]!;
  return y;
}

function normSq(a: Float64Array): number {
  let t = 0;
  for (let i = 0; i < a.length; i++) t += a[i]! * a[i]!;
  return t;
}

/** X with X·G = B for symmetric positive (semi)definite G [k, k], B [m, k]; a small ridge if G is singular. */
function solveRightSpd(b: Matrix64, g: Matrix64): Matrix64 {
  const k = g.rows;
  let tr = 0;
  for (let i = 0; i < k; i++) tr += g.data[i * k + i]!;
  const base = tr > 0 ? tr / k : 1;
  for (const ridge of [0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2]) {
    const a = matrix64(k, k, g.data.slice());
    for (let i = 0; i < k; i++) a.data[i * k + i]! += ridge * base;
    let c: Matrix64;
    try {
      c = cholesky(a);
    } catch {
      continue;
    }
    // X·C·Cᵀ = B  ⇔  C·Cᵀ·Xᵀ = Bᵀ
    const bt = transpose(b);
    const y = solveTriangular(c, bt, { lower: true });
    return transpose(solveTriangular(c, y, { lower: true, trans: true }));
  }
  return matrix64(b.rows, k); // G is zero: the factor it multiplies is zero, so any X is a least-squares one
}

function transpose(a: Matrix64): Matrix64 {
  const t = matrix64(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < a.cols; j++) t.data[j * a.rows + i] = a.data[i * a.cols + j]!;
  return t;
}

function sub(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! - b[i]!;
  return out;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

const plain = <P>(values: Float64Array): Quantized<P | undefined> => ({ values, payload: undefined });

async function truncatedSvd(y: Matrix64, rank: number, mode: CalderaSettings['svd']): Promise<SvdResult> {
  const short = Math.min(y.rows, y.cols);
  const randomized =
    mode === 'randomized' || ((mode ?? 'auto') === 'auto' && short >= 512 && 4 * (rank + 10) <= short);
  if (randomized) return randomizedSvd(y, rank, { seed: 42 });
  return svd(y);
}

/**
 * CALDERA (Saha et al. 2024): W ≈ Q + L·R minimising tr((W − Ŵ)·H·(W − Ŵ)ᵀ), H the layer's input Hessian,
 * Q, L and R quantized by the injected quantizers; float64 throughout. W is first divided by its RMS. Each
 * outer iteration runs the LR step on the residual W − Q — the H^½-weighted SVD gives L = U_k and
 * R = Σ_k·V_kᵀ·H^-½, then `lplrIters` rounds of L by weighted least squares and quantized, R by least
 * squares and quantized, the best pair kept — and the Q step (quantizeQ of W − L·R on H, optionally
 * downdated). The relative error of every step is recorded; the best decomposition seen once Q and L·R
 * both exist is returned.
 */
export async function calderaDecompose<PQ, PL, PR>(
  w: Float64Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
  s: CalderaSettings<PQ, PL, PR>,
): Promise<CalderaDecomposition<PQ, PL, PR>> {
  const where = name(s);
  const m = rows;
  const n = cols;
  const k = s.rank;
  if (w.length !== m * n)
    throw new LineageError(`${where}: weight has ${w.length} entries, expected ${m}×${n}`);
  if (!Number.isInteger(k) || k < 1 || k > Math.min(m, n))
    throw new LineageError(`${where}: rank ${k} is outside 1..${Math.min(m, n)} for a ${m}×${n} layer`);
  if (!(s.outerIters >= 1) || !(s.lplrIters >= 1))
    throw new LineageError(`${where}: outer and LPLR iterations must be at least 1`);

  let ms = 0;
  for (const v of w) ms += v * v;
  const scale = Math.sqrt(ms / w.length) || 1;
  const W = matrix64(
    m,
    n,
    w.map((v) => v / scale),
  );

  const prof = s.profile;
  const clock = (phase: string, t0: number) => {
    if (prof) prof[phase] = (prof[phase] ?? 0) + (performance.now() - t0) / 1000;
  };
  let t0 = performance.now();
  const reg = regularisedHessian(hessian, n, s.sigmaReg ?? 1e-2, where);
  const { h: H, shift } = reg;
  const E = reg.vectors; // H = E·diag(λ)·Eᵀ
  const sqrtL = reg.values.map(Math.sqrt);
  clock('eigh', t0);
  t0 = performance.now();
  // The residual W − Q in the weighted coordinates: the next LR step's SVD input, and (with L·R) the error.
  let Y = weigh(W, E, sqrtL);
  const totalWeighted = normSq(Y.data);
  clock('error', t0);

  let Q: Quantized<PQ> | undefined;
  let L: Quantized<PL | undefined> | undefined;
  let R: Quantized<PR | undefined> | undefined;
  const steps: CalderaStep[] = [];
  let best:
    | { Q: Quantized<PQ>; L: Quantized<PL | undefined>; R: Quantized<PR | undefined>; step: CalderaStep }
    | undefined;

  /**
   * Records √(tr(ΔHΔᵀ)/tr(WHWᵀ)) for Δ = W − Q − L·R, given y = (W − Q)·E·diag(√λ): ‖y − L·(R·E·diag(√λ))‖²
   * costs O(n²·k) where forming Δ·H would cost O(m·n²).
   */
  const record = (iteration: number, step: 'LR' | 'Q', y: Matrix64) => {
    const t = performance.now();
    const lr = matmul64(matrix64(m, k, L!.values), weigh(matrix64(k, n, R!.values), E, sqrtL));
    let d2 = 0;
    for (let i = 0; i < m * n; i++) {
      const d = y.data[i]! - lr.data[i]!;
      d2 += d * d;
    }
    const e: CalderaStep = { iteration, step, error: Math.sqrt(d2 / totalWeighted) };
    clock('error', t);
    steps.push(e);
    s.onStep?.(e);
    if (Q && (!best || e.error < best.step.error)) best = { Q, L: L!, R: R!, step: e };
  };

  for (let it = 0; it < s.outerIters; it++) {
    // LR step on the residual W − Q (Y is its weighted form).
    t0 = performance.now();
    const res = matrix64(m, n, Q ? sub(W.data, Q.values) : W.data.slice());
    const f = await truncatedSvd(Y, k, s.svd);
    const kk = f.V.cols;
    let Lm = matrix64(m, k);
    const T = matrix64(n, k); // V_k scaled by λ^-½, then R = diag(σ_k)·(E·T)ᵀ
    for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) Lm.data[i * k + j] = f.U.data[i * f.U.cols + j]!;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < k; j++) T.data[i * k + j] = f.V.data[i * kk + j]! / sqrtL[i]!;
    const et = matmul64(E, T);
    let Rm = matrix64(k, n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < k; j++) Rm.data[j * n + i] = et.data[i * k + j]! * f.S[j]!;
    clock('svd', t0);

    t0 = performance.now();
    if (s.quantizeL || s.quantizeR) {
      // LPLR: alternate the two least-squares problems, quantizing after each; keep the best pair.
      let bestPair: { L: Quantized<PL | undefined>; R: Quantized<PR | undefined>; loss: number } | undefined;
      // H·Rᵀ and res·H·Rᵀ of the current R: the loss of one round and the L step of the next share them.
      let hrt = matmul64(H, Rm, { transB: true }); // n×k
      let resHrt = matmul64(res, hrt); // m×k
      for (let t = 0; t < s.lplrIters; t++) {
        // L = argmin ‖(res − L·R)·H^½‖ = res·H·Rᵀ·(R·H·Rᵀ)⁻¹
        const lFree = solveRightSpd(resHrt, matmul64(Rm, hrt));
        const lq: Quantized<PL | undefined> = s.quantizeL ? s.quantizeL(lFree.data, m, k) : plain(lFree.data);
        Lm = matrix64(m, k, lq.values);
        // R = argmin ‖res − L·R‖ (H^½ is invertible, so the weighted problem has the same solution) = (LᵀL)⁻¹·Lᵀ·res
        const lt = transpose(Lm);
        const rFree = transpose(solveRightSpd(transpose(matmul64(lt, res)), matmul64(lt, Lm)));
        const rq: Quantized<PR | undefined> = s.quantizeR ? s.quantizeR(rFree.data, k, n) : plain(rFree.data);
        Rm = matrix64(k, n, rq.values);
        // ‖(res − L·R)·H^½‖² less the constant ‖res·H^½‖²: −2·tr(Lᵀ·res·H·Rᵀ) + tr(LᵀL·R·H·Rᵀ)
        hrt = matmul64(H, Rm, { transB: true });
        resHrt = matmul64(res, hrt);
        const loss = -2 * dot(Lm.data, resHrt.data) + dot(matmul64(lt, Lm).data, matmul64(Rm, hrt).data);
        if (!bestPair || loss < bestPair.loss) bestPair = { L: lq, R: rq, loss };
      }
      L = bestPair!.L;
      R = bestPair!.R;
    } else {
      L = plain(Lm.data);
      R = plain(Rm.data);
    }
    clock('lplr', t0);
    record(it, 'LR', Y);

    // Q step: quantize W − L·R on H (or H deflated along L·R's row space).
    t0 = performance.now();
    const lr = matmul64(matrix64(m, k, L.values), matrix64(k, n, R.values));
    const hq = s.hessianDowndate ? downdated(H, matrix64(k, n, R.values)) : H;
    Q = s.quantizeQ(sub(W.data, lr.data), m, n, hq.data);
    clock('quantizeQ', t0);
    t0 = performance.now();
    Y = weigh(matrix64(m, n, sub(W.data, Q.values)), E, sqrtL);
    clock('error', t0);
    record(it, 'Q', Y);
  }
  const b = best!;
  return {
    rows: m,
    cols: n,
    rank: k,
    scale,
    Q: b.Q,
    L: b.L,
    R: b.R,
    steps,
    error: b.step.error,
    best: b.step,
    shift,
  };
}

/**
 * H − M·V·Vᵀ·Mᵀ + α·I with H = M·Mᵀ (Cholesky) and V an orthonormal basis of the row space of R·M: the part
 * of the objective L·R can absorb taken out (M·(I − VVᵀ)·Mᵀ is semidefinite), then loaded by 1e-2 of the
 * mean diagonal so LDLQ's factorisation exists.
 */
function downdated(H: Matrix64, R: Matrix64): Matrix64 {
  const n = H.rows;
  const M = cholesky(H);
  const V = qr(transpose(matmul64(R, M))).Q; // n×k
  const mv = matmul64(M, V);
  const out = matmul64(mv, mv, { transB: true });
  let tr = 0;
  for (let i = 0; i < n * n; i++) out.data[i] = H.data[i]! - out.data[i]!;
  for (let i = 0; i < n; i++) tr += out.data[i * n + i]!;
  const alpha = (1e-2 * Math.abs(tr)) / n;
  for (let i = 0; i < n; i++) out.data[i * n + i]! += alpha;
  return out;
}
