import { eigh } from './eigh.js';
import { matmul64 } from './gemm.js';
import { type Matrix64, matrix64 } from './matrix.js';

export interface SymmetricRootOptions {
  /**
   * Eigenvalue floor, relative to the largest eigenvalue: every λ < floor·λ_max is raised to floor·λ_max
   * before the root is taken (so negative rounding noise of a semidefinite matrix, and exact zeros, neither
   * produce NaN nor blow the inverse root up beyond (floor·λ_max)^-½). Default n·ε (ε = 2⁻⁵²): the size of
   * eigh's absolute error, below which an eigenvalue cannot be told from zero.
   */
  floor?: number;
}

export interface SymmetricRoots {
  /** A^½ = V·diag(√λ)·Vᵀ (symmetric positive semidefinite; S·S = A up to the floor). */
  sqrt: Matrix64;
  /** A^-½ = V·diag(1/√λ)·Vᵀ (A^-½·A·A^-½ = I up to the floor). */
  invSqrt: Matrix64;
  /** The eigenvalues used, ascending, after flooring. */
  values: Float64Array;
  /** The eigenvectors (columns of V). */
  vectors: Matrix64;
  /** How many eigenvalues were raised to the floor. */
  floored: number;
}

/**
 * Symmetric square root and inverse square root of a symmetric positive (semi)definite A (only its lower
 * triangle is read), from one eigendecomposition; float64 throughout. CALDERA uses both: H^½ whitens the
 * data-aware objective ‖(W − Q − L·R)·H^½‖_F, and H^-½ maps the low-rank factor back (R = Σ_k·V_kᵀ·H^-½).
 * Throws a RangeError when A has no positive eigenvalue.
 */
export function symmetricRoots(a: Matrix64, opts?: SymmetricRootOptions): SymmetricRoots {
  const e = flooredSpectrum(a, opts, 'symmetricRoots');
  return { sqrt: power(e, 0.5), invSqrt: power(e, -0.5), ...e };
}

/** A^½ of a symmetric positive semidefinite A (see `symmetricRoots` for the floor). */
export function sqrtSymmetric(a: Matrix64, opts?: SymmetricRootOptions): Matrix64 {
  return power(flooredSpectrum(a, opts, 'sqrtSymmetric'), 0.5);
}

/** A^-½ of a symmetric positive definite A (see `symmetricRoots` for the floor). */
export function invSqrtSymmetric(a: Matrix64, opts?: SymmetricRootOptions): Matrix64 {
  return power(flooredSpectrum(a, opts, 'invSqrtSymmetric'), -0.5);
}

interface Spectrum {
  values: Float64Array;
  vectors: Matrix64;
  floored: number;
}

function flooredSpectrum(a: Matrix64, opts: SymmetricRootOptions | undefined, what: string): Spectrum {
  const n = a.rows;
  if (a.cols !== n) throw new RangeError(`${what}: matrix must be square, got ${a.rows}×${a.cols}`);
  const floor = opts?.floor ?? n * 2 ** -52;
  if (!(floor > 0) || !(floor < 1)) throw new RangeError(`${what}: floor must be in (0, 1), got ${floor}`);
  let e: { values: Float64Array; vectors: Matrix64 };
  try {
    e = eigh(a);
  } catch (err) {
    throw new RangeError(
      `${what}: ${err instanceof Error ? err.message.replace(/^eigh: /, '') : String(err)}`,
    );
  }
  const { values, vectors } = e;
  const top = n > 0 ? values[n - 1]! : 1;
  if (!(top > 0))
    throw new RangeError(
      `${what}: matrix has no positive eigenvalue (largest ${top}), so it is not positive semidefinite`,
    );
  const min = floor * top;
  let floored = 0;
  for (let i = 0; i < n; i++) {
    if (values[i]! < min) {
      values[i] = min;
      floored++;
    }
  }
  return { values, vectors, floored };
}

/** V·diag(λ^p)·Vᵀ = (V·diag(λ^(p/2)))·(V·diag(λ^(p/2)))ᵀ: one product, then exactly symmetric. */
function power({ values, vectors }: Spectrum, p: number): Matrix64 {
  const n = values.length;
  const f = Float64Array.from(values, (v) => v ** (p / 2));
  const vs = matrix64(n, n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) vs.data[i * n + j] = vectors.data[i * n + j]! * f[j]!;
  const out = matmul64(vs, vs, { transB: true });
  for (let i = 0; i < n; i++)
    for (let j = 0; j < i; j++) {
      const v = 0.5 * (out.data[i * n + j]! + out.data[j * n + i]!);
      out.data[i * n + j] = v;
      out.data[j * n + i] = v;
    }
  return out;
}
