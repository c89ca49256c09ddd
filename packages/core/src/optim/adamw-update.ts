import { adamwWasmKernel, type Update } from './adamw-wasm.js';

/**
 * One parameter's AdamW update: the moments m, v in place, the new values into w (w may be w0). float64
 * arithmetic, m and v rounded to f32 as they are stored; the gradient is scaled by `scale` and rounded to
 * f32 on the fly. Runs the wasm SIMD kernel where the platform has one (same operations in the same
 * order, so bit for bit this loop's results: adamw-update.test.ts), else the JS reference loop.
 */
export const adamwUpdate: Update = (w0, w, g, m, v, b1, b2, shrink, stepSize, sbc2, eps, scale) => {
  const k = adamwWasmKernel();
  if (k) k(w0, w, g, m, v, b1, b2, shrink, stepSize, sbc2, eps, scale);
  else adamwUpdateJs(w0, w, g, m, v, b1, b2, shrink, stepSize, sbc2, eps, scale);
};

/** The reference: adamwUpdate in plain JS (monomorphic, so the JIT keeps it a tight loop). */
export const adamwUpdateJs: Update = (w0, w, g, m, v, b1, b2, shrink, stepSize, sbc2, eps, scale) => {
  const n = g.length;
  for (let i = 0; i < n; i++) {
    const gi = Math.fround(g[i]! * scale); // as if g had been scaled in place first (clipping)
    const mi = Math.fround(b1 * m[i]! + (1 - b1) * gi);
    const vi = Math.fround(b2 * v[i]! + (1 - b2) * gi * gi);
    m[i] = mi;
    v[i] = vi;
    w[i] = w0[i]! * shrink - (stepSize * mi) / (Math.sqrt(vi) / sbc2 + eps);
  }
};
