import { HostTensor, LineageError, type LinearLayer } from '@lineage/core';
import { matrix64, solveTriangular } from '@lineage/linalg';
import { factorize, type Whitening } from '../factorize.js';
import { LowRankLinear } from '../low-rank-linear.js';
import { BasisLinear } from './basis-linear.js';

/** Singular values at or below this fraction of their mean are dropped (the authors' cut). */
export const SIGMA_CUT = 1e-3;

/**
 * A layer as pretrained bases: the full SVD W·S = U·diag(σ)·Vᵀ (S the whitening, or the identity), keeping
 * σ > 1e-3·mean σ; U frozen, V' = Vᵀ·S⁻¹ frozen (so U·diag(σ)·V' = W), coefficients w = √σ. Whitened, σ
 * measures each basis's share of the output on the calibration inputs rather than of the weight.
 */
export function basisOf(layer: LinearLayer, whitening?: Whitening, name?: string): BasisLinear {
  if (layer.kind !== 'linear' && !(layer instanceof LowRankLinear))
    throw new LineageError(
      `layer kind '${layer.kind}' cannot be decomposed into bases (dense or low-rank layers only)`,
    );
  const f = factorize(layer, whitening, name);
  const { out: m, in: n, sigma } = f;
  const mean = sigma.reduce((a, b) => a + b, 0) / Math.max(sigma.length, 1);
  let k = 0;
  while (k < sigma.length && sigma[k]! > SIGMA_CUT * mean) k++;
  k = Math.max(k, 1);
  const q = f.svd.U.cols;
  const U = new Float32Array(m * k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) U[i * k + j] = f.svd.U.data[i * q + j]!;
  // V' rows: (S⁻ᵀ·V_k)ᵀ, one triangular solve when whitened
  let Vk = matrix64(n, k);
  const qv = f.svd.V.cols;
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) Vk.data[i * k + j] = f.svd.V.data[i * qv + j]!;
  if (whitening) Vk = solveTriangular(whitening.S, Vk, { lower: true, trans: true });
  const V = new Float32Array(k * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) V[j * n + i] = Vk.data[i * k + j]!;
  const w = Float32Array.from(sigma.subarray(0, k), Math.sqrt);
  return new BasisLinear(
    new HostTensor('f32', [m, k], U),
    new HostTensor('f32', [k, n], V),
    new HostTensor('f32', [k], w),
    undefined,
    f.bias ? new HostTensor('f32', [m], f.bias) : undefined,
  );
}
