/**
 * The one home of the training defaults: what a run uses for every option it is not given. They follow
 * the model and the budget rather than one paper's 8B recipe (issue #18); explicit options always win.
 * The rules and their anchors are documented in docs/training-defaults.md.
 */

/**
 * The peak learning rate of distillation falls with the model's width as a power law through two anchors:
 * 8B-class models (hidden 4096) at 1e-4, NVIDIA Model Optimizer's recommendation for Minitron-style
 * distillation (NeMo's example starts lower, at 3e-5), and stories260K (hidden 64) at the rate measured best
 * for its recovery (BENCHMARKS.md, "Training defaults"). Between them lr ≈ 1e-4 · (4096 / width)^0.72.
 */
export const LR_ANCHORS = {
  large: { width: 4096, lr: 1e-4 },
  small: { width: 64, lr: 2e-3 },
} as const;

/** Next-token training (no teacher) starts from three times the distillation rate, as the old defaults did. */
export const TRAIN_LR_FACTOR = 3;

/** Optimiser and logging defaults that do not depend on the model. */
export const DEFAULTS = {
  seqLen: 256,
  /** The largest default batch; smaller budgets get smaller batches (defaultBatchSize). */
  batchSize: 8,
  /** Steps a default batch aims for: a budget too small for this many steps of the largest batch gets a smaller one. */
  targetSteps: 256,
  /** lr / minLr of the decay (Model Optimizer: 1e-4 → 1e-5). */
  minLrRatio: 10,
  weightDecay: 0.01,
  betas: [0.9, 0.95] as [number, number],
  clip: 1,
  logEvery: 10,
  /** Hidden-state loss weight when it is on by default (same-width student and teacher). */
  hiddenWeight: 1,
  /** Evaluations of a run that early-stops without an explicit evalEvery (besides the one before step 1). */
  evaluations: 8,
  /** Evaluations without improvement before an early stop, when a command turns it on by default. */
  patience: 3,
  /** Fraction of the last data file a recovering command holds out for early stopping (TextDataset.split). */
  validationFraction: 0.02,
};

/** The exponent of the width rule: log(lr ratio) / log(width ratio) of the two anchors. */
export const LR_WIDTH_EXPONENT =
  Math.log(LR_ANCHORS.small.lr / LR_ANCHORS.large.lr) /
  Math.log(LR_ANCHORS.large.width / LR_ANCHORS.small.width);

/** Default peak learning rate of a model of this width (hidden size); `train` runs get TRAIN_LR_FACTOR times it. */
export function widthLr(width: number, kind: 'train' | 'distill' = 'distill'): number {
  const { large } = LR_ANCHORS;
  const lr = large.lr * (large.width / width) ** LR_WIDTH_EXPONENT;
  // three significant digits: the rate in logs and run configs reads as chosen, not computed
  return Number((lr * (kind === 'train' ? TRAIN_LR_FACTOR : 1)).toPrecision(3));
}

/**
 * Sequences per step: the largest batch (8) when the budget buys targetSteps steps of it, else fewer, down
 * to one, so that small budgets still take enough optimiser steps (300k tokens of 256: 4 × 256, 292 steps).
 */
export function defaultBatchSize(tokens: number, seqLen: number): number {
  const fit = Math.floor(tokens / (seqLen * DEFAULTS.targetSteps));
  return Math.max(1, Math.min(DEFAULTS.batchSize, fit));
}

/** Linear warmup: 5% of the steps, at most 100. */
export function defaultWarmup(totalSteps: number): number {
  return Math.min(100, Math.floor(totalSteps / 20));
}

/** Evaluation interval of an early-stopping run given no evalEvery: about DEFAULTS.evaluations evaluations. */
export function defaultEvalEvery(totalSteps: number): number {
  return Math.max(1, Math.ceil(totalSteps / DEFAULTS.evaluations));
}
