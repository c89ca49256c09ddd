import { AdamW, LineageError, type LlamaModel, type Logger } from '@lineage/core';
import { WindowSampler } from './data.js';
import { trainedParameters } from './param-groups.js';
import { type StepContext, trainStep } from './train-step.js';
import type { CommonTrainOptions } from './trainer.js';

/** The learning-rate range test (`lr: 'auto'`): how many steps and which rates it sweeps. */
export interface LrRangeOptions {
  /** Steps of the sweep (default 100), each at a rate e^(1/steps) times the last. */
  steps?: number;
  /** Lowest and highest rate tried (default 1e-5 and 1e-1). */
  min?: number;
  max?: number;
}

export const LR_RANGE_DEFAULTS = { steps: 100, min: 1e-5, max: 1e-1 };

/** One point of the range test's curve. */
export interface LrRangePoint {
  lr: number;
  loss: number;
  /** Exponentially smoothed, bias-corrected loss (β = 0.9). */
  smoothed: number;
}

export interface LrRangeResult {
  /** The rate where the smoothed loss fell fastest against log lr. */
  lr: number;
  curve: LrRangePoint[];
}

/** What the range test needs from the run: the model (copied), its step settings, data and optimiser. */
export interface LrRangeInput {
  model: LlamaModel;
  step: Omit<StepContext, 'model' | 'params' | 'optimizer' | 'regularizers'>;
  /** The run's options (which parameters train). */
  options: CommonTrainOptions;
  weightDecay: number;
  betas: [number, number];
  tokens: Int32Array;
  seed: number;
  name: string;
  log: Logger;
  range?: LrRangeOptions;
}

/**
 * Smith's learning-rate range test on a copy of the model: `steps` (default 100) steps at rates rising
 * geometrically from `min` to `max` on the run's own objective and batch shape (a fresh sampler of the same
 * data and seed, so the run's stream is untouched); stops once the smoothed loss exceeds 4× its best. Picks
 * the rate at the steepest descent of the smoothed loss against log lr, and logs the curve. The model passed
 * in is not modified.
 */
export async function lrRangeTest(x: LrRangeInput): Promise<LrRangeResult> {
  const { steps, min, max } = { ...LR_RANGE_DEFAULTS, ...x.range };
  if (!(Number.isInteger(steps) && steps >= 5))
    throw new LineageError(`lr range test: steps must be an integer ≥ 5, got ${steps}`);
  if (!(min > 0 && max > min))
    throw new LineageError(`lr range test: needs 0 < min < max, got ${min}, ${max}`);
  const copy = x.model.clone();
  const { trained } = trainedParameters(copy, x.options);
  const optimizer = new AdamW(trained, { lr: min, weightDecay: x.weightDecay, betas: x.betas });
  const ctx: StepContext = {
    ...x.step,
    model: copy,
    params: [...trained.values()],
    regularizers: [],
    optimizer,
  };
  const sampler = new WindowSampler(x.tokens, x.step.seqLen, x.seed, x.name);
  const factor = (max / min) ** (1 / (steps - 1));
  const curve: LrRangePoint[] = [];
  let avg = 0;
  let best = Infinity;
  for (let i = 0; i < steps; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (x.options.signal?.aborted) break;
    const lr = min * factor ** i;
    const r = await trainStep(ctx, sampler.next(x.step.batchSize), lr);
    if (!r.finite) break;
    avg = 0.9 * avg + 0.1 * r.loss;
    const smoothed = avg / (1 - 0.9 ** (i + 1));
    curve.push({ lr, loss: r.loss, smoothed });
    best = Math.min(best, smoothed);
    if (smoothed > 4 * best) break;
  }
  if (curve.length < 5) throw new LineageError('lr range test: the loss diverged within its first steps');
  // steepest descent of the smoothed loss per step of log lr (central differences, the noisy first
  // tenth skipped)
  let pick = curve[Math.floor(curve.length / 2)]!.lr;
  let steepest = 0;
  for (let i = Math.max(1, Math.floor(curve.length / 10)); i < curve.length - 1; i++) {
    const slope = (curve[i + 1]!.smoothed - curve[i - 1]!.smoothed) / 2;
    if (slope < steepest) {
      steepest = slope;
      pick = curve[i]!.lr;
    }
  }
  const every = Math.max(1, Math.floor(curve.length / 10));
  x.log.info(
    `lr range test (${curve.length} steps on a copy): ${curve
      .filter((_, i) => i % every === 0)
      .map((p) => `${p.lr.toExponential(1)}→${p.smoothed.toFixed(3)}`)
      .join(' ')}; steepest descent at lr ${pick.toExponential(2)}`,
  );
  return { lr: Number(pick.toPrecision(3)), curve };
}
