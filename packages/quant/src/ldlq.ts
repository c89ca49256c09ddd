import { LineageError } from '@lineage/core';
import { ldl, matmul64, matrix64 } from '@lineage/linalg';
import {
  checkGrid,
  checkMatrix,
  emptyQuantized,
  encode,
  fitGroup,
  type GroupParams,
  groupsPerRow,
  groupWidth,
  type QuantizedMatrix,
  type ScalarGrid,
} from './grid.js';

/** Options of LDLQ: a scalar grid and the relative damping of the Hessian. */
export type LdlqGrid = ScalarGrid & {
  /** Relative damping: factor H + damp·mean(diag H)·I (GPTQ's percdamp; default 0.01). */
  damp?: number;
  /**
   * One fixed scale for every row instead of fitting each group (whole-row symmetric grid only): CALDERA's Q,
   * whose scale is chosen once per matrix (`tensorScale`) because a scale per row costs bits it cannot spare.
   */
  scale?: number;
};

/** Columns per lazy-update block (a multiple of the group size, so groups never straddle blocks). */
const BLOCK = 128;

/**
 * LDLQ (QuIP; GPTQ in another order): minimises the proxy loss tr((W − Ŵ)·H·(W − Ŵ)ᵀ) for W [rows = outputs,
 * cols = inputs] and the input Hessian H = E[x·xᵀ] [cols, cols].
 *
 * With H + λI = L·D·Lᵀ (@lineage/linalg's `ldl`, L unit lower triangular), columns are quantized from the
 * last to the first, each after the errors of the columns already done are fed forward through L:
 * Ŵ_c = Q(W_c + Σ_{j>c} (W_j − Ŵ_j)·L_{j,c}). The loss then splits into per-column rounding errors weighted
 * by D_c, and each group's scale is fitted to its columns' fed-forward values when the group begins. Updates
 * inside a block of columns are rank-1; the rest of the matrix gets each block's errors in one product.
 *
 * `name` names the layer in errors (an H that is not positive definite even with damping).
 */
export function ldlq(
  w: Float64Array,
  rows: number,
  cols: number,
  h: Float64Array,
  grid: LdlqGrid,
  name?: string,
): QuantizedMatrix {
  const where = name ? `ldlq ${name}` : 'ldlq';
  checkGrid(grid, where);
  checkMatrix(w, rows, cols, where);
  if (h.length !== cols * cols)
    throw new LineageError(
      `${where}: Hessian has ${h.length} values, expected ${cols}×${cols} (the input width)`,
    );
  const damp = grid.damp ?? 0.01;
  if (!(damp >= 0) || !Number.isFinite(damp))
    throw new LineageError(`${where}: damp must be a finite number ≥ 0, got ${damp}`);
  let L: Float64Array;
  try {
    L = ldl(matrix64(cols, cols, h), { damp }).L.data;
  } catch (e) {
    const why = e instanceof Error ? e.message.replace(/^ldl: /, '') : String(e);
    throw new LineageError(`${where}: the input Hessian is not positive definite even after damping: ${why}`);
  }

  if (grid.scale !== undefined && (grid.groupSize !== 0 || grid.zeroPoint || !(grid.scale >= 0)))
    throw new LineageError(`${where}: a fixed scale needs a symmetric whole-row grid and a scale ≥ 0`);
  const q = emptyQuantized(rows, cols, grid);
  const gpr = groupsPerRow(cols, grid.groupSize);
  const gw = groupWidth(cols, grid.groupSize);
  const maxq = (1 << grid.bits) - 1;
  const zp = grid.zeroPoint === true;
  const whole = gpr === 1;
  const block = whole ? BLOCK : gw * Math.max(1, Math.floor(BLOCK / gw));

  // U: the fed-forward inputs of the columns (W plus errors from later columns), updated in place.
  const U = w.slice();
  const params: GroupParams[] = new Array(rows);
  if (whole) {
    // One group per row: fitted to W itself (the fed-forward values are not known before the row is done).
    const fixed = grid.scale === undefined ? undefined : { scale: grid.scale, offset: maxq / 2 };
    for (let r = 0; r < rows; r++) {
      params[r] = fixed ?? fitGroup(w, r * cols, cols, 1, grid.bits, zp, grid.clip);
      q.scales[r] = params[r]!.scale;
      if (q.zeros) q.zeros[r] = params[r]!.offset;
    }
  }
  const nBlocks = Math.ceil(cols / block);
  for (let b = nBlocks - 1; b >= 0; b--) {
    const k0 = b * block;
    const k1 = Math.min(cols, k0 + block);
    const bw = k1 - k0;
    const delta = new Float64Array(rows * bw); // W − Ŵ of this block's columns
    for (let c = k1 - 1; c >= k0; c--) {
      const g = whole ? 0 : Math.floor(c / gw);
      if (!whole && (c === k1 - 1 || c === Math.min(cols, (g + 1) * gw) - 1)) {
        // The group's last column (its first in this order): fit every row's grid to the fed-forward values.
        const g0 = g * gw;
        for (let r = 0; r < rows; r++) {
          params[r] = fitGroup(U, r * cols + g0, c + 1 - g0, 1, grid.bits, zp, grid.clip);
          q.scales[r * gpr + g] = params[r]!.scale;
          if (q.zeros) q.zeros[r * gpr + g] = params[r]!.offset;
        }
      }
      const lrow = c * cols; // L[c, j] for j < c
      for (let r = 0; r < rows; r++) {
        const p = params[r]!;
        const code = encode(U[r * cols + c]!, p, maxq);
        q.codes[r * cols + c] = code;
        const d = w[r * cols + c]! - p.scale * (code - p.offset);
        delta[r * bw + c - k0] = d;
        if (d === 0) continue;
        const ur = r * cols;
        for (let j = k0; j < c; j++) U[ur + j]! += d * L[lrow + j]!;
      }
    }
    if (k0 === 0) continue;
    // Feed the block's errors into all earlier columns at once: U[:, :k0] += Δ·L[k0:k1, :k0].
    const lb = matrix64(bw, k0);
    for (let i = 0; i < bw; i++) lb.data.set(L.subarray((k0 + i) * cols, (k0 + i) * cols + k0), i * k0);
    const upd = matmul64(matrix64(rows, bw, delta), lb).data;
    for (let r = 0; r < rows; r++) {
      const ur = r * cols;
      const pr = r * k0;
      for (let j = 0; j < k0; j++) U[ur + j]! += upd[pr + j]!;
    }
  }
  return q;
}

/** The proxy loss tr((W − Ŵ)·H·(W − Ŵ)ᵀ) of an approximation Ŵ of W (both rows×cols, row-major). */
export function proxyLoss(
  w: Float64Array,
  what: Float64Array,
  rows: number,
  cols: number,
  h: Float64Array,
): number {
  const d = matrix64(rows, cols);
  for (let i = 0; i < d.data.length; i++) d.data[i] = w[i]! - what[i]!;
  const dh = matmul64(d, matrix64(cols, cols, h)).data;
  let t = 0;
  for (let i = 0; i < dh.length; i++) t += dh[i]! * d.data[i]!;
  return t;
}
