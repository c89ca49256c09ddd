import { LineageError, Random } from '@lineage/core';

/**
 * Randomized orthogonal incoherence (QuIP / QuIP#): W̃ = T_out·W·T_inᵀ and H̃ = T_in·H·T_inᵀ with
 * T = K·diag(s), s random signs and K a fixed fast orthogonal transform of the width n:
 *
 *   K = (H_p / √p) ⊗ C_m,   n = p·m, p the largest power of two dividing n, m odd,
 *
 * H_p the Sylvester–Hadamard matrix (fast Walsh–Hadamard transform) and C_m the orthonormal DCT-II of order
 * m (identity when m = 1, so powers of two get the plain randomized Hadamard transform). Every entry of K has
 * magnitude ≤ √(2/n), which is what spreads outlier weights and Hessian directions; the randomness is in the
 * signs alone, so a layer stores only its two sign vectors. Cost per vector: n·(log₂p + m).
 *
 * At inference, x̃ = T_in·x goes into the quantized W̃, and y = T_outᵀ·ỹ comes out.
 *
 * The output side is optional (empty `signsOut`), and off by default: measured on stories260K (BENCHMARKS.md),
 * mixing output rows of very different norms under per-row group scales costs more than it gains, while the
 * input side, which LDLQ's Hessian sees, helps.
 */
export interface Incoherence {
  /** Signs of the input side (length cols), each ±1. */
  signsIn: Int8Array;
  /** Signs of the output side (length rows), each ±1; empty: no output-side transform (T_out = I). */
  signsOut: Int8Array;
}

/** n = p·m with p the largest power of two dividing n. */
export function splitWidth(n: number): { p: number; m: number } {
  if (!Number.isInteger(n) || n < 1)
    throw new LineageError(`hadamard: width must be a positive whole number, got ${n}`);
  let p = 1;
  while (n % (p * 2) === 0) p *= 2;
  return { p, m: n / p };
}

const dctCache = new Map<number, Float64Array>();

/** Orthonormal DCT-II matrix of order m, row-major (C[k, j] = α_k·cos(π(2j+1)k / 2m)). */
export function dctMatrix(m: number): Float64Array {
  let c = dctCache.get(m);
  if (c) return c;
  c = new Float64Array(m * m);
  for (let k = 0; k < m; k++) {
    const a = k === 0 ? Math.sqrt(1 / m) : Math.sqrt(2 / m);
    for (let j = 0; j < m; j++) c[k * m + j] = a * Math.cos((Math.PI * (2 * j + 1) * k) / (2 * m));
  }
  dctCache.set(m, c);
  return c;
}

/** In-place unnormalised Walsh–Hadamard transform of x[off + i·stride], i < p (p a power of two). */
function fwht(x: Float64Array, off: number, p: number, stride: number): void {
  for (let h = 1; h < p; h *= 2)
    for (let i = 0; i < p; i += 2 * h)
      for (let j = i; j < i + h; j++) {
        const a = off + j * stride;
        const b = a + h * stride;
        const u = x[a]!;
        const v = x[b]!;
        x[a] = u + v;
        x[b] = u - v;
      }
}

/**
 * Applies K (or Kᵀ with `transpose`) in place to each of `count` consecutive length-n vectors of x.
 * x[v·n + a·m + b] is entry (a, b) of vector v seen as p×m: C_m acts on the rows, H_p on the columns.
 */
export function orthoTransform(x: Float64Array, n: number, count: number, transpose = false): void {
  const { p, m } = splitWidth(n);
  const norm = 1 / Math.sqrt(p);
  const C = m > 1 ? dctMatrix(m) : undefined;
  const tmp = new Float64Array(m);
  for (let v = 0; v < count; v++) {
    const base = v * n;
    if (C)
      for (let a = 0; a < p; a++) {
        const o = base + a * m;
        for (let k = 0; k < m; k++) {
          let s = 0;
          if (transpose) for (let j = 0; j < m; j++) s += C[j * m + k]! * x[o + j]!;
          else for (let j = 0, ck = k * m; j < m; j++) s += C[ck + j]! * x[o + j]!;
          tmp[k] = s;
        }
        x.set(tmp, o);
      }
    if (p > 1) {
      for (let b = 0; b < m; b++) fwht(x, base + b, p, m);
      for (let i = base; i < base + n; i++) x[i]! *= norm;
    }
  }
}

