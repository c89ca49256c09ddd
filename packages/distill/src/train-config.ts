import { LineageError, type LlamaModel, lrSchedule } from '@lineage/core';
import type { RunConfig } from './checkpoint.js';
import { DEFAULTS, defaultBatchSize, defaultEvalEvery, defaultWarmup, widthLr } from './defaults.js';
import type { DistillLoss } from './losses.js';
import type { TrainData } from './train-data.js';
import type { CommonTrainOptions, Schedule } from './trainer.js';

/** What distinguishes `train` from `distill` once their own options are checked. */
export interface Setup {
  kind: 'train' | 'distill';
  model: LlamaModel;
  teacher?: LlamaModel;
  teacherBackend?: CommonTrainOptions['backend'];
  loss: DistillLoss;
  temperature: number;
  ceWeight: number;
  hiddenPairs: [number, number][];
  hiddenWeight: number;
  /** What the run chose by default, logged when it starts (e.g. whether the hidden-state loss is on). */
  notes?: string[];
}

export function positiveInt(v: number | undefined, name: string, min = 1): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= min))
    throw new LineageError(`${name} must be an integer ≥ ${min}, got ${v}`);
}

export function positiveNumber(v: number | undefined, name: string, allowZero = false): void {
  if (v !== undefined && !(Number.isFinite(v) && (allowZero ? v >= 0 : v > 0)))
    throw new LineageError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${v}`);
}

/** The shape of the run: sequence length, batch, micro-batch and the number of steps the budget buys. */
export interface BatchPlan {
  seqLen: number;
  batchSize: number;
  micro: number;
  stepTokens: number;
  totalSteps: number;
}

/** Checks the options that need no data or backend and works out the batch plan. */
export function planBatches(s: Setup, o: CommonTrainOptions): BatchPlan {
  const model = s.model;
  if (!(typeof o.tokens === 'number' && Number.isFinite(o.tokens) && o.tokens >= 0))
    throw new LineageError(`the token budget must be a number of tokens, got ${String(o.tokens)}`);
  positiveInt(o.seqLen, 'seqLen', 2);
  positiveInt(o.batchSize, 'batchSize');
  positiveInt(o.microBatchSize, 'microBatchSize');
  if (o.lr !== 'auto') positiveNumber(o.lr, 'lr');
  positiveNumber(o.minLr, 'minLr', true);
  positiveInt(o.warmup, 'warmup', 0);
  positiveNumber(o.weightDecay, 'weightDecay', true);
  positiveNumber(o.clip, 'clip', true);
  positiveInt(o.seed, 'seed', 0);
  positiveInt(o.evalEvery, 'evalEvery');
  positiveInt(o.checkpointEvery, 'checkpointEvery');
  positiveInt(o.stopAfter, 'stopAfter');
  positiveInt(o.logEvery, 'logEvery');
  if (o.earlyStop) positiveInt(o.earlyStop.patience, 'earlyStop.patience');
  if (o.schedule && !['cosine', 'linear', 'constant'].includes(o.schedule))
    throw new LineageError(`schedule must be cosine, linear or constant, got '${o.schedule}'`);
  const context = Math.min(model.config.maxPositions, s.teacher?.config.maxPositions ?? Infinity);
  const seqLen = o.seqLen ?? Math.min(DEFAULTS.seqLen, context);
  if (seqLen > context) throw new LineageError(`seq-len ${seqLen} exceeds the context of ${context} tokens`);
  const batchSize = o.batchSize ?? defaultBatchSize(o.tokens, seqLen);
  const micro = Math.min(o.microBatchSize ?? batchSize, batchSize);
  const stepTokens = batchSize * seqLen;
  const totalSteps = Math.floor(o.tokens / stepTokens);
  if (totalSteps < 1) {
    throw new LineageError(
      `a budget of ${o.tokens} tokens is less than one step (batch size ${batchSize} × seq-len ${seqLen} = ${stepTokens} tokens)`,
    );
  }
  if (o.earlyStop && !o.evalData && !o.holdout)
    throw new LineageError('early stopping needs evaluation data (evalData or holdout)');
  if (o.resume && !o.checkpointDir) throw new LineageError('resume needs a checkpoint directory');
  return { seqLen, batchSize, micro, stepTokens, totalSteps };
}

/** The optimiser's hyperparameters and the learning-rate schedule. */
export interface OptimPlan {
  lr: number;
  minLr: number;
  warmup: number;
  schedule: Schedule;
  /** Learning rate of a step index. */
  sched: (step: number) => number;
  weightDecay: number;
  betas: [number, number];
  clip: number;
}

export function planOptimizer(s: Setup, o: CommonTrainOptions, totalSteps: number): OptimPlan {
  // 'auto' is resolved by the range test before this (run()); here it can only mean the default
  const lr = typeof o.lr === 'number' ? o.lr : widthLr(s.model.config.hiddenSize, s.kind);
  const minLr = o.schedule === 'constant' ? lr : (o.minLr ?? lr / DEFAULTS.minLrRatio);
  const warmup = o.warmup ?? defaultWarmup(totalSteps);
  if (warmup > totalSteps) throw new LineageError(`warmup (${warmup} steps) exceeds the ${totalSteps} steps`);
  const schedule = o.schedule ?? 'cosine';
  const sched = lrSchedule({ lr, minLr, warmupSteps: warmup, totalSteps, decay: schedule });
  return {
    lr,
    minLr,
    warmup,
    schedule,
    sched,
    weightDecay: o.weightDecay ?? DEFAULTS.weightDecay,
    betas: o.betas ?? DEFAULTS.betas,
    clip: o.clip ?? DEFAULTS.clip,
  };
}

/** Everything that determines the run's trajectory: a checkpoint resumes only under an equal config. */
export function runConfig(
  s: Setup,
  o: CommonTrainOptions,
  b: BatchPlan,
  p: OptimPlan,
  data: TrainData,
): RunConfig {
  const ev = data.ev;
  return {
    kind: s.kind,
    seqLen: b.seqLen,
    batchSize: b.batchSize,
    microBatchSize: b.micro,
    tokens: o.tokens,
    totalSteps: b.totalSteps,
    lr: p.lr,
    minLr: p.minLr,
    warmup: p.warmup,
    schedule: p.schedule,
    weightDecay: p.weightDecay,
    betas: [...p.betas],
    clip: p.clip,
    seed: data.seed,
    // recorded only when given, so checkpoints of runs from the start keep resuming
    ...(o.dataStart ? { dataStart: [o.dataStart.epoch, o.dataStart.cursor] } : {}),
    data: data.hash,
    dataTokens: data.tokens.length,
    loss: s.kind === 'distill' ? s.loss : 'lm',
    temperature: s.temperature,
    ceWeight: s.ceWeight,
    hidden: s.hiddenPairs.map(([a, b]) => [a, b]),
    hiddenWeight: s.hiddenWeight,
    evalData: ev?.hash ?? null,
    evalEvery: evalInterval(o, b.totalSteps) ?? null,
    evalSeqLen: ev?.options.seqLen ?? null,
    evalLimit: o.evalLimit ?? null,
    earlyStopPatience: o.earlyStop?.patience ?? null,
    earlyStopMinDelta: o.earlyStop ? (o.earlyStop.minDelta ?? 1e-3) : null,
  };
}

/** Steps between evaluations: the given interval, else about DEFAULTS.evaluations when early stopping needs them. */
export function evalInterval(o: CommonTrainOptions, totalSteps: number): number | undefined {
  return o.evalEvery ?? (o.earlyStop ? defaultEvalEvery(totalSteps) : undefined);
}
