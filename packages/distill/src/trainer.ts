import {
  AdamW,
  type Backend,
  getBackend,
  LineageError,
  type LlamaModel,
  type Logger,
  modelFingerprint,
  namedParameters,
  Ops,
  type ParamGroup,
  type ParamSelector,
  type Progress,
  type Regularizer,
  silentLogger,
  silentProgress,
} from '@lineage/core';
import { checkpointRun, type EvalRecord, type RunSnapshot } from './checkpoint.js';
import type { DataInput, SamplerState } from './data.js';
import { DEFAULTS } from './defaults.js';
import { evaluate } from './evaluate.js';
import { trainingFlops } from './flops.js';
import { formatDuration, formatStep, formatTokens, JsonlLog, type StepRecord } from './log.js';
import { type DistillLoss, type HiddenLossOptions, layerPairs } from './losses.js';
import { type LrRangeOptions, lrRangeTest } from './lr-range.js';
import { groupOptions, selectionConfig, trainedParameters } from './param-groups.js';
import { REGULARIZER_METRIC, regularizerConfig, resolveRegularizers } from './regularizers.js';
import { refuseExistingCheckpoint, resumeRun } from './resume.js';
import {
  evalInterval,
  planBatches,
  planOptimizer,
  positiveNumber,
  runConfig,
  type Setup,
} from './train-config.js';
import { prepareData } from './train-data.js';
import { TrainState } from './train-state.js';
import { type StepContext, trainStep } from './train-step.js';

export type Schedule = 'cosine' | 'linear' | 'constant';

/** Options shared by `train` and `distill`. Only `data` and `tokens` are required. */
export interface CommonTrainOptions {
  /** Training text: file path(s) or sources (documents with a separator, or one stream). */
  data: DataInput;
  /** Token budget: steps = ⌊tokens / (batchSize · seqLen)⌋. */
  tokens: number;
  /** Tokens per training sequence (default min(256, context)). */
  seqLen?: number;
  /** Sequences per optimiser step (default 8). */
  batchSize?: number;
  /** Sequences per forward/backward pass (default batchSize): gradients are accumulated (memory vs speed). */
  microBatchSize?: number;
  /**
   * Peak learning rate (default: from the model's width, `widthLr`: 1e-4 at hidden 4096 as Model Optimizer's
   * 8B recipe, 2e-3 at 64; 3× that for train). 'auto': a learning-rate range test on a copy first
   * (`lrRange`), its steepest-descent rate used.
   */
  lr?: number | 'auto';
  /** Steps and rates of the range test of `lr: 'auto'` (default 100 steps from 1e-5 to 1e-1). */
  lrRange?: LrRangeOptions;
  /** Final learning rate of the decay (default lr / 10). */
  minLr?: number;
  /** Linear warmup steps (default min(100, ⌊steps / 20⌋)). */
  warmup?: number;
  /** Decay after warmup (default cosine). */
  schedule?: Schedule;
  /** AdamW decoupled weight decay on matrices (default 0.01). */
  weightDecay?: number;
  /** AdamW betas (default [0.9, 0.95]). */
  betas?: [number, number];
  /** Clip the global gradient norm to this (default 1; 0 disables). */
  clip?: number;
  /** Seed of the data sampler (default 0): a run is a pure function of its seed, data, models and options. */
  seed?: number;
  /**
   * Where in the sampler's stream to begin (default: the first window of epoch 0). Passing the previous
   * run's `dataEnd` makes successive runs on the same data and seed walk the stream as one run would.
   */
  dataStart?: SamplerState;
  /** Where the student trains (default: getBackend(), the fastest registered). */
  backend?: Backend;

  /**
   * Which parameters train (default: all whose `trainable` flag is set; a frozen one never trains): name
   * globs like `layers.2.mlp.*`, RegExps or a predicate. The others stay bitwise unchanged and get no
   * optimiser state. A glob that matches no parameter is an error.
   */
  trainable?: ParamSelector;
  /**
   * Parameter groups (PyTorch style), each with its own peak `lr` or `lrScale` and `weightDecay`. Without
   * `trainable`, only the grouped parameters train; with it, the selected ones outside every group train
   * with the run's settings.
   */
  groups?: readonly ParamGroup[];
  /**
   * Extra terms of the objective, on the autodiff tape (e.g. `l1(1e-4, 'layers.2.mlp.*')`); each weighted
   * term is reported beside the loss's parts (StepRecord.regularizers).
   */
  regularizers?: readonly Regularizer[];

