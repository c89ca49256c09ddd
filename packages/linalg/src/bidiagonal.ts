import { gemm, gemvN, gemvT, withWorkspace } from './gemm.js';
import { type BlockReflector, blockReflector, householder } from './householder.js';
import { PANEL } from './qr.js';

/**
 * Householder bidiagonalisation A = Q·B·Pᵀ of an m×n matrix with m ≥ n (upper bidiagonal B: diagonal d,
 * superdiagonal e). Q and P come as block reflectors: Q = Q₀·Q₁·…, P = P₀·P₁·… (P's act on coordinates
 * 1…n−1).
 */
export interface Bidiagonal {
  d: Float64Array;
  e: Float64Array;
  qBlocks: BlockReflector[];
  pBlocks: BlockReflector[];
}

/**
 * Blocked bidiagonalisation (LAPACK dgebrd with dlabrd panels, row-major). Per panel of 32 columns, the
 * two matrix–vector products per column run over the not-yet-updated trailing matrix (one pass each), and
 * the trailing matrix then gets A −= A_panel·Yᵀ + X·A_panel-rows as two level-3 products. The matrix is
 * copied into a wasm-addressable workspace, so every matrix–vector product (the two big ones per column
 * and the small panel corrections) runs in wasm SIMD. `input` (m×n, row-major) is not modified.
 */
export function bidiagonalize(
  input: Float64Array,
  m: number,
  n: number,
  onPanel?: (done: number) => void,
): Bidiagonal {
  if (m < n) throw new RangeError(`bidiagonalize: needs rows ≥ cols, got ${m}×${n}`);
  const sizes = [m * n, PANEL * m, PANEL * n, m, m, PANEL + 1, PANEL + 1];
  return withWorkspace(
    sizes.reduce((x, y) => x + y, 0),
    (ws) => {
      let off = ws.offset;
      const [a, xt, yt, u, w, t1, t2] = sizes.map((len) => {
        const v = ws.heap.subarray(off, off + len);
        off += len;
        return v;
      }) as [
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
      ];
      a.set(input);
      return reduce(a, m, n, xt, yt, u, w, t1, t2, onPanel);
    },
  );
}

