import { ldl, matrix64 } from '@lineage/linalg';
import type { MatrixQuantizer } from './decompose.js';

// Test-only stand-ins for @lineage/quant's quantizers: a symmetric uniform grid with one scale per tensor
// (step = c_b · RMS, c_b the Gaussian-optimal step), by rounding or by LDLQ on the Hessian.

const STEP: Record<number, number> = { 2: 0.996, 3: 0.586, 4: 0.335, 8: 0.0226 };

function grid(w: Float64Array, bits: number): (v: number) => number {
  let ms = 0;
  for (const v of w) ms += v * v;
  const step = STEP[bits]! * Math.sqrt(ms / w.length) || 1;
  const top = 2 ** bits - 1;
  return (v) => {
    const i = Math.min(top, Math.max(0, Math.round(v / step + top / 2)));
    return (i - top / 2) * step;
  };
}

export function stubRtn(bits: number): MatrixQuantizer<{ bits: number }> {
  return (w) => {
    const q = grid(w, bits);
    return { values: w.map(q), payload: { bits } };
  };
}

export function stubLdlq(bits: number): MatrixQuantizer<{ bits: number }> {
  return (w, rows, cols, h) => {
    if (!h) throw new Error('stubLdlq needs a Hessian');
    const q = grid(w, bits);
    const { L } = ldl(matrix64(cols, cols, h), { damp: 0.01 });
    const out = new Float64Array(rows * cols);
    for (let c = cols - 1; c >= 0; c--)
      for (let r = 0; r < rows; r++) {
        let v = w[r * cols + c]!;
        for (let j = c + 1; j < cols; j++)
          v += (w[r * cols + j]! - out[r * cols + j]!) * L.data[j * cols + c]!;
        out[r * cols + c] = q(v);
      }
    return { values: out, payload: { bits } };
  };
}
