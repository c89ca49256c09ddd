// .scratch/gram-r.ts
var ROWS = 512;
var GramAccumulator = class {
  constructor(width, withGram = true) {
    this.width = width;
    this.withGram = withGram;
    this.w4 = Math.ceil(width / 4) * 4;
    this.g = new Float64Array(withGram ? this.w4 * this.w4 : 0);
    this.sums = new Float64Array(width);
    this.xt = new Float32Array(withGram ? this.w4 * ROWS : 0);
  }
  width;
  withGram;
  /** Width rounded up to a multiple of 4 (the tile size); padded features stay zero. */
  w4;
  /** Upper triangle (and the diagonal tiles in full) of the padded [w4, w4] Gram, row-major. */
  g;
  sums;
  /** Transposed chunk [w4, ROWS]; rows ≥ width stay zero. */
  xt;
  fill = 0;
  /** Rows accumulated so far. */
  count = 0;
  /** Bytes held (for memory accounting). */
  get bytes() {
    return this.g.byteLength + this.sums.byteLength + this.xt.byteLength;
  }
  /** Adds rows `data[off + r·width … + width)` for r in [0, rows). */
  addRows(data, off, rows) {
    const C = this.width;
    const s = this.sums;
    for (let r2 = 0; r2 < rows; r2++) {
      const base = off + r2 * C;
      for (let c = 0; c < C; c++) s[c] += data[base + c];
    }
    this.count += rows;
    if (!this.withGram) return;
    let r = 0;
    while (r < rows) {
      const take = Math.min(rows - r, ROWS - this.fill);
      transposeInto(data, off + r * C, take, C, this.xt, this.fill);
      this.fill += take;
      r += take;
      if (this.fill === ROWS) this.flush();
    }
  }
  flush() {
    if (this.fill === 0) return;
    if (this.fill < ROWS) {
      for (let c = 0; c < this.width; c++) this.xt.fill(0, c * ROWS + this.fill, (c + 1) * ROWS);
    }
    syrkUpper(this.xt, this.w4, this.fill, ROWS, this.g);
    this.fill = 0;
  }
  /** The full symmetric Gram [width, width] (row-major, float64). */
  gram() {
    this.flush();
    const C = this.width;
    const w4 = this.w4;
    const out = new Float64Array(C * C);
    for (let i = 0; i < C; i++) {
      for (let j = i; j < C; j++) {
        const v = this.g[i * w4 + j];
        out[i * C + j] = v;
        out[j * C + i] = v;
      }
    }
    return out;
  }
  /** Σ x over the rows (float64). */
  sum() {
    return this.sums.slice();
  }
};
function transposeInto(src, off, rows, C, dst, col0) {
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const s0 = off + r * C;
    const s1 = s0 + C;
    const s2 = s1 + C;
    const s3 = s2 + C;
    for (let c = 0, d = col0 + r; c < C; c++, d += ROWS) {
      dst[d] = src[s0 + c];
      dst[d + 1] = src[s1 + c];
      dst[d + 2] = src[s2 + c];
      dst[d + 3] = src[s3 + c];
    }
  }
  for (; r < rows; r++) {
    const s = off + r * C;
    for (let c = 0, d = col0 + r; c < C; c++, d += ROWS) dst[d] = src[s + c];
  }
}
function syrkUpper(xt, W, K, S, g) {
  for (let i = 0; i < W; i += 4) {
    const a0 = i * S;
    const a1 = a0 + S;
    const a2 = a1 + S;
    const a3 = a2 + S;
    for (let j = i; j < W; j += 4) {
      const b0 = j * S;
      const b1 = b0 + S;
      const b2 = b1 + S;
      const b3 = b2 + S;
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      for (let k = 0; k < K; k++) {
        const x0 = xt[a0 + k], x1 = xt[a1 + k], x2 = xt[a2 + k], x3 = xt[a3 + k];
        const y0 = xt[b0 + k], y1 = xt[b1 + k], y2 = xt[b2 + k], y3 = xt[b3 + k];
        c00 += x0 * y0;
        c01 += x0 * y1;
        c02 += x0 * y2;
        c03 += x0 * y3;
        c10 += x1 * y0;
        c11 += x1 * y1;
        c12 += x1 * y2;
        c13 += x1 * y3;
        c20 += x2 * y0;
        c21 += x2 * y1;
        c22 += x2 * y2;
        c23 += x2 * y3;
        c30 += x3 * y0;
        c31 += x3 * y1;
        c32 += x3 * y2;
        c33 += x3 * y3;
      }
      let o = i * W + j;
      g[o] += c00;
      g[o + 1] += c01;
      g[o + 2] += c02;
      g[o + 3] += c03;
      o += W;
      g[o] += c10;
      g[o + 1] += c11;
      g[o + 2] += c12;
      g[o + 3] += c13;
      o += W;
      g[o] += c20;
      g[o + 1] += c21;
      g[o + 2] += c22;
      g[o + 3] += c23;
      o += W;
      g[o] += c30;
      g[o + 1] += c31;
      g[o + 2] += c32;
      g[o + 3] += c33;
    }
  }
}

// .scratch/gs2.mts
for (const C of [512, 1376]) {
  const rows = 2048;
  const x = Float32Array.from({ length: rows * C }, () => Math.random() - 0.5);
  const g = new GramAccumulator(C);
  g.addRows(x, 0, rows);
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < 3e3) {
    g.addRows(x, 0, rows);
    n++;
  }
  const s = (performance.now() - t0) / 1e3 / n;
  const flops = rows * (C * (C + 4) / 2) * 2;
  console.log(C, "GFLOP/s (useful, upper tri)", (flops / s / 1e9).toFixed(2), "ms per 2048 rows", (s * 1e3).toFixed(1));
}