/** n random signs (±1) from a seed. */
export function randomSigns(n: number, seed: number): Int8Array {
  const rng = new Random(seed);
  const s = new Int8Array(n);
  for (let i = 0; i < n; i++) s[i] = rng.next() < 0.5 ? -1 : 1;
  return s;
}

/**
 * Signs for a rows×cols weight: the input side from `seed`, and with `sides` 'both' the output side from
 * `seed + 1` (default 'input': no output-side transform).
 */
export function randomIncoherence(
  rows: number,
  cols: number,
  seed: number,
  sides: 'input' | 'both' = 'input',
): Incoherence {
  return {
    signsIn: randomSigns(cols, seed),
    signsOut: sides === 'both' ? randomSigns(rows, seed + 1) : new Int8Array(0),
  };
}

/** x̃ = K·(s ⊙ x) for each of `count` length-n vectors, in place (T applied to inputs at inference). */
export function transformInput(x: Float64Array, signs: Int8Array, count: number): void {
  const n = signs.length;
  for (let v = 0; v < count; v++) for (let i = 0; i < n; i++) x[v * n + i]! *= signs[i]!;
  orthoTransform(x, n, count);
}

/** y = s ⊙ (Kᵀ·ỹ) for each of `count` length-n vectors, in place (Tᵀ, the inverse of transformInput). */
export function untransformOutput(y: Float64Array, signs: Int8Array, count: number): void {
  const n = signs.length;
  orthoTransform(y, n, count, true);
  for (let v = 0; v < count; v++) for (let i = 0; i < n; i++) y[v * n + i]! *= signs[i]!;
}

function transposed(a: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c]!;
  return t;
}

/** W̃ = T_out·W·T_inᵀ for W rows×cols (row-major; a new array). */
export function transformWeight(w: Float64Array, rows: number, cols: number, t: Incoherence): Float64Array {
  checkSigns(rows, cols, t);
  const x = w.slice();
  transformInput(x, t.signsIn, rows); // each row w_r ↦ T_in·w_r, i.e. W·T_inᵀ
  if (t.signsOut.length === 0) return x;
  const xt = transposed(x, rows, cols);
  transformInput(xt, t.signsOut, cols); // each column ↦ T_out·column
  return transposed(xt, cols, rows);
}

/** W = T_outᵀ·W̃·T_in, the inverse of transformWeight (a new array). */
export function untransformWeight(
  wt: Float64Array,
  rows: number,
  cols: number,
  t: Incoherence,
): Float64Array {
  checkSigns(rows, cols, t);
  const x = wt.slice();
  untransformOutput(x, t.signsIn, rows);
  if (t.signsOut.length === 0) return x;
  const xt = transposed(x, rows, cols);
  untransformOutput(xt, t.signsOut, cols);
  return transposed(xt, cols, rows);
}

/** H̃ = T_in·H·T_inᵀ for a symmetric n×n H (a new array). */
export function transformHessian(h: Float64Array, signsIn: Int8Array): Float64Array {
  const n = signsIn.length;
  if (h.length !== n * n)
    throw new LineageError(`hadamard: Hessian has ${h.length} values, expected ${n}×${n}`);
  const x = h.slice();
  transformInput(x, signsIn, n); // rows: H·T_inᵀ (H symmetric, so row r of H is column r)
  const xt = transposed(x, n, n);
  transformInput(xt, signsIn, n);
  return transposed(xt, n, n);
}

/** The dense n×n matrix T = K·diag(s) (for backends that apply it as one matmul). */
export function incoherenceMatrix(signs: Int8Array): Float64Array {
  const n = signs.length;
  // Column j of T is T·e_j: transform the identity's rows, then transpose.
  const eye = new Float64Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  transformInput(eye, signs, n);
  return transposed(eye, n, n);
}

function checkSigns(rows: number, cols: number, t: Incoherence): void {
  if (t.signsIn.length !== cols || (t.signsOut.length !== rows && t.signsOut.length !== 0))
    throw new LineageError(
      `hadamard: signs of length ${t.signsOut.length}×${t.signsIn.length} do not fit a ${rows}×${cols} weight`,
    );
}