function reduce(
  a: Float64Array,
  m: number,
  n: number,
  xtAll: Float64Array,
  ytAll: Float64Array,
  u: Float64Array,
  w: Float64Array,
  t1: Float64Array,
  t2: Float64Array,
  onPanel?: (done: number) => void,
): Bidiagonal {
  const d = new Float64Array(n);
  const e = new Float64Array(Math.max(0, n - 1));
  const tauq = new Float64Array(n);
  const taup = new Float64Array(n);
  for (let s = 0; s < n; s += PANEL) {
    const nb = Math.min(PANEL, n - s);
    const mm = m - s;
    const nn = n - s;
    const base = s * n + s;
    // X: mm×nb and Y: nn×nb, stored transposed (xt: nb×mm, yt: nb×nn) so their columns are contiguous.
    const xt = xtAll.subarray(0, nb * mm);
    const yt = ytAll.subarray(0, nb * nn);
    xt.fill(0);
    yt.fill(0);
    for (let i = 0; i < nb; i++) {
      const ai = base + i * n; // row i of the panel
      // 1. A(i:, i) −= A(i:, 0:i)·Y(i, 0:i)ᵀ + X(i:, 0:i)·A(0:i, i)
      if (i > 0) {
        for (let j = 0; j < i; j++) t1[j] = yt[j * nn + i]!;
        for (let j = 0; j < i; j++) t2[j] = a[base + j * n + i]!;
        gemvN(a, ai, n, mm - i, i, t1, 0, w, 0);
        gemvT(xt, i, mm, i, mm - i, t2, 0, w, 0);
        for (let r = 0, p = ai + i; r < mm - i; r++, p += n) a[p]! -= w[r]!;
      }
      // 2. Reflector Qᵢ annihilating A(i+1:, i).
      const ulen = mm - i;
      for (let r = 0, p = ai + i; r < ulen; r++, p += n) u[r] = a[p]!;
      const tq = householder(u, 0, ulen, 1);
      tauq[s + i] = tq;
      d[s + i] = u[0]!;
      u[0] = 1;
      for (let r = 0, p = ai + i; r < ulen; r++, p += n) a[p] = u[r]!;
      if (i + 1 >= nn) continue;
      const nr = nn - i - 1; // columns right of i
      // 3. Y(i+1:, i) = τq·(A(i:, i+1:)ᵀ·u − Y(i+1:, 0:i)·(A(i:, 0:i)ᵀ·u) − A(0:i, i+1:)ᵀ·(X(i:, 0:i)ᵀ·u))
      const yi = i * nn + i + 1;
      if (tq !== 0) {
        gemvT(a, ai + i + 1, n, ulen, nr, u, 0, yt, yi);
        if (i > 0) {
          t1.fill(0, 0, i);
          gemvT(a, ai, n, ulen, i, u, 0, t1, 0);
          gemvN(xt, i, mm, i, ulen, u, 0, t2, 0);
          for (let j = 0; j < i; j++) {
            t1[j] = -t1[j]!;
            t2[j] = -t2[j]!;
          }
          gemvT(yt, i + 1, nn, i, nr, t1, 0, yt, yi);
          gemvT(a, base + i + 1, n, i, nr, t2, 0, yt, yi);
        }
        for (let c = 0; c < nr; c++) yt[yi + c]! *= tq;
      }
      // 4. A(i, i+1:) −= Y(i+1:, 0:i+1)·A(i, 0:i+1)ᵀ + A(0:i, i+1:)ᵀ·X(i, 0:i)ᵀ
      for (let j = 0; j <= i; j++) t1[j] = -a[ai + j]!;
      gemvT(yt, i + 1, nn, i + 1, nr, t1, 0, a, ai + i + 1);
      if (i > 0) {
        for (let j = 0; j < i; j++) t2[j] = -xt[j * mm + i]!;
        gemvT(a, base + i + 1, n, i, nr, t2, 0, a, ai + i + 1);
      }
      // 5. Reflector Pᵢ annihilating A(i, i+2:).
      const tp = householder(a, ai + i + 1, nr, 1);
      taup[s + i] = tp;
      e[s + i] = a[ai + i + 1]!;
      a[ai + i + 1] = 1;
      if (tp === 0) continue;
      // 6. X(i+1:, i) = τp·(A(i+1:, i+1:)·v − A(i+1:, 0:i+1)·(Y(i+1:, 0:i+1)ᵀ·v) − X(i+1:, 0:i)·(A(0:i, i+1:)·v))
      const xi = i * mm + i + 1;
      const rows = mm - i - 1;
      const vOff = ai + i + 1;
      gemvN(a, vOff + n, n, rows, nr, a, vOff, xt, xi);
      gemvN(yt, i + 1, nn, i + 1, nr, a, vOff, t1, 0);
      gemvN(a, base + i + 1, n, i, nr, a, vOff, t2, 0);
      gemvN(a, ai + n, n, rows, i + 1, t1, 0, w, 0);
      for (let r = 0; r < rows; r++) xt[xi + r]! -= w[r]!;
      for (let j = 0; j < i; j++) t2[j] = -t2[j]!;
      gemvT(xt, i + 1, mm, i, rows, t2, 0, xt, xi);
      for (let r = 0; r < rows; r++) xt[xi + r]! *= tp;
    }
    // Trailing update: A(nb:, nb:) −= A(nb:, 0:nb)·Y(nb:, 0:nb)ᵀ + X(nb:, 0:nb)·A(0:nb, nb:)
    if (nb < nn && nb < mm) {
      const M = mm - nb;
      const N = nn - nb;
      const c0 = base + nb * n + nb;
      gemm(false, false, M, N, nb, -1, a, base + nb * n, n, yt, nb, nn, 1, a, c0, n);
      gemm(true, false, M, N, nb, -1, xt, nb, mm, a, base + nb, n, 1, a, c0, n);
    }
    onPanel?.(s + nb);
  }
  // Reflectors out of A into block form.
  const qBlocks: BlockReflector[] = [];
  const pBlocks: BlockReflector[] = [];
  for (let s = 0; s < n; s += PANEL) {
    const nb = Math.min(PANEL, n - s);
    const len = m - s;
    const vt = new Float64Array(nb * len);
    for (let i = 0; i < nb; i++) {
      vt[i * len + i] = 1;
      for (let p = i + 1; p < len; p++) vt[i * len + p] = a[(s + p) * n + s + i]!;
    }
    qBlocks.push(blockReflector(s, len, nb, vt, tauq.subarray(s, s + nb)));
    const nbp = Math.min(nb, n - 1 - s);
    if (nbp > 0) {
      const lenp = n - s - 1;
      const vp = new Float64Array(nbp * lenp);
      for (let i = 0; i < nbp; i++) {
        vp[i * lenp + i] = 1;
        const row = (s + i) * n + s + 1;
        for (let p = i + 1; p < lenp; p++) vp[i * lenp + p] = a[row + p]!;
      }
      pBlocks.push(blockReflector(s + 1, lenp, nbp, vp, taup.subarray(s, s + nbp)));
    }
  }
  return { d, e, qBlocks, pBlocks };
}
