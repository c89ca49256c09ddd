import { bidiagonalSvd } from './bidiagonal-svd.js';
import { applyReflectors } from './householder.js';
import { type Matrix64, matrix64 } from './matrix.js';
import { tridiagonalize } from './tridiagonal.js';

/**
 * Symmetric eigendecomposition A = V·diag(values)·Vᵀ: values ascending, eigenvectors in the columns of V.
 * Only the lower triangle of `a` is read.
 *
 * Route: Householder tridiagonalisation A = Q·T·Qᵀ; T shifted to T + c·I (c = 1.125 × the Gershgorin
 * bound, so its spectrum lies in [c/9, 2c]) and factored as L·Lᵀ with L lower bidiagonal (Cholesky of a
 * tridiagonal, stable for this well-conditioned shift); then Lᵀ = U·Σ·Wᵀ by the bidiagonal divide and
 * conquer (right vectors only) gives T + c·I = W·Σ²·Wᵀ exactly in U-free form, so λ = σ² − c and
 * V = Q·W. Eigenvalues carry the usual absolute error O(ε‖A‖).
 */
export function eigh(a: Matrix64): { values: Float64Array; vectors: Matrix64 } {
  const n = a.rows;
  if (a.cols !== n) throw new RangeError(`eigh: matrix must be square, got ${a.rows}×${a.cols}`);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      if (!Number.isFinite(a.data[i * n + j]!))
        throw new RangeError(`eigh: entry (${i}, ${j}) is not finite`);
    }
  }
  const values = new Float64Array(n);
  const vectors = matrix64(n, n);
  if (n === 0) return { values, vectors };
  // Power-of-two scaling into a safe range (exact, undone on the values).
  let amax = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) amax = Math.max(amax, Math.abs(a.data[i * n + j]!));
  let scale = 1;
  let input = a.data;
  if (amax > 0 && (amax < 2 ** -400 || amax > 2 ** 400)) {
    scale = 2 ** -Math.round(Math.log2(amax));
    input = a.data.map((v) => v * scale);
  }
  const { d, e, blocks } = tridiagonalize(input, n);
  let bound = 0;
  for (let i = 0; i < n; i++) {
    const r = Math.abs(d[i]!) + (i > 0 ? Math.abs(e[i - 1]!) : 0) + (i < n - 1 ? Math.abs(e[i]!) : 0);
    bound = Math.max(bound, r);
  }
  if (bound === 0) {
    for (let i = 0; i < n; i++) vectors.data[i * n + i] = 1;
    return { values, vectors };
  }
  const c = 1.125 * bound;
  // T + c·I = L·Lᵀ, L lower bidiagonal: diagonal l, subdiagonal m; Lᵀ is upper bidiagonal (l, m).
  const l = new Float64Array(n);
  const m = new Float64Array(n - 1);
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const piv = d[i]! + c - prev * prev;
    if (!(piv > 0))
      throw new Error(`eigh: internal error, shifted tridiagonal not positive definite at ${i}`);
    l[i] = Math.sqrt(piv);
    if (i < n - 1) {
      m[i] = e[i]! / l[i]!;
      prev = m[i]!;
    }
  }
  const { sigma, V } = bidiagonalSvd(l, m, false);
  // σ descending → λ ascending.
  for (let i = 0; i < n; i++) {
    const s = sigma[n - 1 - i]!;
    values[i] = (s * s - c) / scale;
  }
  const W = vectors.data;
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < n; i++) W[r * n + i] = V[r * n + (n - 1 - i)]!;
  }
  applyReflectors(blocks, W, n, n);
  return { values, vectors };
}