  /** Held-out evaluation data (perplexity: documents protocol when it has a separator, else windows of seqLen). */
  evalData?: DataInput;
  /** Hold out the last n documents of the (last document) training source as evaluation data. */
  holdout?: number;
  /** Evaluate every n steps (and before the first and after the last step; default: only those two). */
  evalEvery?: number;
  /** Truncation (documents) or window length (stream) of the evaluation (default: context / seqLen). */
  evalSeqLen?: number;
  /** Evaluate at most this many documents or windows. */
  evalLimit?: number;
  evalBatchSize?: number;
  /** Stop when the held-out NLL has not improved by minDelta (nats, default 1e-3) for `patience` evaluations. */
  earlyStop?: { patience: number; minDelta?: number };

  /** Directory of the run's checkpoint (written atomically, replaced each time). */
  checkpointDir?: string;
  /** Write a checkpoint every n steps (default: only when stopped early). */
  checkpointEvery?: number;
  /** Resume from the checkpoint in checkpointDir (refused unless models, data and config match). */
  resume?: boolean;
  /** Start over even though checkpointDir holds a checkpoint (default: refuse). */
  restart?: boolean;
  /** Write a checkpoint when stopped by `signal` or `stopAfter` (default true). */
  checkpointOnStop?: boolean;
  /** Stop (with a checkpoint) once this many steps are done in total; resume later. */
  stopAfter?: number;
  /** Abort between steps (e.g. on SIGINT); a checkpoint is written first. */
  signal?: AbortSignal;

  /** JSONL log of the run (start, steps, evaluations, checkpoints, end). */
  logFile?: string;
  /** Log a step line every n steps (default 10; always the first and the last). */
  logEvery?: number;
  log?: Logger;
  progress?: Progress;
  onStep?: (r: StepRecord) => void;
  onEval?: (r: EvalRecord) => void;
}

export interface TrainOptions extends CommonTrainOptions {
  /** The model to train (in place) with the next-token loss. */
  model: LlamaModel;
}

export interface DistillOptions extends CommonTrainOptions {
  /** The model to train (in place). */
  student: LlamaModel;
  /** The model whose logits the student learns (never modified). */
  teacher: LlamaModel;
  /** Where the teacher runs (default: getBackend(), the fastest registered inference path). */
  teacherBackend?: Backend;
  /** Softmax temperature of both distributions (default 1, as Minitron). */
  temperature?: number;
  /** 'kl' (forward KL, default), 'ce' (next-token loss only), 'kl+ce'. */
  loss?: DistillLoss;
  /** Weight of the cross-entropy under 'kl+ce' (default 1). */
  ceWeight?: number;
  /**
   * Intermediate hidden-state loss through a layer mapping (for depth-pruned students). Default: on, with
   * the uniform mapping and weight 1, when student and teacher have the same width and the loss uses the
   * teacher (kl, kl+ce); off when the widths differ (it cannot apply) or with `false`. The log says which.
   */
  hidden?: HiddenLossOptions | false;
}

export type StopReason = 'budget' | 'early-stop' | 'interrupted' | 'stop-after';

