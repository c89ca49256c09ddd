/** Row-major dense float64 matrix. */
export interface Matrix64 {
  rows: number;
  cols: number;
  data: Float64Array;
}

function checkShape(rows: number, cols: number, what: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new RangeError(`${what}: shape must be non-negative integers, got ${rows}×${cols}`);
  }
}

/** A rows×cols matrix over `data` (not copied; length must be rows·cols), or zeros. */
export function matrix64(rows: number, cols: number, data?: Float64Array): Matrix64 {
  checkShape(rows, cols, 'matrix64');
  if (data === undefined) return { rows, cols, data: new Float64Array(rows * cols) };
  if (data.length !== rows * cols) {
    throw new RangeError(
      `matrix64: data has ${data.length} elements, expected ${rows}×${cols} = ${rows * cols}`,
    );
  }
  return { rows, cols, data };
}

/** Widens a row-major f32 matrix to float64. */
export function fromF32(rows: number, cols: number, data: Float32Array): Matrix64 {
  checkShape(rows, cols, 'fromF32');
  if (data.length !== rows * cols) {
    throw new RangeError(
      `fromF32: data has ${data.length} elements, expected ${rows}×${cols} = ${rows * cols}`,
    );
  }
  return { rows, cols, data: Float64Array.from(data) };
}

/** Rounds to f32 (row-major, a new array). */
export function toF32(m: Matrix64): Float32Array {
  return Float32Array.from(m.data);
}

/** n×n identity. */
export function identity64(n: number): Matrix64 {
  const m = matrix64(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

/** A copy of m (new data). */
export function clone64(m: Matrix64): Matrix64 {
  return { rows: m.rows, cols: m.cols, data: m.data.slice() };
}

/**
 * dst[dOff + c·ldd + r] = src[sOff + r·lds + c] for r < R, c < C. Four source rows at a time over column
 * chunks, so the written lines stay in cache.
 */
export function transposeInto(
  src: Float64Array,
  sOff: number,
  lds: number,
  R: number,
  C: number,
  dst: Float64Array,
  dOff: number,
  ldd: number,
): void {
  const CB = 128;
  for (let c0 = 0; c0 < C; c0 += CB) {
    const c1 = Math.min(C, c0 + CB);
    let r = 0;
    for (; r + 4 <= R; r += 4) {
      const s0 = sOff + r * lds;
      const s1 = s0 + lds;
      const s2 = s1 + lds;
      const s3 = s2 + lds;
      for (let c = c0, d = dOff + c0 * ldd + r; c < c1; c++, d += ldd) {
        dst[d] = src[s0 + c]!;
        dst[d + 1] = src[s1 + c]!;
        dst[d + 2] = src[s2 + c]!;
        dst[d + 3] = src[s3 + c]!;
      }
    }
    for (; r < R; r++) {
      const s = sOff + r * lds;
      for (let c = c0, d = dOff + c0 * ldd + r; c < c1; c++, d += ldd) dst[d] = src[s + c]!;
    }
  }
}

/** Aᵀ (a new matrix). */
export function transpose64(a: Matrix64): Matrix64 {
  const t = matrix64(a.cols, a.rows);
  transposeInto(a.data, 0, a.cols, a.rows, a.cols, t.data, 0, a.rows);
  return t;
}

/** Frobenius norm, scaled so it neither overflows nor underflows. */
export function frobeniusNorm(m: Matrix64): number {
  return norm2(m.data, 0, m.data.length, 1);
}

/** Euclidean norm of x[off], x[off+inc], … (n elements), without overflow or underflow. */
export function norm2(x: Float64Array, off: number, n: number, inc: number): number {
  let amax = 0;
  for (let i = 0, p = off; i < n; i++, p += inc) {
    const v = Math.abs(x[p]!);
    if (v > amax) amax = v;
  }
  if (amax === 0 || !Number.isFinite(amax)) return amax;
  // Scale only when the plain sum could over- or underflow.
  if (amax > 1e-140 && amax < 1e140) {
    let s = 0;
    for (let i = 0, p = off; i < n; i++, p += inc) {
      const v = x[p]!;
      s += v * v;
    }
    return Math.sqrt(s);
  }
  // Divide (not multiply by 1/amax, which overflows for subnormal amax).
  let s = 0;
  for (let i = 0, p = off; i < n; i++, p += inc) {
    const v = x[p]! / amax;
    s += v * v;
  }
  return amax * Math.sqrt(s);
}

/** The rows r0..r1-1 and columns c0..c1-1 of m, copied. */
export function subMatrix64(m: Matrix64, r0: number, r1: number, c0: number, c1: number): Matrix64 {
  const out = matrix64(r1 - r0, c1 - c0);
  const w = c1 - c0;
  for (let i = r0; i < r1; i++) out.data.set(m.data.subarray(i * m.cols + c0, i * m.cols + c1), (i - r0) * w);
  return out;
}
