import { byteSize, f16BitsToF32, f32ToF16Bits, LineageError, type PackedDType } from '@lineage/core';

/** Bits per weight of a scalar grid. */
export type QuantBits = 2 | 3 | 4 | 8;

/** The bit widths the quantizers and the `quantized` layer kind take. */
export const QUANT_BITS: readonly QuantBits[] = [2, 3, 4, 8];

/**
 * A uniform scalar grid with one scale per group of `groupSize` consecutive input columns of a row (the last
 * group shorter where the width does not divide; 0 = the whole row is one group).
 *
 * Codes are unsigned, in [0, 2^bits − 1]. Symmetric (default): w = scale·(code − (2^bits − 1)/2), a grid of
 * half-integers with no exact zero, so all 2^bits levels are used (at 2 bits: ±0.5, ±1.5 times scale).
 * With `zeroPoint`: w = scale·(code − zero), zero an integer in [0, 2^bits − 1] (stored at `bits` bits).
 */
export interface ScalarGrid {
  bits: QuantBits;
  /** Input columns per group; 0 = the whole row. */
  groupSize: number;
  /** Asymmetric with a zero point per group (default false). */
  zeroPoint?: boolean;
  /**
   * How a group's range is fitted: 'mse' (default) shrinks the min–max range by the factor in
   * {1, 0.95, …, 0.3} that minimises the group's squared rounding error (GPTQ's `mse` search; at 2 bits the
   * best range clips the largest weights); 'minmax' covers every weight.
   */
  clip?: 'mse' | 'minmax';
}

/** A matrix on a scalar grid: codes, one f16-representable scale per (row, group), optional zero points. */
export interface QuantizedMatrix {
  rows: number;
  cols: number;
  grid: ScalarGrid;
  /** rows·cols codes, row-major, each in [0, 2^bits − 1]. */
  codes: Int32Array;
  /** rows·groupsPerRow scales, row-major; each exactly representable in f16. */
  scales: Float32Array;
  /** rows·groupsPerRow integer zero points (with `grid.zeroPoint` only). */
  zeros?: Float32Array;
}

/** Throws a one-line LineageError unless `grid` is a supported scalar grid; `where` prefixes the message. */
export function checkGrid(grid: ScalarGrid, where = 'quant'): void {
  if (!QUANT_BITS.includes(grid.bits))
    throw new LineageError(`${where}: bits must be one of ${QUANT_BITS.join(', ')}, got ${grid.bits}`);
  if (!Number.isInteger(grid.groupSize) || grid.groupSize < 0)
    throw new LineageError(
      `${where}: group size must be a positive whole number (0 = the whole row), got ${grid.groupSize}`,
    );
}

/** Groups per row: ⌈cols / groupSize⌉, or 1 for whole-row groups. */
export function groupsPerRow(cols: number, groupSize: number): number {
  return groupSize === 0 || groupSize >= cols ? 1 : Math.ceil(cols / groupSize);
}

/** Columns per group as stored (groupSize, or cols for whole-row groups). */
export function groupWidth(cols: number, groupSize: number): number {
  return groupSize === 0 ? Math.max(cols, 1) : groupSize;
}

/** The packed dtype that holds one code (`u8` is dense; the others are core's packed payloads). */
export function codeDType(bits: QuantBits): PackedDType | 'u8' {
  return bits === 8 ? 'u8' : (`u${bits}` as PackedDType);
}

/** Rounds to the nearest f16 value (scales are stored as f16). */
export function roundF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

/** The smallest f16 value ≥ x ≥ 0 (a scale rounded up never clips the group's extreme weights). */
export function ceilF16(x: number): number {
  const b = f32ToF16Bits(x);
  const v = f16BitsToF32(b);
  return v >= x ? v : f16BitsToF32(b + 1);
}

/** Scale and zero of one group, fitted to values v[off + k·stride], k < n. */
export interface GroupParams {
  scale: number;
  /** The code offset: (2^bits − 1)/2 for a symmetric grid, the integer zero point otherwise. */
  offset: number;
}

/** Min–max fit of one group shrunk by `shrink` (the range always contains 0 with zero points, as GPTQ does). */
function rangeFit(
  lo: number,
  hi: number,
  amax: number,
  maxq: number,
  zeroPoint: boolean,
  shrink: number,
): GroupParams {
  if (!zeroPoint) return { scale: ceilF16((2 * amax * shrink) / maxq), offset: maxq / 2 };
  const scale = ceilF16(((hi - lo) * shrink) / maxq);
  if (scale === 0) return { scale: 0, offset: 0 };
  return { scale, offset: Math.min(maxq, Math.max(0, Math.round((-lo * shrink) / scale))) };
}

