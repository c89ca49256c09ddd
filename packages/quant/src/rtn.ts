import {
  checkGrid,
  checkMatrix,
  emptyQuantized,
  encode,
  fitGroup,
  groupsPerRow,
  groupWidth,
  type QuantizedMatrix,
  type ScalarGrid,
} from './grid.js';

/** Round to nearest: each group's min–max grid, every weight rounded on its own (the baseline). */
export function rtn(w: Float64Array, rows: number, cols: number, grid: ScalarGrid): QuantizedMatrix {
  checkGrid(grid, 'rtn');
  checkMatrix(w, rows, cols, 'rtn');
  const q = emptyQuantized(rows, cols, grid);
  const gpr = groupsPerRow(cols, grid.groupSize);
  const gw = groupWidth(cols, grid.groupSize);
  const maxq = (1 << grid.bits) - 1;
  const zp = grid.zeroPoint === true;
  for (let r = 0; r < rows; r++)
    for (let g = 0; g < gpr; g++) {
      const c0 = g * gw;
      const c1 = Math.min(cols, c0 + gw);
      const p = fitGroup(w, r * cols + c0, c1 - c0, 1, grid.bits, zp, grid.clip);
      q.scales[r * gpr + g] = p.scale;
      if (q.zeros) q.zeros[r * gpr + g] = p.offset;
      for (let i = r * cols + c0; i < r * cols + c1; i++) q.codes[i] = encode(w[i]!, p, maxq);
    }
  return q;
}
