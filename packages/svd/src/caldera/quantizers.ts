import { LineageError } from '@lineage/core';
import { ldl, matmul64, matrix64 } from '@lineage/linalg';
import {
  decode,
  dequantize,
  emptyQuantized,
  encode,
  type QuantBits,
  type QuantizedMatrix,
  roundF16,
  rtn,
} from '@lineage/quant';
import type { MatrixQuantizer } from './decompose.js';

/*
 * The quantizers CALDERA's parts use, built on @lineage/quant's grid (codes, f16 scales, encode/decode):
 * - Q: LDLQ on ONE scale for the whole matrix. After RMS scaling and the Hadamard incoherence the entries are
 *   about Gaussian, so one scale, chosen as the multiple of the RMS that rounds with least error, costs 16
 *   bits per matrix where a scale per row costs 16/n bits per weight (0.21 bits/param on stories260K: more
 *   than a 2.5-bit budget leaves), at about the same proxy error except on rows of unequal scale (q/k),
 *   which the L·R part absorbs (docs/caldera.md).
 * - L and R: quant's `rtn` on Lᵀ and R, one scale per rank component (per row of Lᵀ and R).
 */

/** The level step, in units of RMS, that rounds a Gaussian with least squared error on a 2^b-level grid. */
const GAUSSIAN_STEP: Record<QuantBits, number> = { 2: 0.9957, 3: 0.586, 4: 0.3352, 8: 0.0226 };

/** One scale for all of `w`: the multiple of its RMS near the Gaussian optimum that rounds `w` best. */
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

/**
 * LDLQ (columns last to first, each column's input plus the errors of the columns already done fed forward
 * through the unit lower factor of H = L·D·Lᵀ) on one fixed grid for the whole matrix. Returns quant's
 * QuantizedMatrix with every row's scale equal (so it stores as one scale).
 */
export function tensorLdlq(
  w: Float64Array,
  rows: number,
  cols: number,
  h: Float64Array,
  bits: QuantBits,
  o: { damp?: number; name?: string } = {},
): QuantizedMatrix {
  const scale = tensorScale(w, bits);
  let L: Float64Array;
  try {
    L = ldl(matrix64(cols, cols, h), { damp: o.damp ?? 0.01 }).L.data;
  } catch (e) {
    throw new LineageError(
      `caldera: the Hessian of ${o.name ? `'${o.name}'` : 'the layer'} is not positive definite even after damping (${(e as Error).message})`,
    );
  }
  const q = emptyQuantized(rows, cols, { bits, groupSize: 0 });
  q.scales.fill(scale);
  const maxq = 2 ** bits - 1;
  const g = { scale, offset: maxq / 2 };
  const U = w.slice();
  const B = 64;
  for (let k1 = cols; k1 > 0; k1 -= B) {
    const k0 = Math.max(0, k1 - B);
    const bw = k1 - k0;
    const delta = new Float64Array(rows * bw);
    for (let c = k1 - 1; c >= k0; c--) {
      const lrow = c * cols;
      for (let r = 0; r < rows; r++) {
        const code = encode(U[r * cols + c]!, g, maxq);
        q.codes[r * cols + c] = code;
        // the error fed forward is W − Ŵ (so that (W − Ŵ)·L is each column's own rounding error)
        const d = w[r * cols + c]! - decode(code, g);
        delta[r * bw + c - k0] = d;
        for (let j = k0; j < c; j++) U[r * cols + j]! += d * L[lrow + j]!;
      }
    }
    if (k0 === 0) break;
    const lb = matrix64(bw, k0);
    for (let i = 0; i < bw; i++) lb.data.set(L.subarray((k0 + i) * cols, (k0 + i) * cols + k0), i * k0);
    const upd = matmul64(matrix64(rows, bw, delta), lb).data;
    for (let r = 0; r < rows; r++) for (let j = 0; j < k0; j++) U[r * cols + j]! += upd[r * k0 + j]!;
  }
  return q;
}

function transposed(a: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c]!;
  return t;
}

/** Q's quantizer: tensor-scale LDLQ on the Hessian. */
export function qQuantizer(bits: QuantBits, name?: string): MatrixQuantizer<QuantizedMatrix> {
  return (w, rows, cols, h) => {
    if (!h) throw new Error('caldera: the Q step needs the Hessian');
    const payload = tensorLdlq(w, rows, cols, h, bits, name ? { name } : {});
    return { values: dequantize(payload), payload };
  };
}

/** L's quantizer ([rows, rank]): rtn of Lᵀ, one scale per rank component; the payload is Lᵀ's. */
export function lQuantizer(bits: QuantBits): MatrixQuantizer<QuantizedMatrix> {
  return (l, rows, rank) => {
    const payload = rtn(transposed(l, rows, rank), rank, rows, { bits, groupSize: 0 });
    return { values: transposed(dequantize(payload), rank, rows), payload };
  };
}

/** R's quantizer ([rank, cols]): rtn, one scale per rank component. */
export function rQuantizer(bits: QuantBits): MatrixQuantizer<QuantizedMatrix> {
  return (r, rank, cols) => {
    const payload = rtn(r, rank, cols, { bits, groupSize: 0 });
    return { values: dequantize(payload), payload };
  };
}