/** Fits one group's scale (and zero point) to v[off + k·stride], k < n (see ScalarGrid.clip). */
export function fitGroup(
  v: Float64Array,
  off: number,
  n: number,
  stride: number,
  bits: QuantBits,
  zeroPoint: boolean,
  clip: 'mse' | 'minmax' = 'mse',
): GroupParams {
  const maxq = (1 << bits) - 1;
  let lo = 0;
  let hi = 0;
  for (let k = 0, p = off; k < n; k++, p += stride) {
    const x = v[p]!;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  const amax = Math.max(-lo, hi);
  let best = rangeFit(lo, hi, amax, maxq, zeroPoint, 1);
  if (clip === 'minmax' || best.scale === 0) return best;
  let bestErr = groupError(v, off, n, stride, best, maxq);
  for (let k = 1; k <= 14; k++) {
    const g = rangeFit(lo, hi, amax, maxq, zeroPoint, 1 - 0.05 * k);
    if (g.scale === 0) break;
    const e = groupError(v, off, n, stride, g, maxq);
    if (e < bestErr) {
      bestErr = e;
      best = g;
    }
  }
  return best;
}

function groupError(
  v: Float64Array,
  off: number,
  n: number,
  stride: number,
  g: GroupParams,
  maxq: number,
): number {
  let e = 0;
  for (let k = 0, p = off; k < n; k++, p += stride) {
    const x = v[p]!;
    const d = x - g.scale * (encode(x, g, maxq) - g.offset);
    e += d * d;
  }
  return e;
}

/** The code of x on a group's grid (nearest level, clamped). */
export function encode(x: number, g: GroupParams, maxq: number): number {
  if (g.scale === 0) return Math.round(g.offset);
  const c = Math.round(x / g.scale + g.offset);
  return Math.min(maxq, Math.max(0, c));
}

/** The value of a code: scale·(code − offset). */
export function decode(code: number, g: GroupParams): number {
  return g.scale * (code - g.offset);
}

/** The grid's values as a dense rows×cols float64 matrix, row-major. */
export function dequantize(q: QuantizedMatrix): Float64Array {
  const { rows, cols, grid, codes, scales, zeros } = q;
  const gpr = groupsPerRow(cols, grid.groupSize);
  const gw = groupWidth(cols, grid.groupSize);
  const sym = ((1 << grid.bits) - 1) / 2;
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < gpr; g++) {
      const s = scales[r * gpr + g]!;
      const z = grid.zeroPoint ? zeros![r * gpr + g]! : sym;
      const c1 = Math.min(cols, (g + 1) * gw);
      for (let c = g * gw, p = r * cols + g * gw; c < c1; c++, p++) out[p] = s * (codes[p]! - z);
    }
  }
  return out;
}

/** Bytes a quantized matrix stores: packed codes + f16 scales (+ zero points packed at `bits` bits). */
export function quantizedBytes(q: QuantizedMatrix): number {
  const dtype = codeDType(q.grid.bits);
  const groups = q.scales.length;
  return byteSize(dtype, q.rows * q.cols) + 2 * groups + (q.grid.zeroPoint ? byteSize(dtype, groups) : 0);
}

/** Allocates a QuantizedMatrix's arrays for a rows×cols matrix on `grid`. */
export function emptyQuantized(rows: number, cols: number, grid: ScalarGrid): QuantizedMatrix {
  const groups = rows * groupsPerRow(cols, grid.groupSize);
  const q: QuantizedMatrix = {
    rows,
    cols,
    grid: {
      bits: grid.bits,
      groupSize: grid.groupSize,
      zeroPoint: grid.zeroPoint === true,
      clip: grid.clip ?? 'mse',
    },
    codes: new Int32Array(rows * cols),
    scales: new Float32Array(groups),
  };
  if (grid.zeroPoint) q.zeros = new Float32Array(groups);
  return q;
}

export function checkMatrix(w: Float64Array, rows: number, cols: number, where: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1)
    throw new LineageError(`${where}: shape must be positive whole numbers, got ${rows}×${cols}`);
  if (w.length !== rows * cols)
    throw new LineageError(`${where}: weight has ${w.length} values, expected ${rows}×${cols}`);
}

/** The level step, in units of RMS, that rounds a Gaussian with least squared error on a 2^b-level grid. */
const GAUSSIAN_STEP: Record<QuantBits, number> = { 2: 0.9957, 3: 0.586, 4: 0.3352, 8: 0.0226 };

/**
 * One symmetric-grid scale for all of `w` (f16): the multiple of its RMS near the Gaussian optimum that rounds
 * `w` with least squared error. After RMS scaling and incoherence the entries are about Gaussian, so one
 * scale per matrix (16 bits) does nearly as well as one per row (16/n bits per weight) — CALDERA's Q.
 */
export function tensorScale(w: Float64Array, bits: QuantBits): number {
  let ms = 0;
  for (const v of w) ms += v * v;
  const rms = Math.sqrt(ms / w.length);
  if (!(rms > 0)) return 0;
  const maxq = 2 ** bits - 1;
  let best = { err: Number.POSITIVE_INFINITY, scale: 0 };
  for (let f = 0.8; f <= 1.25; f += 0.05) {
    const scale = roundF16(GAUSSIAN_STEP[bits] * f * rms);
    const g = { scale, offset: maxq / 2 };
    let err = 0;
    for (const v of w) err += (v - decode(encode(v, g, maxq), g)) ** 2;
    if (err < best.err) best = { err, scale };
  }
  return best.scale;
}