export interface TrainResult {
  /** The trained model (the same object that was passed in). */
  model: LlamaModel;
  /** Steps done in total (including those before a resume) and planned. */
  steps: number;
  totalSteps: number;
  /** Training tokens consumed. */
  tokens: number;
  stopped: StopReason;
  /** Loss of the last step. */
  loss: number;
  evals: EvalRecord[];
  /** The best evaluation: the lowest NLL, improvements below earlyStop.minDelta (default 1e-3) not counted. */
  best?: EvalRecord;
  /** Steps resumed from (absent for a fresh run). */
  resumedFrom?: number;
  skippedSteps: number;
  /** Training wall time, all sessions (seconds; evaluation and checkpoints excluded). */
  seconds: number;
  /** Tokens per second of this session. */
  tokensPerSecond: number;
  /** FLOPs per training token (student forward+backward, teacher forward) and the achieved rate. */
  flops: { student: number; teacher: number; gflopsPerSecond: number };
  backend: string;
  teacherBackend?: string;
  /** Where the checkpoint is, when one was written. */
  checkpoint?: string;
  /** Token stream sizes. */
  dataTokens: number;
  /** Where the sampler stopped: the `dataStart` of a run that should continue the stream. */
  dataEnd: SamplerState;
  evalData?: string;
}

/** Plain language-model training (next-token cross-entropy) of `model`, with the distillation machinery. */
export async function train(options: TrainOptions): Promise<TrainResult> {
  const { model } = options;
  return run(
    {
      kind: 'train',
      model,
      loss: 'ce',
      temperature: 1,
      ceWeight: 1,
      hiddenPairs: [],
      hiddenWeight: 0,
    },
    options,
  );
}

/**
 * Knowledge distillation: trains `student` (in place) to match `teacher`'s next-token distributions
 * (forward KL at temperature 1 by default, as Minitron), optionally with the next-token loss and an
 * intermediate hidden-state loss. The teacher runs forward only, on `teacherBackend`.
 */
export async function distill(options: DistillOptions): Promise<TrainResult> {
  const { student, teacher } = options;
  const loss = options.loss ?? 'kl';
  if (!['kl', 'ce', 'kl+ce'].includes(loss))
    throw new LineageError(`loss must be kl, ce or kl+ce, got '${String(loss)}'`);
  if (teacher.config.vocabSize !== student.config.vocabSize) {
    throw new LineageError(
      `the teacher and the student have different vocabularies (teacher ${teacher.config.vocabSize} tokens, student ${student.config.vocabSize}): distillation needs the same tokenizer`,
    );
  }
  if (teacher === student) throw new LineageError('the teacher and the student are the same model object');
  const teacherParams = new Set(namedParameters(teacher).values());
  for (const [name, p] of trainedParameters(student, options).trained) {
    if (teacherParams.has(p))
      throw new LineageError(
        `the student shares the parameter '${name}' with the teacher; training would change the teacher (copy the model first)`,
      );
  }
  const temperature = options.temperature ?? 1;
  positiveNumber(temperature, 'temperature');
  positiveNumber(options.ceWeight, 'ceWeight', true);
  const { hidden, note } = hiddenLoss(options, loss);
  const hiddenPairs = hidden ? layerPairs(student, teacher, hidden.layers) : [];
  positiveNumber(hidden ? hidden.weight : undefined, 'hidden loss weight', true);
  return run(
    {
      kind: 'distill',
      model: student,
      teacher,
      ...(options.teacherBackend ? { teacherBackend: options.teacherBackend } : {}),
      loss,
      temperature,
      ceWeight: options.ceWeight ?? 1,
      hiddenPairs,
      hiddenWeight: hidden?.weight ?? DEFAULTS.hiddenWeight,
      ...(note ? { notes: [note] } : {}),
    },
    options,
  );
}

/**
 * The hidden-state loss of a distillation: as given, or by default on where it applies (same width, a loss
 * that uses the teacher) and off where it cannot (different widths); the default's choice is logged.
 */
function hiddenLoss(
  options: DistillOptions,
  loss: DistillLoss,
): { hidden: HiddenLossOptions | undefined; note?: string } {
  if (options.hidden !== undefined) return { hidden: options.hidden || undefined };
  if (loss === 'ce') return { hidden: undefined };
  const s = options.student.config.hiddenSize;
  const t = options.teacher.config.hiddenSize;
  if (s !== t)
    return {
      hidden: undefined,
      note: `hidden-state loss off: the student's width (${s}) differs from the teacher's (${t})`,
    };
  return {
    hidden: { layers: 'uniform', weight: DEFAULTS.hiddenWeight },
    note: `hidden-state loss on (same width ${s}, uniform layer map, weight ${DEFAULTS.hiddenWeight}; hidden: false turns it off)`,
  };
}

