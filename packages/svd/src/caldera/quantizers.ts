import { LineageError } from '@lineage/core';
import {
  dequantize,
  type E8pMatrix,
  e8pDequantize,
  e8pTensorScale,
  ldlq,
  ldlqE8p,
  padForE8p,
  type QuantBits,
  type QuantizedMatrix,
  rtn,
  tensorScale,
} from '@lineage/quant';
import type { MatrixQuantizer } from './decompose.js';

/*
 * The quantizers CALDERA's parts use, built on @lineage/quant's grid (codes, f16 scales, encode/decode):
 * - Q: LDLQ on ONE scale for the whole matrix. After RMS scaling and the Hadamard incoherence the entries are
 *   about Gaussian, so one scale, chosen as the multiple of the RMS that rounds with least error, costs 16
 *   bits per matrix where a scale per row costs 16/n bits per weight (0.21 bits/param on stories260K: more
 *   than a 2.5-bit budget leaves), at about the same proxy error except on rows of unequal scale (q/k),
 *   which the L·R part absorbs (docs/caldera.md).
 * - or Q on QuIP#'s E8P12 lattice codebook (`qCodebook: 'e8p12'`, as the reference): LDLQ over blocks of 8
 *   columns, one 16-bit code per 8 weights and again one scale per matrix (its RMS / 1.03), the width padded
 *   to a multiple of 8.
 * - L and R: quant's `rtn` on Lᵀ and R, one scale per rank component (per row of Lᵀ and R).
 */

/**
 * LDLQ on one fixed grid for the whole matrix (quant's `ldlq` with the scale `tensorScale` picks): every row's
 * scale is equal, so the payload stores as one scale.
 */
export function tensorLdlq(
  w: Float64Array,
  rows: number,
  cols: number,
  h: Float64Array,
  bits: QuantBits,
  o: { damp?: number; name?: string } = {},
): QuantizedMatrix {
  const grid = { bits, groupSize: 0, scale: tensorScale(w, bits), damp: o.damp ?? 0.01 };
  try {
    return ldlq(w, rows, cols, h, grid, o.name);
  } catch (e) {
    if (!(e instanceof LineageError) || !/not positive definite/.test(e.message)) throw e;
    throw new LineageError(
      `caldera: the Hessian of ${o.name ? `'${o.name}'` : 'the layer'} is not positive definite even after damping (${e.message})`,
    );
  }
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

/** Q on E8P12: LDLQ in blocks of 8 on the padded Hessian, one scale for the matrix; the payload is padded. */
export function qE8pQuantizer(name?: string): MatrixQuantizer<E8pMatrix> {
  return (w, rows, cols, h) => {
    if (!h) throw new Error('caldera: the Q step needs the Hessian');
    const p = padForE8p(w, rows, cols, h);
    let payload: E8pMatrix;
    try {
      payload = ldlqE8p(p.w, rows, p.cols, p.h, { scale: e8pTensorScale(w) }, name ? `ldlq ${name}` : 'ldlq');
    } catch (e) {
      if (!(e instanceof LineageError) || !/not positive definite/.test(e.message)) throw e;
      throw new LineageError(
        `caldera: the Hessian of ${name ? `'${name}'` : 'the layer'} is not positive definite even after damping (${e.message})`,
      );
    }
    return { values: e8pDequantize(payload, cols), payload };
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
