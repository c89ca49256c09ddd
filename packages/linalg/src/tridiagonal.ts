import { gemm, gemvN, gemvT, withWorkspace } from './gemm.js';
import { type BlockReflector, blockReflector, householder } from './householder.js';
import { PANEL } from './qr.js';

/**
 * Householder tridiagonalisation A = Q·T·Qᵀ of a symmetric n×n matrix: T has diagonal d and
 * sub/superdiagonal e; Q = Q₀·Q₁·… as block reflectors acting on coordinates 1…n−1.
 */
export interface Tridiagonal {
  d: Float64Array;
  e: Float64Array;
  blocks: BlockReflector[];
}

/**
 * Blocked tridiagonalisation (LAPACK dsytrd with dlatrd panels, lower form, full row-major storage): per
 * column one symmetric matrix–vector product over the not-yet-updated trailing matrix, then per panel of
 * 32 the rank-2·32 update A −= V·Wᵀ + W·Vᵀ as two level-3 products. Only the lower triangle of `input`
 * is read (its upper triangle is taken as the mirror); `input` is not modified.
 */
export function tridiagonalize(input: Float64Array, n: number): Tridiagonal {
  const sizes = [n * n, PANEL * n, PANEL * n, n, PANEL + 1, PANEL + 1];
  return withWorkspace(
    sizes.reduce((x, y) => x + y, 0),
    (ws) => {
      let off = ws.offset;
      const [a, vt, wt, col, t1, t2] = sizes.map((len) => {
        const v = ws.heap.subarray(off, off + len);
        off += len;
        return v;
      }) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
      for (let i = 0; i < n; i++) {
        for (let j = 0; j <= i; j++) {
          const v = input[i * n + j]!;
          a[i * n + j] = v;
          a[j * n + i] = v;
        }
      }
      return reduce(a, n, vt, wt, col, t1, t2);
    },
  );
}

function reduce(
  a: Float64Array,
  n: number,
  vtAll: Float64Array,
  wtAll: Float64Array,
  col: Float64Array,
  t1: Float64Array,
  t2: Float64Array,
): Tridiagonal {
  const d = new Float64Array(n);
  const e = new Float64Array(Math.max(0, n - 1));
  const tau = new Float64Array(n);
  const blocks: BlockReflector[] = [];
  for (let s = 0; s < n; s += PANEL) {
    const nb = Math.min(PANEL, n - s);
    const nn = n - s;
    const base = s * n + s;
    // V, W: nn×nb stored transposed (row j = column j, local coordinates).
    const vt = vtAll.subarray(0, nb * nn);
    const wt = wtAll.subarray(0, nb * nn);
    vt.fill(0);
    wt.fill(0);
    for (let i = 0; i < nb; i++) {
      const len = nn - i;
      // Column i from row i (symmetric storage, not yet touched inside this panel), minus the panel's
      // pending update: A(i:, i) −= V(i:, 0:i)·W(i, 0:i)ᵀ + W(i:, 0:i)·V(i, 0:i)ᵀ.
      col.set(a.subarray(base + i * n + i, base + i * n + nn), 0);
      if (i > 0) {
        for (let j = 0; j < i; j++) {
          t1[j] = -wt[j * nn + i]!;
          t2[j] = -vt[j * nn + i]!;
        }
        gemvT(vt, i, nn, i, len, t1, 0, col, 0);
        gemvT(wt, i, nn, i, len, t2, 0, col, 0);
      }
      d[s + i] = col[0]!;
      if (len === 1) continue;
      // Reflector annihilating A(i+2:, i); v lives in V's row i (zeros up to i, 1 at i+1).
      const tv = householder(col, 1, len - 1, 1);
      tau[s + i] = tv;
      e[s + i] = col[1]!;
      const vi = i * nn;
      vt[vi + i + 1] = 1;
      for (let r = 2; r < len; r++) vt[vi + i + r] = col[r]!;
      if (tv === 0) continue;
      // W(i+1:, i) = τ·(A(i+1:, i+1:)·v − V(i+1:, 0:i)·(W(i+1:, 0:i)ᵀ·v) − W(i+1:, 0:i)·(V(i+1:, 0:i)ᵀ·v)),
      // then W −= ½τ·(Wᵀv)·v.
      const rows = len - 1;
      const vOff = vi + i + 1;
      const wOff = i * nn + i + 1;
      gemvN(a, base + (i + 1) * n + i + 1, n, rows, rows, vt, vOff, wt, wOff);
      if (i > 0) {
        gemvN(wt, i + 1, nn, i, rows, vt, vOff, t1, 0);
        gemvN(vt, i + 1, nn, i, rows, vt, vOff, t2, 0);
        for (let j = 0; j < i; j++) {
          t1[j] = -t1[j]!;
          t2[j] = -t2[j]!;
        }
        gemvT(vt, i + 1, nn, i, rows, t1, 0, wt, wOff);
        gemvT(wt, i + 1, nn, i, rows, t2, 0, wt, wOff);
      }
      let wv = 0;
      for (let r = 0; r < rows; r++) {
        wt[wOff + r]! *= tv;
        wv += wt[wOff + r]! * vt[vOff + r]!;
      }
      const alpha = -0.5 * tv * wv;
      for (let r = 0; r < rows; r++) wt[wOff + r]! += alpha * vt[vOff + r]!;
    }
    // Trailing update (full storage): A(nb:, nb:) −= V·Wᵀ + W·Vᵀ over rows/columns nb….
    if (nb < nn) {
      const N = nn - nb;
      const c0 = base + nb * n + nb;
      gemm(true, false, N, N, nb, -1, vt, nb, nn, wt, nb, nn, 1, a, c0, n);
      gemm(true, false, N, N, nb, -1, wt, nb, nn, vt, nb, nn, 1, a, c0, n);
    }
    // The panel's reflectors as one block on coordinates s+1….
    const nbq = Math.min(nb, n - 1 - s);
    if (nbq > 0) {
      const lenq = nn - 1;
      const q = new Float64Array(nbq * lenq);
      for (let i = 0; i < nbq; i++) q.set(vt.subarray(i * nn + 1, i * nn + nn), i * lenq);
      blocks.push(blockReflector(s + 1, lenq, nbq, q, tau.subarray(s, s + nbq)));
    }
  }
  return { d, e, blocks };
}
