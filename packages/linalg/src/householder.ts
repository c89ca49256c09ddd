import { gemm, withWorkspace } from './gemm.js';
import { norm2 } from './matrix.js';

const SAFE_MIN = 2 ** -1000;

/**
 * Generates an elementary reflector H = I − τ·v·vᵀ (v[0] = 1) with H·[α; x] = [β; 0] (LAPACK dlarfg).
 * On entry x[off], x[off+inc], … (n elements) hold [α; x]; on exit x[off] = β and the rest hold v[1..].
 * Returns τ (0 when x is already zero, H = I).
 */
export function householder(x: Float64Array, off: number, n: number, inc: number): number {
  if (n <= 1) return 0;
  let xnorm = norm2(x, off + inc, n - 1, inc);
  if (xnorm === 0) return 0;
  let alpha = x[off]!;
  let beta = -Math.sign(alpha || 1) * Math.hypot(alpha, xnorm);
  // β and τ may be inaccurate when |β| underflows: scale up, recompute, scale β back (dlarfg's loop).
  let rescale = 1;
  while (Math.abs(beta) < SAFE_MIN && rescale < 2 ** 600) {
    for (let i = 1, p = off + inc; i < n; i++, p += inc) x[p]! *= 2 ** 100;
    rescale *= 2 ** 100;
    alpha *= 2 ** 100;
    xnorm = norm2(x, off + inc, n - 1, inc);
    beta = -Math.sign(alpha || 1) * Math.hypot(alpha, xnorm);
  }
  const tau = (beta - alpha) / beta;
  const scal = 1 / (alpha - beta);
  for (let i = 1, p = off + inc; i < n; i++, p += inc) x[p]! *= scal;
  x[off] = beta / rescale;
  return tau;
}

/**
 * A block of `nb` reflectors H = H₀·H₁·…·H_{nb−1} = I − V·T·Vᵀ (compact WY) acting on rows
 * r0 … r0+len−1. `vt` is nb×len row-major: row i is vᵢ with zeros before i and vᵢ[i] = 1. `t` is nb×nb
 * upper triangular.
 */
export interface BlockReflector {
  r0: number;
  len: number;
  nb: number;
  vt: Float64Array;
  t: Float64Array;
}

/** Forms T of a block reflector from vt and the τs (LAPACK dlarft, forward, row-stored V). */
export function blockReflector(
  r0: number,
  len: number,
  nb: number,
  vt: Float64Array,
  tau: Float64Array,
): BlockReflector {
  const t = new Float64Array(nb * nb);
  // G = V·Vᵀ over all rows at once (vᵢ is zero before i, so G[j, i] is the dot product dlarft needs).
  const G = new Float64Array(nb * nb);
  gemm(false, true, nb, nb, len, 1, vt, 0, len, vt, 0, len, 0, G, 0, nb);
  for (let i = 0; i < nb; i++) {
    const ti = tau[i]!;
    t[i * nb + i] = ti;
    if (ti === 0) continue;
    // T[0:i, i] = −τᵢ·T[0:i, 0:i]·G[0:i, i]
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let p = j; p < i; p++) s += t[j * nb + p]! * G[p * nb + i]!;
      t[j * nb + i] = -ti * s;
    }
  }
  return { r0, len, nb, vt, t };
}

/**
 * C ← H·C (trans false) or Hᵀ·C (trans true) for the rows r0…r0+len−1 of C and columns c0…c1−1 of C
 * (row-major, leading dimension ldc). Two level-3 products through `gemm`.
 */
export function applyBlockReflector(
  h: BlockReflector,
  trans: boolean,
  C: Float64Array,
  ldc: number,
  c0: number,
  c1: number,
): void {
  const nc = c1 - c0;
  const { nb, len, vt, t } = h;
  if (nc <= 0 || nb === 0 || len === 0) return;
  const cOff = h.r0 * ldc + c0;
  const W = new Float64Array(nb * nc);
  // W = Vᵀ·C
  gemm(false, false, nb, nc, len, 1, vt, 0, len, C, cOff, ldc, 0, W, 0, nc);
  // W = T·W (H) or Tᵀ·W (Hᵀ)
  const TW = new Float64Array(nb * nc);
  gemm(trans, false, nb, nc, nb, 1, t, 0, nb, W, 0, nc, 0, TW, 0, nc);
  // C −= V·W
  gemm(true, false, len, nc, nb, -1, vt, 0, len, TW, 0, nc, 1, C, cOff, ldc);
}

/**
 * The single block reflector of a product H_a·H_b of two blocks that both reach the last row
 * (b.r0 ≥ a.r0): V = [V_a V_b], T = [T_a  −T_a·(V_aᵀV_b)·T_b; 0  T_b].
 */
export function mergeReflectors(a: BlockReflector, b: BlockReflector): BlockReflector {
  const shift = b.r0 - a.r0;
  if (shift < 0 || a.len - shift !== b.len) throw new RangeError('mergeReflectors: blocks do not nest');
  const nb = a.nb + b.nb;
  const len = a.len;
  const vt = new Float64Array(nb * len);
  vt.set(a.vt);
  for (let i = 0; i < b.nb; i++) vt.set(b.vt.subarray(i * b.len, (i + 1) * b.len), (a.nb + i) * len + shift);
  // G = V_aᵀ·V_b (a.nb × b.nb), then T12 = −T_a·G·T_b.
  const G = new Float64Array(a.nb * b.nb);
  gemm(false, true, a.nb, b.nb, b.len, 1, a.vt, shift, a.len, b.vt, 0, b.len, 0, G, 0, b.nb);
  const TG = new Float64Array(a.nb * b.nb);
  gemm(false, false, a.nb, b.nb, a.nb, 1, a.t, 0, a.nb, G, 0, b.nb, 0, TG, 0, b.nb);
  const t = new Float64Array(nb * nb);
  for (let i = 0; i < a.nb; i++) t.set(a.t.subarray(i * a.nb, (i + 1) * a.nb), i * nb);
  for (let i = 0; i < b.nb; i++) t.set(b.t.subarray(i * b.nb, (i + 1) * b.nb), (a.nb + i) * nb + a.nb);
  gemm(false, false, a.nb, b.nb, b.nb, -1, TG, 0, b.nb, b.t, 0, b.nb, 0, t, a.nb, nb);
  return { r0: a.r0, len, nb, vt, t };
}

/** Reflectors per merged block when applying many blocks to a matrix (fewer, deeper passes over it). */
const APPLY_WIDTH = 128;

/**
 * C ← H·C for H = blocks[0]·blocks[1]·… (each reaching C's last row), C rows×cols row-major, in place.
 * Consecutive blocks are merged to 128 reflectors and C is worked on inside a wasm workspace, so the
 * update products accumulate into it directly.
 */
export function applyReflectors(
  blocks: readonly BlockReflector[],
  C: Float64Array,
  rows: number,
  cols: number,
  onBlock?: () => void,
): void {
  const groups: BlockReflector[] = [];
  for (const b of blocks) {
    const last = groups[groups.length - 1];
    if (last && last.nb + b.nb <= APPLY_WIDTH) groups[groups.length - 1] = mergeReflectors(last, b);
    else groups.push(b);
  }
  withWorkspace(rows * cols, (ws) => {
    const w = ws.heap.subarray(ws.offset, ws.offset + rows * cols);
    w.set(C.subarray(0, rows * cols));
    for (let g = groups.length - 1; g >= 0; g--) {
      applyBlockReflector(groups[g]!, false, w, cols, 0, cols);
      onBlock?.();
    }
    C.set(w);
  });
}