/**
 * A run: checks the options, prepares data and evaluation, restores a checkpoint when resuming, then
 * steps until the budget is spent, early stopping, `stopAfter` or the abort signal (writing a checkpoint
 * when stopped, and every `checkpointEvery` steps).
 */
async function run(s: Setup, o: CommonTrainOptions): Promise<TrainResult> {
  const log = o.log ?? silentLogger;
  const progress = o.progress ?? silentProgress;
  const model = s.model;
  const who = s.kind === 'distill' ? 'the student' : 'the model';
  if (!model.tokenizer) throw new LineageError(`${who} has no tokenizer (pass --tokenizer)`);

  const plan = planBatches(s, o);
  const { seqLen, batchSize, stepTokens, totalSteps } = plan;
  const data = await prepareData(s, o, seqLen);
  const { sampler, ev } = data;

  // ---- backends, optimiser, config
  const backend = o.backend ?? (await getBackend());
  const teacherBackend = s.teacher ? (s.teacherBackend ?? (await getBackend())) : undefined;
  const needTeacher = !!s.teacher && (s.loss !== 'ce' || s.hiddenPairs.length > 0);
  const teacherStep: StepContext['teacher'] =
    needTeacher && teacherBackend
      ? { model: s.teacher!, ops: new Ops(teacherBackend), layers: s.hiddenPairs.map(([, b]) => b) }
      : undefined;
  const lossOptions: StepContext['loss'] = {
    loss: s.loss,
    temperature: s.temperature,
    ceWeight: s.ceWeight,
    hiddenWeight: s.hiddenWeight,
    studentLayers: s.hiddenPairs.map(([a]) => a),
  };
  let lr = o.lr;
  if (lr === 'auto') {
    const found = await lrRangeTest({
      model,
      step: {
        backend,
        teacher: teacherStep,
        loss: lossOptions,
        seqLen,
        batchSize,
        micro: plan.micro,
        clip: o.clip ?? DEFAULTS.clip,
      },
      options: o,
      weightDecay: o.weightDecay ?? DEFAULTS.weightDecay,
      betas: o.betas ?? DEFAULTS.betas,
      tokens: data.tokens,
      seed: data.seed,
      name: data.name,
      log,
      ...(o.lrRange ? { range: o.lrRange } : {}),
    });
    lr = found.lr;
  }
  const opt = planOptimizer(s, { ...o, ...(lr !== undefined ? { lr } : {}) }, totalSteps);
  const selection = trainedParameters(model, o);
  const { trained } = selection;
  if (!trained.size) throw new LineageError(`${who} has no trainable parameters`);
  const perParam = groupOptions(o.groups ?? [], selection, opt.lr);
  const optimizer = new AdamW(trained, {
    lr: opt.lr,
    weightDecay: opt.weightDecay,
    betas: opt.betas,
    ...(perParam.size ? { paramOptions: (name: string) => perParam.get(name) } : {}),
  });
  const regularizers = resolveRegularizers(o.regularizers ?? [], selection.all, trained);
  const config = {
    ...runConfig(s, o, plan, opt, data),
    ...selectionConfig(o, selection, perParam),
    ...regularizerConfig(regularizers),
  };

  // ---- checkpoint: validate everything before anything is written
  const ckptDir = o.checkpointDir;
  const snapshot: RunSnapshot = {
    kind: s.kind,
    model,
    optimizer,
    sampler,
    studentFingerprint: ckptDir ? modelFingerprint(model) : '',
    teacherFingerprint: ckptDir && s.teacher ? modelFingerprint(s.teacher) : null,
    config,
    backend,
  };
  const state = new TrainState();
  refuseExistingCheckpoint(ckptDir, o.resume, o.restart);
  if (ckptDir && o.resume) await resumeRun({ ...snapshot, dir: ckptDir, state, backend, log });
  const { resumedFrom } = state;
  const jsonl = o.logFile ? await JsonlLog.open(o.logFile, resumedFrom) : undefined;

  const flops = trainingFlops(model.config, seqLen);
  const teacherFlops = needTeacher ? trainingFlops(s.teacher!.config, seqLen).forward : 0;
  jsonl?.write({
    type: resumedFrom === undefined ? 'start' : 'resume',
    ...(resumedFrom === undefined ? {} : { step: resumedFrom }),
    time: new Date().toISOString(),
    backend: `${backend.name} (${backend.device})`,
    ...(teacherBackend ? { teacherBackend: `${teacherBackend.name} (${teacherBackend.device})` } : {}),
    data: data.name,
    evalData: ev?.name ?? null,
    config,
  });
  log.info(
    `${s.kind}: ${totalSteps} steps of ${batchSize}×${seqLen} tokens (${formatTokens(totalSteps * stepTokens)} of ${formatTokens(data.tokens.length)} data tokens), lr ${opt.lr} ${opt.schedule}, warmup ${opt.warmup}` +
      (resumedFrom !== undefined ? `; resuming at step ${resumedFrom}` : ''),
  );
  for (const note of s.notes ?? []) log.info(note);
  if (o.earlyStop && ev)
    log.info(
      `early stopping on ${ev.name}: evaluated every ${evalInterval(o, totalSteps)} steps, patience ${o.earlyStop.patience}`,
    );

  if (o.trainable !== undefined || o.groups?.length) {
    const values = (ps: Iterable<{ value: { size: number } }>) =>
      [...ps].reduce((n, p) => n + p.value.size, 0);
    log.info(
      `training ${trained.size} of ${selection.all.size} parameter tensors (${values(trained.values())} of ${values(selection.all.values())} values); the others stay unchanged`,
    );
  }
  const minDelta = o.earlyStop?.minDelta ?? 1e-3;
  const evalNow = () => evaluate(model, backend, ev!, state, minDelta, { log, jsonl, onEval: o.onEval });
  const checkpoint = async () => {
    if (!ckptDir || state.lastCheckpoint === state.step) return;
    await checkpointRun(ckptDir, snapshot, state);
    state.lastCheckpoint = state.step;
    jsonl?.write({ type: 'checkpoint', step: state.step, tokens: state.tokens, path: ckptDir });
    log.debug(`checkpoint at step ${state.step}: ${ckptDir}`);
  };
  const stepContext: StepContext = {
    backend,
    model,
    teacher: teacherStep,
    loss: lossOptions,
    params: [...trained.values()],
    regularizers,
    seqLen,
    batchSize,
    micro: plan.micro,
    clip: opt.clip,
    optimizer,
  };

  // ---- the loop
  let stopped: StopReason = 'budget';
  const logEvery = o.logEvery ?? DEFAULTS.logEvery;
  const evalEvery = evalInterval(o, totalSteps);
  progress.start(s.kind, totalSteps);
  if (state.step) progress.tick(state.step);
  try {
    if (ev && state.evals.length === 0) await evalNow();
    while (state.step < totalSteps) {
      // the backend's promises resolve as microtasks: yield to the event loop so signals (Ctrl-C), timers
      // and I/O are seen between steps
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (o.signal?.aborted) {
        stopped = 'interrupted';
        break;
      }
      if (o.stopAfter !== undefined && state.step >= o.stopAfter) {
        stopped = 'stop-after';
        break;
      }
      const t0 = performance.now();
      const lrNow = opt.sched(state.step);
      const r = await trainStep(stepContext, sampler.next(batchSize), lrNow);
      state.countStep(r.finite, stepTokens, r.loss, (performance.now() - t0) / 1000);
      const rec = stepRecord(s, state, totalSteps, stepTokens, lrNow, r);
      jsonl?.write(rec);
      o.onStep?.(rec);
      progress.tick(1, { loss: r.loss.toFixed(4), 'tok/s': Math.round(rec.tokensPerSecond) });
      const step = state.step;
      if (step === 1 || step === totalSteps || step % logEvery === 0 || !r.finite) log.info(formatStep(rec));
      if (ev && ((evalEvery && step % evalEvery === 0) || step === totalSteps)) {
        await evalNow();
        if (o.earlyStop && state.sinceBest >= o.earlyStop.patience && step < totalSteps) {
          log.info(
            `early stop at step ${step}: no held-out improvement in ${state.sinceBest} evaluations (best ppl ${Math.exp(state.bestNll!).toFixed(4)} at step ${state.bestStep})`,
          );
          stopped = 'early-stop';
          break;
        }
      }
      if (o.checkpointEvery && step % o.checkpointEvery === 0 && step < totalSteps) await checkpoint();
    }
    if ((stopped === 'interrupted' || stopped === 'stop-after') && o.checkpointOnStop !== false) {
      await checkpoint();
      log.info(
        `stopped at step ${state.step} of ${totalSteps}${ckptDir && state.lastCheckpoint === state.step ? `; checkpoint in ${ckptDir} (resume to continue)` : ''}`,
      );
    }
  } finally {
    progress.end();
  }
  const done = state.sessionSteps;
  const tokensPerSecond = done ? (done * stepTokens) / state.sessionSeconds : 0;
  const b = state.best();
  const result: TrainResult = {
    model,
    steps: state.step,
    totalSteps,
    tokens: state.tokens,
    stopped,
    loss: state.lastLoss,
    evals: state.evals,
    ...(b ? { best: b } : {}),
    ...(resumedFrom !== undefined ? { resumedFrom } : {}),
    skippedSteps: state.skipped,
    seconds: state.seconds,
    tokensPerSecond,
    flops: {
      student: flops.train,
      teacher: teacherFlops,
      gflopsPerSecond: (tokensPerSecond * (flops.train + teacherFlops)) / 1e9,
    },
    backend: `${backend.name} (${backend.device})`,
    ...(teacherBackend ? { teacherBackend: `${teacherBackend.name} (${teacherBackend.device})` } : {}),
    ...(ckptDir && state.lastCheckpoint >= 0 ? { checkpoint: ckptDir } : {}),
    dataTokens: data.tokens.length,
    dataEnd: sampler.state(),
    ...(ev ? { evalData: ev.name } : {}),
  };
  jsonl?.write({
    type: 'end',
    step: state.step,
    stopped,
    tokens: state.tokens,
    loss: state.lastLoss,
    seconds: result.seconds,
    tokensPerSecond,
    ...(b ? { bestPpl: b.ppl, bestStep: b.step } : {}),
  });
  log.info(
    `${s.kind} ${stopped === 'budget' ? 'done' : `stopped (${stopped})`}: ${state.step} steps, ${formatTokens(state.tokens)} tokens, ${formatDuration(result.seconds)}, ${Math.round(tokensPerSecond)} tok/s`,
  );
  return result;
}

