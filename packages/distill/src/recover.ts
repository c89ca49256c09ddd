import { join } from 'node:path';
import { type Backend, LineageError, type LlamaModel, type MethodContext } from '@lineage/core';
import { hasCheckpoint } from './checkpoint.js';
import type { SamplerState } from './data.js';
import type { DistillLoss, HiddenLossOptions } from './losses.js';
import { type CommonTrainOptions, distill, type StopReason, type TrainResult, train } from './trainer.js';

/**
 * A recovery call stopped by `signal` (e.g. Ctrl-C) or `stopAfter` before its budget was spent: the
 * method must not go on with a half-trained model. When the call had a checkpoint directory the
 * checkpoint is written, and re-running the pipeline with `resume: true` continues it.
 */
export class RecoveryInterrupted extends LineageError {
  constructor(
    readonly call: number,
    readonly stopped: StopReason,
    readonly steps: number,
    readonly totalSteps: number,
    readonly checkpoint: string | undefined,
  ) {
    super(
      `recovery ${call} ${stopped === 'interrupted' ? 'interrupted' : 'stopped'} at step ${steps} of ${totalSteps}` +
        (checkpoint ? `; checkpoint in ${checkpoint} (run again with resume to continue)` : ''),
    );
  }
}

export type RecoverFn = NonNullable<MethodContext['recover']>;

export interface RecoverOptions
  extends Omit<CommonTrainOptions, 'tokens' | 'checkpointDir' | 'resume' | 'restart'> {
  /** Default teacher when the method gives none in its budget (with neither, recovery is LM training). */
  teacher?: LlamaModel;
  teacherBackend?: Backend;
  temperature?: number;
  loss?: DistillLoss;
  ceWeight?: number;
  /** Hidden-state loss (default: on for same-width students, off otherwise; `false` turns it off). */
  hidden?: HiddenLossOptions | false;
  /**
   * Checkpoints of successive recover calls go to `${checkpointRoot}/recover-1`, `recover-2`, …; with
   * `resume`, a call whose directory holds a checkpoint continues it (a deterministic pipeline re-run
   * after a crash replays the finished calls from their last checkpoint and resumes the interrupted one).
   */
  checkpointRoot?: string;
  resume?: boolean;
  /**
   * Abort between steps (e.g. on SIGINT): the running call writes its checkpoint (with `checkpointRoot`)
   * and throws RecoveryInterrupted; later calls are not started.
   */
  signal?: AbortSignal;
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
 * methods (PLRD, Minitron) call `ctx.recover(model, { tokens, teacher })` without depending on this package;
 * `trainable`, `groups` and `regularizers` in the budget (or, as defaults, in the options) choose what
 * trains and add penalty terms.
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
    const { tokens, trainable, groups, regularizers, hidden } = budget;
    const selection = {
      ...(trainable !== undefined ? { trainable } : {}),
      ...(groups !== undefined ? { groups } : {}),
      ...(regularizers !== undefined ? { regularizers } : {}),
    };
    const r = teacher
      ? await distill({
          ...rest,
          ...ck,
          ...selection,
          ...(hidden ? { hidden } : {}),
          student: model,
          teacher,
          tokens,
        })
      : await train({ ...rest, ...ck, ...selection, model, tokens });
    position = r.dataEnd;
    onResult?.(r, call);
    if (r.stopped === 'interrupted' || r.stopped === 'stop-after')
      throw new RecoveryInterrupted(call, r.stopped, r.steps, r.totalSteps, r.checkpoint);
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
