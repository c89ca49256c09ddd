import { syrkUpper64 } from '@lineage/linalg';

/**
 * Float64 accumulation of Gram matrices H = Σ xᵀx (and Σ x) over rows of f32 activations.
 *
 * Why on the host and not with the backend's matmul: an f32 matmul over a chunk of rows rounds every partial
 * sum to 24 bits (~1e-7 relative), and the statistics must match a float64 computation to 1e-9. The product
 * of two f32 values is exact in float64, so summing those products in float64 loses only float64 rounding.
 *
 * Rows are buffered (widened to float64, row-major) and each full chunk goes to @lineage/linalg's symmetric
 * rank-k update (its wasm SIMD GEMM over the upper triangle). It replaced a JS 4×4-tile kernel of our own:
 * the same products summed in the same order (bitwise equal Grams in the runs below) and 2–3.6× faster. Measured on the 2-vCPU
 * dev VM under heavy load (load average 8–12), rows added 512 at a time, best of 3 interleaved runs:
 * 4096 rows × 512 wide 0.297 s → 0.119 s, 2048 × 1376 1.313 s → 0.442 s. A 512-row chunk was slower than
 * 256 (the GEMM then makes two K passes through a scratch copy of the Gram).
 */

/** Rows per chunk: one GEMM K block (KC = 256), so each product is a single pass over the Gram. */
const ROWS = 256;

export class GramAccumulator {
  /** Upper triangle of the [width, width] Gram (row-major; the lower is filled by gram()). */
  private readonly g: Float64Array;
  private readonly sums: Float64Array;
  /** Buffered rows [ROWS, width], float64. */
  private readonly x: Float64Array;
  private fill = 0;
  private done = false;
  /** Rows accumulated so far. */
  count = 0;

  constructor(
    readonly width: number,
    readonly withGram = true,
  ) {
    this.g = new Float64Array(withGram ? width * width : 0);
    this.sums = new Float64Array(width);
    this.x = new Float64Array(withGram ? width * ROWS : 0);
  }

  /** Bytes held (for memory accounting). */
  get bytes(): number {
    return this.g.byteLength + this.sums.byteLength + this.x.byteLength;
  }

  /** Adds rows `data[off + r·width … + width)` for r in [0, rows). */
  addRows(data: Float32Array, off: number, rows: number): void {
    if (this.done) throw new Error('GramAccumulator: rows added after gram()');
    const C = this.width;
    const s = this.sums;
    for (let r = 0; r < rows; r++) {
      const base = off + r * C;
      for (let c = 0; c < C; c++) s[c]! += data[base + c]!;
    }
    this.count += rows;
    if (!this.withGram) return;
    let r = 0;
    while (r < rows) {
      const take = Math.min(rows - r, ROWS - this.fill);
      this.x.set(data.subarray(off + r * C, off + (r + take) * C), this.fill * C);
      this.fill += take;
      r += take;
      if (this.fill === ROWS) this.flush();
    }
  }

  private flush(): void {
    if (this.fill === 0) return;
    syrkUpper64(this.fill, this.width, 1, this.x, 0, this.width, this.g, 0, this.width);
    this.fill = 0;
  }

  /**
   * The full symmetric Gram [width, width] (row-major, float64). Finishes the accumulator: the result is its
   * own storage, symmetrised in place (no second copy); further rows throw.
   */
  gram(): Float64Array {
    if (this.done) throw new Error('GramAccumulator: gram() was already taken');
    this.flush();
    this.done = true;
    const C = this.width;
    const g = this.g;
    for (let i = 0; i < C; i++) for (let j = i + 1; j < C; j++) g[j * C + i] = g[i * C + j]!;
    return g;
  }

  /** Σ x over the rows (float64). */
  sum(): Float64Array {
    return this.sums.slice();
  }
}
