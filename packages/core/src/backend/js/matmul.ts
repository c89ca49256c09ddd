/**
 * Single-threaded f32 GEMM kernels for the js backend. V8 emits scalar SSE with a bounds check and an
 * overflow-checked index add per typed-array load, so loads, not flops, bound these kernels: the
 * register tile is chosen to maximise multiply-adds per load without spilling (4×4 measured best, ~3.4
 * GFLOP/s on Zen 4; 1×8, 2×4, 3×4 and 4×4 with k-unrolling, per-row views and Float64 operands were no
 * faster). Accumulators are JS numbers, i.e. f64.
 */

/** Rows of B per cache block: keeps the B tile (NC×K floats) around 64 KiB so it stays in L2. */
function blockRows(K: number): number {
  return Math.max(4, Math.min(256, (16384 / Math.max(1, K)) & ~3));
}

// biome-ignore format: hand-laid 4×4 register tiles read better one row of the tile per line
/**
 * c[cOff + i·N + j] = Σₖ a[aOff + i·K + k] · b[bOff + j·K + k] for i < M, j < N ("A·Bᵀ": both operands
 * contiguous along K, so every inner loop is unit-stride).
 */
export function gemmNT(
  a: Float32Array,
  aOff: number,
  b: Float32Array,
  bOff: number,
  c: Float32Array,
  cOff: number,
  M: number,
  N: number,
  K: number,
): void {
  const NC = blockRows(K);
  const M4 = M - (M % 4);
  for (let j0 = 0; j0 < N; j0 += NC) {
    const j1 = Math.min(N, j0 + NC);
    const j14 = j0 + ((j1 - j0) & ~3); // end of the 4-column part of this block
    for (let i = 0; i < M4; i += 4) {
      const a0 = aOff + i * K;
      const a1 = a0 + K;
      const a2 = a1 + K;
      const a3 = a2 + K;
      let j = j0;
      for (; j < j14; j += 4) {
        const b0 = bOff + j * K;
        const b1 = b0 + K;
        const b2 = b1 + K;
        const b3 = b2 + K;
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (let k = 0; k < K; k++) {
          const x0 = a[a0 + k]!, x1 = a[a1 + k]!, x2 = a[a2 + k]!, x3 = a[a3 + k]!;
          const y0 = b[b0 + k]!, y1 = b[b1 + k]!, y2 = b[b2 + k]!, y3 = b[b3 + k]!;
          c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
          c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
          c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
          c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
        }
        let o = cOff + i * N + j;
        c[o] = c00; c[o + 1] = c01; c[o + 2] = c02; c[o + 3] = c03;
        o += N;
        c[o] = c10; c[o + 1] = c11; c[o + 2] = c12; c[o + 3] = c13;
        o += N;
        c[o] = c20; c[o + 1] = c21; c[o + 2] = c22; c[o + 3] = c23;
        o += N;
        c[o] = c30; c[o + 1] = c31; c[o + 2] = c32; c[o + 3] = c33;
      }
      // Leftover columns of this block: 4 rows × 1 column.
      for (; j < j1; j++) {
        const b0 = bOff + j * K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = 0; k < K; k++) {
          const y = b[b0 + k]!;
          s0 += a[a0 + k]! * y; s1 += a[a1 + k]! * y; s2 += a[a2 + k]! * y; s3 += a[a3 + k]! * y;
        }
        const o = cOff + i * N + j;
        c[o] = s0; c[o + N] = s1; c[o + 2 * N] = s2; c[o + 3 * N] = s3;
      }
    }
    // Leftover rows (and the whole of M < 4, e.g. decoding): 1 row × 8 columns (15% faster than × 4 here).
    for (let i = M4; i < M; i++) {
      const a0 = aOff + i * K;
      let j = j0;
      for (; j + 8 <= j14; j += 8) {
        const b0 = bOff + j * K;
        const b1 = b0 + K;
        const b2 = b1 + K;
        const b3 = b2 + K;
        const b4 = b3 + K;
        const b5 = b4 + K;
        const b6 = b5 + K;
        const b7 = b6 + K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (let k = 0; k < K; k++) {
          const x = a[a0 + k]!;
          s0 += x * b[b0 + k]!; s1 += x * b[b1 + k]!; s2 += x * b[b2 + k]!; s3 += x * b[b3 + k]!;
          s4 += x * b[b4 + k]!; s5 += x * b[b5 + k]!; s6 += x * b[b6 + k]!; s7 += x * b[b7 + k]!;
        }
        const o = cOff + i * N + j;
        c[o] = s0; c[o + 1] = s1; c[o + 2] = s2; c[o + 3] = s3;
        c[o + 4] = s4; c[o + 5] = s5; c[o + 6] = s6; c[o + 7] = s7;
      }
      for (; j < j14; j += 4) {
        const b0 = bOff + j * K;
        const b1 = b0 + K;
        const b2 = b1 + K;
        const b3 = b2 + K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = 0; k < K; k++) {
          const x = a[a0 + k]!;
          s0 += x * b[b0 + k]!; s1 += x * b[b1 + k]!; s2 += x * b[b2 + k]!; s3 += x * b[b3 + k]!;
        }
        const o = cOff + i * N + j;
        c[o] = s0; c[o + 1] = s1; c[o + 2] = s2; c[o + 3] = s3;
      }
      for (; j < j1; j++) {
        const b0 = bOff + j * K;
        let s0 = 0, s1 = 0;
        let k = 0;
        for (; k + 1 < K; k += 2) {
          s0 += a[a0 + k]! * b[b0 + k]!;
          s1 += a[a0 + k + 1]! * b[b0 + k + 1]!;
        }
        if (k < K) s0 += a[a0 + k]! * b[b0 + k]!;
        c[cOff + i * N + j] = s0 + s1;
      }
    }
  }
}

