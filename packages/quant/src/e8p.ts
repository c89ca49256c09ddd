import { LineageError } from '@lineage/core';
import { ldl, matmul64, matrix64 } from '@lineage/linalg';
import { roundF16 } from './grid.js';

/**
 * QuIP#'s E8P12 lattice codebook: 2^16 points of E8 + ¼ in 8 dimensions, 2 bits per weight. 256 "absolute"
 * vectors — the 227 points of D̂8 = D8 + ½ (half-integers, even sum) with norm² ≤ 10 taken entrywise in
 * absolute value, plus 29 of norm² 12 — each with the 128 sign patterns of even parity, shifted by ±¼. A
 * vector whose entries sum to an odd number has its last entry negated first, so every sign pattern of even
 * parity keeps it in D̂8. Nearest-point search: for each shift and absolute vector the best signs are those
 * of the target, the parity repaired by flipping the cheapest entry — 2·256·8 steps per 8 weights.
 */
export const E8P_DIM = 8;

let absGrid: Float64Array | undefined;

/** The 256 absolute vectors (row-major, 256 × 8), the last entry negated where the sum is odd. */
export function e8pAbsGrid(): Float64Array {
  if (absGrid) return absGrid;
  const seen = new Set<string>();
  const rows: number[][] = [];
  // D̂8 ∩ {‖x‖² ≤ 10}: half-integers in [−3.5, 3.5] with even sum; their absolute values, deduplicated
  const half = [-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5];
  const v = new Array<number>(8).fill(0);
  const walk = (i: number, norm: number, sum: number) => {
    if (norm > 10) return;
    if (i === 8) {
      if (Math.round(sum) % 2 !== 0) return;
      const a = v.map(Math.abs);
      const key = a.join(',');
      if (!seen.has(key)) {
        seen.add(key);
        rows.push(a);
      }
      return;
    }
    for (const x of half) {
      v[i] = x;
      walk(i + 1, norm + x * x, sum + x);
    }
  };
  walk(0, 0, 0);
  rows.sort((a, b) => {
    for (let i = 0; i < 8; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
    return 0;
  });
  if (rows.length !== 227)
    throw new Error(`e8p: expected 227 points of |D̂8| with norm² ≤ 10, got ${rows.length}`);
  // 29 vectors of norm² 12 (five 3/2 and three 1/2), as QuIP# picks them; its list (as copied in exllamav2)
  // repeats 13331133 where the pattern wants 31331133, which would leave 256 codewords doubled: fixed here
  const norm12 = [
    '31113333',
    '13113333',
    '11313333',
    '11133333',
    '33313311',
    '33313131',
    '33311331',
    '33313113',
    '33311313',
    '33311133',
    '33133311',
    '33133131',
    '33131331',
    '33133113',
    '33131313',
    '33131133',
    '31333311',
    '31333131',
    '31331331',
    '31333113',
    '31331313',
    '13331133',
    '13333311',
    '13333131',
    '13331331',
    '13333113',
    '13331313',
    '31331133',
    '33113331',
  ];
  for (const s of norm12) rows.push([...s].map((c) => Number(c) / 2));
  absGrid = new Float64Array(256 * 8);
  rows.forEach((r, k) => {
    const sum = r.reduce((a, b) => a + b, 0);
    if (Math.round(sum) % 2 !== 0) r[7] = -r[7]!;
    absGrid!.set(r, k * 8);
  });
  return absGrid;
}

/** The codeword of a 16-bit code: abs index (high 8 bits), sign pattern (low 7 bits + parity), shift. */
export function e8pDecode(code: number, out: Float64Array, off: number): void {
  const grid = e8pAbsGrid();
  const a = (code >>> 8) & 255;
  let signs = code & 255;
  let parity = 0;
  for (let i = 0; i < 8; i++) parity ^= (signs >>> i) & 1;
  signs ^= parity; // even parity: bit 0 carries the repair
  const shift = parity ? -0.25 : 0.25;
  for (let i = 0; i < 8; i++) {
    const x = grid[a * 8 + i]!;
    out[off + i] = ((signs >>> i) & 1 ? -x : x) + shift;
  }
}

/**
 * The nearest codeword to y[off..off+8) (y in the codebook's units): its 16-bit code. The code's sign byte
 * has odd parity exactly when the shift is −¼ (bit 0 then holds the flipped sign, see e8pDecode).
 */
export function e8pEncode(y: ArrayLike<number>, off: number): number {
  const grid = e8pAbsGrid();
  let best = Number.POSITIVE_INFINITY;
  let bestCode = 0;
  for (const shift of [0.25, -0.25]) {
    const t = [0, 0, 0, 0, 0, 0, 0, 0];
    let tt = 0; // ‖t‖² differs between the shifts
    for (let i = 0; i < 8; i++) {
      t[i] = y[off + i]! - shift;
      tt += t[i]! ** 2;
    }
    for (let a = 0; a < 256; a++) {
      // distance ‖t − s⊙g‖² = ‖t‖² + ‖g‖² − 2Σ s_i g_i t_i: maximise Σ s_i g_i t_i with even parity
      let gain = 0;
      let norm = 0;
      let neg = 0;
      let signs = 0;
      let cheapest = Number.POSITIVE_INFINITY;
      let cheapIdx = 0;
      for (let i = 0; i < 8; i++) {
        const g = grid[a * 8 + i]!;
        const p = g * t[i]!;
        norm += g * g;
        gain += Math.abs(p);
        if (p < 0) {
          neg++;
          signs |= 1 << i;
        }
        if (Math.abs(p) < cheapest) {
          cheapest = Math.abs(p);
          cheapIdx = i;
        }
      }
      if (neg % 2 === 1) {
        signs ^= 1 << cheapIdx;
        gain -= 2 * cheapest;
      }
      const d = tt + norm - 2 * gain;
      if (d < best) {
        best = d;
        // encode: with shift −¼ the stored byte has odd parity, bit 0 flipped back by the decoder
        bestCode = (a << 8) | (shift < 0 ? signs ^ 1 : signs);
      }
    }
  }
  return bestCode;
}

/** E8P-quantized rows×cols matrix (cols a multiple of 8): one 16-bit code per 8 weights, one scale per row. */
export interface E8pMatrix {
  rows: number;
  /** Stored columns: a multiple of 8 (a layer's width padded up, see e8pWidth). */
  cols: number;
  codes: Uint16Array;
  /** Per-row scale (f16-representable): w ≈ scale·codeword. */
  scales: Float32Array;
}

/** The name of the codebook in options and config.json. */
export const E8P12 = 'e8p12';

/** Columns an E8P matrix of width n stores: n rounded up to a multiple of 8 (172 → 176). */
export function e8pWidth(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** Bytes stored: 2 per 8 weights + an f16 scale per row. */
export function e8pBytes(q: E8pMatrix): number {
  return 2 * q.codes.length + 2 * q.rows;
}

let table: Float32Array | undefined;

/**
 * Every codeword, decoded once: 2^16 × 8 f32 (2 MiB, exact — the entries are multiples of ¼), so dequantizing
 * is a table lookup per 8 weights.
 */
export function e8pTable(): Float32Array {
  if (table) return table;
  const t = new Float32Array(65536 * 8);
  const cw = new Float64Array(8);
  for (let c = 0; c < 65536; c++) {
    e8pDecode(c, cw, 0);
    t.set(cw, c * 8);
  }
  table = t;
  return t;
}

/**
 * scale_r·codeword of the first `width` columns of every row (default: all stored columns), float64 row-major
 * [rows, width]: a padded layer's weight without its padding.
 */
export function e8pDequantize(q: E8pMatrix, width = q.cols): Float64Array {
  const out = new Float64Array(q.rows * width);
  e8pDecodeInto(q.codes, q.scales, q.rows, q.cols / 8, width, out);
  return out;
}

/** Decodes codes [rows, nb] with one scale per row (or one for all: length 1) into out [rows, width]. */
export function e8pDecodeInto(
  codes: ArrayLike<number>,
  scales: ArrayLike<number>,
  rows: number,
  nb: number,
  width: number,
  out: Float64Array | Float32Array,
): void {
  const t = e8pTable();
  for (let r = 0; r < rows; r++) {
    const s = scales.length === 1 ? scales[0]! : scales[r]!;
    const o = r * width;
    for (let b = 0; b < nb; b++) {
      const c0 = b * 8;
      if (c0 >= width) break;
      const k = codes[r * nb + b]! * 8;
      const n = Math.min(8, width - c0);
      for (let i = 0; i < n; i++) out[o + c0 + i] = s * t[k + i]!;
    }
  }
}

/**
 * W [rows, cols] and its Hessian padded to e8pWidth(cols) columns: zero weights, and Hessian rows and columns
 * of the padding zero but for the mean diagonal on their own diagonal, so LDLQ's feedback never reaches
 * them from the real columns nor from them into the real ones. Unchanged when cols is a multiple of 8.
 */
export function padForE8p(
  w: Float64Array,
  rows: number,
  cols: number,
  h?: Float64Array,
): { w: Float64Array; h: Float64Array | undefined; cols: number } {
  const pc = e8pWidth(cols);
  if (pc === cols) return { w, h, cols };
  const wp = new Float64Array(rows * pc);
  for (let r = 0; r < rows; r++) wp.set(w.subarray(r * cols, (r + 1) * cols), r * pc);
  if (!h) return { w: wp, h: undefined, cols: pc };
  const hp = new Float64Array(pc * pc);
  let tr = 0;
  for (let c = 0; c < cols; c++) {
    tr += h[c * cols + c]!;
    hp.set(h.subarray(c * cols, (c + 1) * cols), c * pc);
  }
  for (let c = cols; c < pc; c++) hp[c * pc + c] = tr / cols || 1;
  return { w: wp, h: hp, cols: pc };
}

/**
 * The codebook's unit: a row's scale is its RMS over this (QuIP#'s E8P scale for unit-variance Gaussian
 * inputs is ≈ 1.03; measured here the best fixed ratio for Gaussian rows).
 */
export const E8P_RMS_RATIO = 1.03;

function rowScale(v: Float64Array, off: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += v[off + i]! ** 2;
  return Math.sqrt(s / n) / E8P_RMS_RATIO;
}

/**
 * LDLQ with the E8P codebook: blocks of 8 columns quantized jointly (nearest codeword), the error fed forward
 * through the block LDLᵀ (b = 8) of the damped Hessian, last block first. `cols` must be a multiple of 8 (pad
 * with padForE8p otherwise). Without `h`: plain nearest-codeword rounding. `scale`: one scale for every row
 * (CALDERA's Q, whose scale is chosen once per matrix) instead of each row's RMS / E8P_RMS_RATIO.
 */
export function ldlqE8p(
  w: Float64Array,
  rows: number,
  cols: number,
  h: Float64Array | undefined,
  o: { damp?: number; scale?: number } = {},
  name = 'ldlq-e8p',
): E8pMatrix {
  if (cols % 8 !== 0) throw new LineageError(`${name}: E8P needs a width divisible by 8, got ${cols}`);
  let L: Float64Array | undefined;
  if (h) {
    try {
      L = ldl(matrix64(cols, cols, h), { damp: o.damp ?? 0.01, block: 8 }).L.data;
    } catch (e) {
      throw new LineageError(
        `${name}: the input Hessian is not positive definite even after damping: ${e instanceof Error ? e.message : e}`,
      );
    }
  }
  const scales = new Float32Array(rows);
  const fixed = o.scale === undefined ? undefined : roundF16(o.scale) || 1;
  for (let r = 0; r < rows; r++) scales[r] = fixed ?? (roundF16(rowScale(w, r * cols, cols)) || 1);
  const codes = new Uint16Array((rows * cols) / 8);
  const U = w.slice();
  const nb = cols / 8;
  const cw = new Float64Array(8);
  const t = new Float64Array(8);
  const delta = new Float64Array(rows * 8);
  for (let b = nb - 1; b >= 0; b--) {
    const k0 = b * 8;
    for (let r = 0; r < rows; r++) {
      const s = scales[r]!;
      for (let i = 0; i < 8; i++) t[i] = U[r * cols + k0 + i]! / s;
      const code = e8pEncode(t, 0);
      codes[r * nb + b] = code;
      e8pDecode(code, cw, 0);
      for (let i = 0; i < 8; i++) delta[r * 8 + i] = w[r * cols + k0 + i]! - s * cw[i]!;
    }
    if (!L || k0 === 0) continue;
    // U[:, :k0] += Δ·L[k0:k0+8, :k0]
    const lb = matrix64(8, k0);
    for (let i = 0; i < 8; i++) lb.data.set(L.subarray((k0 + i) * cols, (k0 + i) * cols + k0), i * k0);
    const upd = matmul64(matrix64(rows, 8, delta), lb).data;
    for (let r = 0; r < rows; r++) for (let j = 0; j < k0; j++) U[r * cols + j]! += upd[r * k0 + j]!;
  }
  return { rows, cols, codes, scales };
}

/** One scale for a whole matrix: its RMS / E8P_RMS_RATIO (f16). CALDERA's Q after RMS scaling and incoherence. */
export function e8pTensorScale(w: Float64Array): number {
  let s = 0;
  for (const v of w) s += v * v;
  return roundF16(Math.sqrt(s / Math.max(1, w.length)) / E8P_RMS_RATIO) || 1;
}
