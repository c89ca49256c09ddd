import type { Parameter } from '../nn/parameter.js';
import type { Grads } from './optimizer.js';

/**
 * Scales gradients in place so their global L2 norm is at most `maxNorm` (PyTorch's clip_grad_norm_:
 * factor maxNorm / (norm + 1e-6) when below 1). Returns the norm before clipping (float64). A non-finite
 * norm leaves the gradients untouched: the caller should skip that step.
 */
export function clipGradNorm(grads: Grads, maxNorm: number): number {
  const norm = gradNorm(grads);
  const coef = clipCoefficient(norm, maxNorm);
  if (coef < 1) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] = g[i]! * coef;
  return norm;
}

/**
 * The factor clipGradNorm scales gradients by for a global norm `norm` (1 when no clipping applies or the
 * norm is not finite): for an optimiser that applies it on the fly (`AdamW.step`'s gradScale).
 */
export function clipCoefficient(norm: number, maxNorm: number): number {
  if (!Number.isFinite(norm)) return 1;
  const coef = maxNorm / (norm + 1e-6);
  return coef < 1 ? coef : 1;
}

/** Global L2 norm of all gradients (float64 accumulation). */
export function gradNorm(grads: Grads): number {
  let s = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/**
 * Sums gradients over micro-batches: `add` each micro-batch's gradients with a weight (e.g. its token
 * count), then `take` the weighted mean Σ wᵢ·gᵢ / Σ wᵢ (or the plain sum) for one optimiser step.
 */
export class GradientAccumulator {
  private sums = new Map<Parameter, Float32Array>();
  private weight = 0;
  private count = 0;

  /** Micro-batches added since the last take(). */
  get size(): number {
    return this.count;
  }

  add(grads: Grads, weight = 1): void {
    for (const [p, g] of grads) {
      let s = this.sums.get(p);
      if (!s) {
        s = new Float32Array(g.length);
        this.sums.set(p, s);
      }
      if (s.length !== g.length) throw new RangeError('GradientAccumulator: gradient size changed');
      for (let i = 0; i < g.length; i++) s[i] = s[i]! + weight * g[i]!;
    }
    this.weight += weight;
    this.count++;
  }

  /** The accumulated gradients (weighted mean by default) and a reset. */
  take(reduction: 'mean' | 'sum' = 'mean'): Map<Parameter, Float32Array> {
    const out = this.sums;
    if (reduction === 'mean' && this.weight !== 0 && this.weight !== 1) {
      const inv = 1 / this.weight;
      for (const s of out.values()) for (let i = 0; i < s.length; i++) s[i] = s[i]! * inv;
    }
    this.sums = new Map();
    this.weight = 0;
    this.count = 0;
    return out;
  }
}