/**
 * c[cOff + i·N + j] = Σₖ a[aOff + i·K + k] · b[bOff + k·N + j] ("A·B", B row-major [K, N]) by row-wise
 * axpy into an f64 scratch row. Used for few rows of A, where packing B into Bᵀ would cost as much as
 * the product itself.
 */
export function gemmNNSmallM(
  a: Float32Array,
  aOff: number,
  b: Float32Array,
  bOff: number,
  c: Float32Array,
  cOff: number,
  M: number,
  N: number,
  K: number,
  acc: Float64Array,
): void {
  for (let i = 0; i < M; i++) {
    acc.fill(0, 0, N);
    const ar = aOff + i * K;
    let k = 0;
    for (; k + 4 <= K; k += 4) {
      const x0 = a[ar + k]!,
        x1 = a[ar + k + 1]!,
        x2 = a[ar + k + 2]!,
        x3 = a[ar + k + 3]!;
      const r0 = bOff + k * N;
      const r1 = r0 + N;
      const r2 = r1 + N;
      const r3 = r2 + N;
      for (let j = 0; j < N; j++) {
        acc[j]! += x0 * b[r0 + j]! + x1 * b[r1 + j]! + x2 * b[r2 + j]! + x3 * b[r3 + j]!;
      }
    }
    for (; k < K; k++) {
      const x = a[ar + k]!;
      const r = bOff + k * N;
      for (let j = 0; j < N; j++) acc[j]! += x * b[r + j]!;
    }
    const o = cOff + i * N;
    for (let j = 0; j < N; j++) c[o + j] = acc[j]!;
  }
}

/**
 * dst[dOff + c·R + r] = src[sOff + r·C + c]: transposes one row-major [R, C] matrix. Four source rows at a
 * time so each step writes 16 contiguous bytes, over column chunks so the written lines stay in cache
 * (~1.1 ns/element, 2× a square-tiled loop).
 */
export function transpose2d(
  src: Float32Array,
  sOff: number,
  R: number,
  C: number,
  dst: Float32Array,
  dOff: number,
): void {
  const CB = 256;
  for (let c0 = 0; c0 < C; c0 += CB) {
    const c1 = Math.min(C, c0 + CB);
    let r = 0;
    for (; r + 4 <= R; r += 4) {
      const s0 = sOff + r * C;
      const s1 = s0 + C;
      const s2 = s1 + C;
      const s3 = s2 + C;
      for (let c = c0, d = dOff + c0 * R + r; c < c1; c++, d += R) {
        dst[d] = src[s0 + c]!;
        dst[d + 1] = src[s1 + c]!;
        dst[d + 2] = src[s2 + c]!;
        dst[d + 3] = src[s3 + c]!;
      }
    }
    for (; r < R; r++) {
      const s = sOff + r * C;
      for (let c = c0; c < c1; c++) dst[dOff + c * R + r] = src[s + c]!;
    }
  }
}
