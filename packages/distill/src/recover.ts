import { join } from 'node:path';
import { type Backend, LineageError, type LlamaModel, type MethodContext } from '@lineage/core';
import { hasCheckpoint } from './checkpoint.js';
import type { SamplerState } from './data.js';
import type { DistillLoss, HiddenLossOptions } from './losses.js';
import { type CommonTrainOptions, distill, type TrainResult, train } from './trainer.js';

export type RecoverFn = NonNullable<MethodContext['recover']>;

export interface RecoverOptions
  extends Omit<CommonTrainOptions, 'tokens' | 'checkpointDir' | 'resume' | 'restart'> {
  /** Default teacher when the method gives none in its budget (with neither, recovery is LM training). */
  teacher?: LlamaModel;
  teacherBackend?: Backend;
  temperature?: number;
  loss?: DistillLoss;
  ceWeight?: number;
  hidden?: HiddenLossOptions;
  /**
   * Checkpoints of successive recover calls go to `${checkpointRoot}/recover-1`, `recover-2`, …; with
   * `resume`, a call whose directory holds a checkpoint continues it (a deterministic pipeline re-run
   * after a crash replays the finished calls from their last checkpoint and resumes the interrupted one).
   */
  checkpointRoot?: string;
  resume?: boolean;
  /** Sees every recovery's result (loss curve, evaluations, throughput). */
  onResult?: (result: TrainResult, call: number) => void;
  /**
   * Each call continues the data stream where the previous one stopped (default true), so k calls of
   * n tokens see the same text as one run of k·n tokens; false starts every call at the stream's beginning.
   */
  continueData?: boolean;
}

/**
 * The `recover` capability of a method context, backed by this package: distillation from
 * `budget.teacher` (or `options.teacher`) when there is one, else next-token training. Compression
 * methods (PLRD, Minitron) call `ctx.recover(model, { tokens, teacher })` without depending on this package.
 */
export function recoverCapability(options: RecoverOptions): RecoverFn {
  let calls = 0;
  let position: SamplerState | undefined;
  return async (model, budget) => {
    const call = ++calls;
    const { checkpointRoot, resume, onResult, continueData, teacher: defaultTeacher, ...common } = options;
    const rest = continueData !== false && position ? { ...common, dataStart: position } : common;
    const dir = checkpointRoot ? join(checkpointRoot, `recover-${call}`) : undefined;
    const ck = dir
      ? { checkpointDir: dir, resume: resume === true && hasCheckpoint(dir), restart: resume !== true }
      : {};
    const teacher = budget.teacher ?? defaultTeacher;
    const r = teacher
      ? await distill({ ...rest, ...ck, student: model, teacher, tokens: budget.tokens })
      : await train({ ...rest, ...ck, model, tokens: budget.tokens });
    position = r.dataEnd;
    onResult?.(r, call);
    return r.model;
  };
}

/**
 * The method context with `recover` attached; data, backend, logger, progress and seed default to the
 * context's (the context's data is required unless `options.data` is given).
 */
export function withRecover(ctx: MethodContext, options: Partial<RecoverOptions> = {}): MethodContext {
  const data = options.data ?? ctx.data;
  if (!data) throw new LineageError('recovery needs training data (--data <file>)');
  return {
    ...ctx,
    recover: recoverCapability({
      backend: ctx.backend,
      log: ctx.log,
      progress: ctx.progress,
      seed: ctx.seed,
      ...options,
      data,
    }),
  };
}