/** The record of a step as logged, written to the JSONL log and given to `onStep`. */
function stepRecord(
  s: Setup,
  state: TrainState,
  totalSteps: number,
  stepTokens: number,
  lr: number,
  r: { loss: number; metrics: Record<string, number>; norm: number; finite: boolean },
): StepRecord {
  const m = r.metrics;
  const done = state.sessionSteps;
  return {
    type: 'step',
    step: state.step,
    totalSteps,
    tokens: state.tokens,
    loss: r.loss,
    ...(s.kind === 'distill' && m.kl !== undefined ? { kl: m.kl } : {}),
    ...(m.ce !== undefined ? { ce: m.ce } : {}),
    ...(m.hidden !== undefined ? { hidden: m.hidden } : {}),
    ...regularizerRecord(m),
    lr,
    gradNorm: r.norm,
    tokensPerSecond: (done * stepTokens) / state.sessionSeconds,
    seconds: state.seconds,
    eta: (state.sessionSeconds / done) * (totalSteps - state.step),
    ...(r.finite ? {} : { skipped: true }),
  };
}

/** The regularisers' terms among a step's metrics, as StepRecord.regularizers. */
function regularizerRecord(m: Record<string, number>): Pick<StepRecord, 'regularizers'> {
  const terms = Object.entries(m).filter(([k]) => k.startsWith(REGULARIZER_METRIC));
  return terms.length
    ? { regularizers: Object.fromEntries(terms.map(([k, v]) => [k.slice(REGULARIZER_METRIC.length), v])) }
    : {};
}
