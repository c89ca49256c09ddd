export interface LrScheduleOptions {
  /** Peak learning rate (reached at the end of warmup). */
  lr: number;
  /** Updates of linear warmup (default 0). */
  warmupSteps?: number;
  /** Total updates of the run (the decay ends there). */
  totalSteps: number;
  /** Shape after warmup (default cosine). */
  decay?: 'cosine' | 'linear' | 'constant';
  /** Floor of the decay (default 0). */
  minLr?: number;
}

/**
 * Learning rate per update index (0-based: the lr of the (step+1)-th update). Warmup rises linearly
 * lr·(step+1)/warmup (no wasted zero-lr update), then cosine or linear decay from lr to minLr at
 * `totalSteps`, then minLr. A pure function of the step, so resuming from a checkpoint is exact.
 */
export function lrSchedule(o: LrScheduleOptions): (step: number) => number {
  const warm = o.warmupSteps ?? 0;
  const min = o.minLr ?? 0;
  const decay = o.decay ?? 'cosine';
  if (!(o.totalSteps > 0) || warm < 0 || warm > o.totalSteps)
    throw new RangeError(`lrSchedule: need 0 ≤ warmupSteps (${warm}) ≤ totalSteps (${o.totalSteps})`);
  return (step: number) => {
    if (step < warm) return (o.lr * (step + 1)) / warm;
    if (decay === 'constant') return o.lr;
    const p = Math.min(1, (step - warm) / Math.max(1, o.totalSteps - warm));
    const f = decay === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * p)) : 1 - p;
    return min + (o.lr - min) * f;
  };
}
