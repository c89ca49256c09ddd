import { gemm } from './gemm.js';

/** Rows of G per product: one GEMM row block (MC), so each call packs X's columns once per block row. */
const NB = 128;

/**
 * Symmetric rank-k update of a Gram matrix, upper triangle: G[i, j] += α·Σ_r X[r, i]·X[r, j] for j ≥ i,
 * X row-major rows×n (from `xOff`, leading dimension `ldx`), G row-major n×n (leading dimension `ldg`).
 * Runs as one GEMM per 128-row block of G over the columns from the block's diagonal on (about half the
 * flops of the full XᵀX); entries below the diagonal blocks are not touched, those inside a diagonal block
 * are written too. Products and sums in float64: X values that are widened float32 multiply exactly.
 */
export function syrkUpper64(
  rows: number,
  n: number,
  alpha: number,
  x: Float64Array,
  xOff: number,
  ldx: number,
  g: Float64Array,
  gOff: number,
  ldg: number,
): void {
  if (!Number.isInteger(rows) || !Number.isInteger(n) || rows < 0 || n < 0)
    throw new RangeError(`syrkUpper64: sizes must be non-negative integers, got ${rows} rows × ${n}`);
  if (n > 0 && rows > 0 && xOff + (rows - 1) * ldx + n > x.length)
    throw new RangeError(`syrkUpper64: X (${rows}×${n}, leading dimension ${ldx}) overruns its array`);
  if (n > 0 && gOff + (n - 1) * ldg + n > g.length)
    throw new RangeError(`syrkUpper64: G (${n}×${n}, leading dimension ${ldg}) overruns its array`);
  for (let i0 = 0; i0 < n; i0 += NB) {
    const i1 = Math.min(n, i0 + NB);
    gemm(
      true,
      false,
      i1 - i0,
      n - i0,
      rows,
      alpha,
      x,
      xOff + i0,
      ldx,
      x,
      xOff + i0,
      ldx,
      1,
      g,
      gOff + i0 * ldg + i0,
      ldg,
    );
  }
}
