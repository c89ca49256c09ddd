import { createHash } from 'node:crypto';
import {
  AdamW,
  type Backend,
  clipGradNorm,
  evalSequences,
  GradientAccumulator,
  getBackend,
  gradNorm,
  type HostTensor,
  LineageError,
  type LlamaModel,
  type Logger,
  lrSchedule,
  modelFingerprint,
  namedParameters,
  Ops,
  type Parameter,
  type PerplexityOptions,
  type Progress,
  perplexity,
  silentLogger,
  silentProgress,
  type Tensor,
  valueAndGrad,
} from '@lineage/core';
import {
  applyWeights,
  type CheckpointState,
  configMismatch,
  type EvalRecord,
  hasCheckpoint,
  type RunConfig,
  readCheckpoint,
  saveCheckpoint,
} from './checkpoint.js';
import {
  type DataInput,
  holdOut,
  loadSources,
  type SamplerState,
  tokenizeSources,
  tokensHash,
  WindowSampler,
} from './data.js';
import { trainingFlops } from './flops.js';
import { formatDuration, formatStep, formatTokens, JsonlLog, type StepRecord } from './log.js';
import {
  type DistillLoss,
  type ForwardCapture,
  forwardCapture,
  type HiddenLossOptions,
  layerPairs,
  stepLoss,
} from './losses.js';

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
  /** Peak learning rate (default 1e-4 for distill as Minitron, 3e-4 for train). */
  lr?: number;
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
  /** Intermediate hidden-state loss through a layer mapping (for depth-pruned students). */
  hidden?: HiddenLossOptions;
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

const DEFAULTS = {
  seqLen: 256,
  batchSize: 8,
  lrDistill: 1e-4,
  lrTrain: 3e-4,
  weightDecay: 0.01,
  betas: [0.9, 0.95] as [number, number],
  clip: 1,
  logEvery: 10,
};

interface Setup {
  kind: 'train' | 'distill';
  model: LlamaModel;
  teacher?: LlamaModel;
  teacherBackend?: Backend;
  loss: DistillLoss;
  temperature: number;
  ceWeight: number;
  hiddenPairs: [number, number][];
  hiddenWeight: number;
}

function positiveInt(v: number | undefined, name: string, min = 1): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= min))
    throw new LineageError(`${name} must be an integer ≥ ${min}, got ${v}`);
}

function positiveNumber(v: number | undefined, name: string, allowZero = false): void {
  if (v !== undefined && !(Number.isFinite(v) && (allowZero ? v >= 0 : v > 0)))
    throw new LineageError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${v}`);
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
  for (const [name, p] of namedParameters(student)) {
    if (teacherParams.has(p) && p.trainable)
      throw new LineageError(
        `the student shares the parameter '${name}' with the teacher; training would change the teacher (copy the model first)`,
      );
  }
  const temperature = options.temperature ?? 1;
  positiveNumber(temperature, 'temperature');
  positiveNumber(options.ceWeight, 'ceWeight', true);
  const hiddenPairs = options.hidden ? layerPairs(student, teacher, options.hidden.layers) : [];
  positiveNumber(options.hidden?.weight, 'hidden loss weight', true);
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
      hiddenWeight: options.hidden?.weight ?? 1,
    },
    options,
  );
}

/** Checks that the teacher tokenizes text as the student does (same vocabulary size is not enough). */
function checkTokenizers(student: LlamaModel, teacher: LlamaModel, sample: string): void {
  const a = student.tokenizer;
  const b = teacher.tokenizer;
  if (!a || !b) return;
  const probe = sample.slice(0, 2000);
  const x = a.encode(probe, { bos: true });
  const y = b.encode(probe, { bos: true });
  if (x.length !== y.length || x.some((v, i) => v !== y[i]))
    throw new LineageError(
      `the teacher (${b.source}) and the student (${a.source}) tokenize the data differently: distillation needs the same tokenizer`,
    );
}

interface EvalSetup {
  text: string;
  options: PerplexityOptions;
  name: string;
  hash: string;
}

async function evalSetup(
  o: CommonTrainOptions,
  model: LlamaModel,
  seqLen: number,
  heldOut: { docs: string[]; separator: string; from: string } | undefined,
): Promise<EvalSetup | undefined> {
  const common = {
    ...(o.evalLimit ? { limit: o.evalLimit } : {}),
    batchSize: o.evalBatchSize ?? 8,
  };
  let text: string;
  let options: PerplexityOptions;
  let name: string;
  if (o.evalData) {
    const sources = await loadSources(o.evalData, 'evaluation data');
    const sep = sources[0]!.separator;
    if (sources.some((s) => s.separator !== sep))
      throw new LineageError('evaluation sources must all have the same document separator, or none');
    name = sources.map((s) => s.name).join(' + ');
    if (sep) {
      text = sources.flatMap((s) => s.documents).join(`\n${sep}\n`);
      options = {
        protocol: 'documents',
        separator: sep,
        seqLen: o.evalSeqLen ?? model.config.maxPositions,
        ...common,
      };
    } else {
      text = sources.flatMap((s) => s.documents).join('\n\n');
      options = { protocol: 'stream', seqLen: o.evalSeqLen ?? seqLen, ...common };
    }
  } else if (heldOut) {
    text = heldOut.docs.join(`\n${heldOut.separator}\n`);
    name = heldOut.from;
    options = {
      protocol: 'documents',
      separator: heldOut.separator,
      seqLen: o.evalSeqLen ?? model.config.maxPositions,
      ...common,
    };
  } else return undefined;
  const hash = `sha256:${createHash('sha256').update(text).digest('hex')}`;
  return { text, options, name, hash };
}

/** Moves the teacher's outputs to the student's backend (a no-op when they share one). */
async function transfer(ops: Ops, t: Tensor, to: Backend): Promise<Tensor> {
  if (t.backend === to) return t;
  const data = await ops.read(t);
  ops.dispose(t);
  return to.upload(data instanceof Float32Array ? data : Float32Array.from(data), t.shape);
}

async function run(s: Setup, o: CommonTrainOptions): Promise<TrainResult> {
  const log = o.log ?? silentLogger;
  const progress = o.progress ?? silentProgress;
  const model = s.model;
  const who = s.kind === 'distill' ? 'the student' : 'the model';
  if (!model.tokenizer) throw new LineageError(`${who} has no tokenizer (pass --tokenizer)`);

  // ---- options
  if (!(typeof o.tokens === 'number' && Number.isFinite(o.tokens) && o.tokens >= 0))
    throw new LineageError(`the token budget must be a number of tokens, got ${String(o.tokens)}`);
  positiveInt(o.seqLen, 'seqLen', 2);
  positiveInt(o.batchSize, 'batchSize');
  positiveInt(o.microBatchSize, 'microBatchSize');
  positiveNumber(o.lr, 'lr');
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
  const batchSize = o.batchSize ?? DEFAULTS.batchSize;
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

  // ---- data
  let sources = await loadSources(o.data);
  let heldOut: { docs: string[]; separator: string; from: string } | undefined;
  if (o.holdout) {
    if (o.evalData) throw new LineageError('give either evaluation data or a holdout, not both');
    const h = holdOut(sources, o.holdout);
    sources = h.train;
    heldOut = { docs: h.heldOut, separator: h.separator, from: h.from };
  }
  if (s.teacher) checkTokenizers(model, s.teacher, sources[0]!.documents[0]!);
  const tokens = tokenizeSources(sources, model.tokenizer);
  const dataName = sources.map((x) => x.name).join(' + ');
  const seed = o.seed ?? 0;
  const sampler = new WindowSampler(tokens, seqLen, seed, dataName);
  if (o.dataStart) sampler.load(o.dataStart);
  const ev = await evalSetup(o, model, seqLen, heldOut);
  if (ev) {
    // fail now, not after the first steps, on evaluation data that yields no sequence
    evalSequences(model, ev.text, ev.options, ev.name);
  }

  // ---- backends, optimiser, config
  const backend = o.backend ?? (await getBackend());
  const teacherBackend = s.teacher ? (s.teacherBackend ?? (await getBackend())) : undefined;
  const lr = o.lr ?? (s.kind === 'distill' ? DEFAULTS.lrDistill : DEFAULTS.lrTrain);
  const minLr = o.schedule === 'constant' ? lr : (o.minLr ?? lr / 10);
  const warmup = o.warmup ?? Math.min(100, Math.floor(totalSteps / 20));
  if (warmup > totalSteps) throw new LineageError(`warmup (${warmup} steps) exceeds the ${totalSteps} steps`);
  const schedule = o.schedule ?? 'cosine';
  const sched = lrSchedule({ lr, minLr, warmupSteps: warmup, totalSteps, decay: schedule });
  const weightDecay = o.weightDecay ?? DEFAULTS.weightDecay;
  const betas = o.betas ?? DEFAULTS.betas;
  const clip = o.clip ?? DEFAULTS.clip;
  const params = namedParameters(model);
  const trainable = [...params.values()].filter((p) => p.trainable);
  if (!trainable.length) throw new LineageError(`${who} has no trainable parameters`);
  const opt = new AdamW(params, { lr, weightDecay, betas });
  const studentLayers = s.hiddenPairs.map(([a]) => a);
  const teacherLayers = s.hiddenPairs.map(([, b]) => b);
  const needTeacher = !!s.teacher && (s.loss !== 'ce' || s.hiddenPairs.length > 0);
  const config: RunConfig = {
    kind: s.kind,
    seqLen,
    batchSize,
    microBatchSize: micro,
    tokens: o.tokens,
    totalSteps,
    lr,
    minLr,
    warmup,
    schedule,
    weightDecay,
    betas: [...betas],
    clip,
    seed,
    // recorded only when given, so checkpoints of runs from the start keep resuming
    ...(o.dataStart ? { dataStart: [o.dataStart.epoch, o.dataStart.cursor] } : {}),
    data: tokensHash(tokens),
    dataTokens: tokens.length,
    loss: s.kind === 'distill' ? s.loss : 'lm',
    temperature: s.temperature,
    ceWeight: s.ceWeight,
    hidden: s.hiddenPairs.map(([a, b]) => [a, b]),
    hiddenWeight: s.hiddenWeight,
    evalData: ev?.hash ?? null,
    evalEvery: o.evalEvery ?? null,
    evalSeqLen: ev?.options.seqLen ?? null,
    evalLimit: o.evalLimit ?? null,
    earlyStopPatience: o.earlyStop?.patience ?? null,
    earlyStopMinDelta: o.earlyStop ? (o.earlyStop.minDelta ?? 1e-3) : null,
  };

  // ---- checkpoint: validate everything before anything is written
  const ckptDir = o.checkpointDir;
  const studentFingerprint = ckptDir ? modelFingerprint(model) : '';
  const teacherFingerprint = ckptDir && s.teacher ? modelFingerprint(s.teacher) : null;
  let step = 0;
  let tokensSeen = 0;
  let evals: EvalRecord[] = [];
  let bestNll: number | null = null;
  let bestStep: number | null = null;
  let sinceBest = 0;
  let skipped = 0;
  let priorSeconds = 0;
  let resumedFrom: number | undefined;
  let lastCheckpoint = -1;
  if (ckptDir && !o.resume && !o.restart && hasCheckpoint(ckptDir)) {
    throw new LineageError(
      'holds a checkpoint of an earlier run: resume it (--resume) or start over (--restart)',
      ckptDir,
    );
  }
  if (ckptDir && o.resume) {
    const ck = await readCheckpoint(ckptDir);
    const st = ck.state;
    if (st.kind !== s.kind)
      throw new LineageError(`is a checkpoint of a '${st.kind}' run, not '${s.kind}'`, ckptDir);
    if (st.studentFingerprint !== studentFingerprint) {
      throw new LineageError(
        `was made from a different ${s.kind === 'distill' ? 'student' : 'model'} (fingerprint ${st.studentFingerprint.slice(0, 19)}…, this one is ${studentFingerprint.slice(0, 19)}…)`,
        ckptDir,
      );
    }
    if (st.teacherFingerprint !== teacherFingerprint) {
      throw new LineageError(
        `was made with a different teacher (fingerprint ${String(st.teacherFingerprint).slice(0, 19)}…, this one is ${String(teacherFingerprint).slice(0, 19)}…)`,
        ckptDir,
      );
    }
    const diff = configMismatch(st.config, config);
    if (diff) throw new LineageError(`was made with different settings: ${diff}`, ckptDir);
    const before = new Map<Parameter, HostTensor>([...params.values()].map((p) => [p, p.value]));
    try {
      applyWeights(model, ck.weights, ckptDir);
      if (modelFingerprint(model) !== st.weightsFingerprint)
        throw new LineageError(
          'weights do not match the fingerprint recorded with them (corrupt checkpoint)',
          ckptDir,
        );
      opt.loadState(ck.optimizer);
      sampler.load(st.sampler);
    } catch (e) {
      for (const [p, v] of before) p.value = v;
      if (e instanceof LineageError) throw e;
      throw new LineageError(`cannot restore: ${(e as Error).message}`, ckptDir);
    }
    step = st.step;
    tokensSeen = st.tokens;
    evals = st.evals;
    bestNll = st.early.bestNll;
    bestStep = st.early.bestStep;
    sinceBest = st.early.sinceBest;
    skipped = st.skippedSteps;
    priorSeconds = st.seconds;
    resumedFrom = step;
    lastCheckpoint = step;
    if (st.backend.name !== backend.name || st.backend.device !== backend.device)
      log.warn(
        `checkpoint was written on ${st.backend.name} (${st.backend.device}); resuming on ${backend.name} (${backend.device})`,
      );
  }
  const jsonl = o.logFile ? await JsonlLog.open(o.logFile, resumedFrom) : undefined;

  const flops = trainingFlops(model.config, seqLen);
  const teacherFlops = needTeacher ? trainingFlops(s.teacher!.config, seqLen).forward : 0;
  jsonl?.write({
    type: resumedFrom === undefined ? 'start' : 'resume',
    ...(resumedFrom === undefined ? {} : { step: resumedFrom }),
    time: new Date().toISOString(),
    backend: `${backend.name} (${backend.device})`,
    ...(teacherBackend ? { teacherBackend: `${teacherBackend.name} (${teacherBackend.device})` } : {}),
    data: dataName,
    evalData: ev?.name ?? null,
    config,
  });
  log.info(
    `${s.kind}: ${totalSteps} steps of ${batchSize}×${seqLen} tokens (${formatTokens(totalSteps * stepTokens)} of ${formatTokens(tokens.length)} data tokens), lr ${lr} ${schedule}, warmup ${warmup}` +
      (resumedFrom !== undefined ? `; resuming at step ${resumedFrom}` : ''),
  );

  // ---- evaluation
  /** The best evaluation as early stopping counts it (improvements smaller than minDelta do not count). */
  const best = (): EvalRecord | undefined => evals.find((e) => e.step === bestStep);
  const evaluate = async (): Promise<EvalRecord> => {
    const r = await perplexity(model, backend, ev!.text, ev!.options, ev!.name);
    const rec: EvalRecord = { step, tokens: tokensSeen, ppl: r.ppl, nll: r.nll, scored: r.tokens };
    evals.push(rec);
    const minDelta = o.earlyStop?.minDelta ?? 1e-3;
    if (bestNll === null || r.nll < bestNll - minDelta) {
      bestNll = r.nll;
      bestStep = step;
      sinceBest = 0;
    } else sinceBest++;
    jsonl?.write({ type: 'eval', ...rec, best: bestStep === step });
    log.info(
      `eval step ${step}: ppl ${r.ppl.toFixed(4)} (nll ${r.nll.toFixed(4)}, ${r.tokens} tokens of ${ev!.name})${bestStep === step ? '' : `; best ${Math.exp(bestNll).toFixed(4)} at step ${bestStep}`}`,
    );
    o.onEval?.(rec);
    return rec;
  };

  // ---- checkpointing
  let sessionSeconds = 0;
  const checkpoint = async () => {
    if (!ckptDir || lastCheckpoint === step) return;
    const state: CheckpointState = {
      format: 'lineage-train-checkpoint',
      version: 1,
      kind: s.kind,
      step,
      tokens: tokensSeen,
      sampler: sampler.state(),
      studentFingerprint,
      teacherFingerprint,
      weightsFingerprint: modelFingerprint(model),
      config,
      evals,
      early: { bestNll, bestStep, sinceBest },
      skippedSteps: skipped,
      seconds: priorSeconds + sessionSeconds,
      backend: { name: backend.name, device: backend.device },
    };
    await saveCheckpoint(ckptDir, model, opt.state(), state);
    lastCheckpoint = step;
    jsonl?.write({ type: 'checkpoint', step, tokens: tokensSeen, path: ckptDir });
    log.debug(`checkpoint at step ${step}: ${ckptDir}`);
  };

  // ---- the loop
  let stopped: StopReason = 'budget';
  let lastLoss = Number.NaN;
  let consecutiveSkips = 0;
  const sessionStartStep = step;
  const logEvery = o.logEvery ?? DEFAULTS.logEvery;
  const teacherOps = teacherBackend ? new Ops(teacherBackend) : undefined;
  progress.start(s.kind, totalSteps);
  if (step) progress.tick(step);
  try {
    if (ev && evals.length === 0) await evaluate();
    while (step < totalSteps) {
      // the backend's promises resolve as microtasks: yield to the event loop so signals (Ctrl-C), timers
      // and I/O are seen between steps
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (o.signal?.aborted) {
        stopped = 'interrupted';
        break;
      }
      if (o.stopAfter !== undefined && step >= o.stopAfter) {
        stopped = 'stop-after';
        break;
      }
      const t0 = performance.now();
      const batch = sampler.next(batchSize);
      const L = seqLen + 1;
      const acc = new GradientAccumulator();
      let grads: Map<Parameter, Float32Array> | undefined;
      let lossSum = 0;
      const metricSums: Record<string, number> = {};
      for (let r0 = 0; r0 < batchSize; r0 += micro) {
        const rows = Math.min(micro, batchSize - r0);
        const ids = new Int32Array(rows * seqLen);
        const targets = new Int32Array(rows * seqLen);
        for (let b = 0; b < rows; b++) {
          const w = batch.subarray((r0 + b) * L, (r0 + b + 1) * L);
          ids.set(w.subarray(0, seqLen), b * seqLen);
          targets.set(w.subarray(1), b * seqLen);
        }
        let teacherOut: ForwardCapture | undefined;
        if (needTeacher) {
          const tops = teacherOps!;
          const t = await tops.tidy(() => forwardCapture(tops, s.teacher!, ids, rows, teacherLayers));
          teacherOut = {
            logits: await transfer(tops, t.logits, backend),
            hidden: await Promise.all(t.hidden.map((h) => transfer(tops, h, backend))),
          };
        }
        try {
          const r = await valueAndGrad(
            backend,
            (g) =>
              stepLoss(g, model, ids, targets, rows, teacherOut, {
                loss: s.loss,
                temperature: s.temperature,
                ceWeight: s.ceWeight,
                hiddenWeight: s.hiddenWeight,
                studentLayers,
              }),
            params.values(),
          );
          const w = rows / batchSize;
          lossSum += r.loss * w;
          for (const [k, v] of Object.entries(r.metrics)) metricSums[k] = (metricSums[k] ?? 0) + v * w;
          if (rows === batchSize) grads = r.grads;
          else acc.add(r.grads, rows);
        } finally {
          if (teacherOut) backend.dispose(teacherOut.logits);
          for (const h of teacherOut?.hidden ?? []) backend.dispose(h);
        }
      }
      grads ??= acc.take();
      const norm = clip > 0 ? clipGradNorm(grads, clip) : gradNorm(grads);
      const lrNow = sched(step);
      const finite = Number.isFinite(norm) && Number.isFinite(lossSum);
      if (finite) {
        opt.step(grads, lrNow);
        consecutiveSkips = 0;
      } else {
        skipped++;
        consecutiveSkips++;
        if (consecutiveSkips >= 10)
          throw new LineageError(
            `training diverged: ${consecutiveSkips} consecutive steps with a non-finite loss or gradient (lower the learning rate)`,
          );
      }
      step++;
      tokensSeen += stepTokens;
      lastLoss = lossSum;
      sessionSeconds += (performance.now() - t0) / 1000;
      const done = step - sessionStartStep;
      const rec: StepRecord = {
        type: 'step',
        step,
        totalSteps,
        tokens: tokensSeen,
        loss: lossSum,
        ...(s.kind === 'distill' && metricSums.kl !== undefined ? { kl: metricSums.kl } : {}),
        ...(metricSums.ce !== undefined ? { ce: metricSums.ce } : {}),
        ...(metricSums.hidden !== undefined ? { hidden: metricSums.hidden } : {}),
        lr: lrNow,
        gradNorm: norm,
        tokensPerSecond: (done * stepTokens) / sessionSeconds,
        seconds: priorSeconds + sessionSeconds,
        eta: (sessionSeconds / done) * (totalSteps - step),
        ...(finite ? {} : { skipped: true }),
      };
      jsonl?.write(rec);
      o.onStep?.(rec);
      progress.tick(1, { loss: lossSum.toFixed(4), 'tok/s': Math.round(rec.tokensPerSecond) });
      if (step === 1 || step === totalSteps || step % logEvery === 0 || !finite) log.info(formatStep(rec));
      if (ev && ((o.evalEvery && step % o.evalEvery === 0) || step === totalSteps)) {
        await evaluate();
        if (o.earlyStop && sinceBest >= o.earlyStop.patience && step < totalSteps) {
          log.info(
            `early stop at step ${step}: no held-out improvement in ${sinceBest} evaluations (best ppl ${Math.exp(bestNll!).toFixed(4)} at step ${bestStep})`,
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
        `stopped at step ${step} of ${totalSteps}${ckptDir && lastCheckpoint === step ? `; checkpoint in ${ckptDir} (resume to continue)` : ''}`,
      );
    }
  } finally {
    progress.end();
  }
  const done = step - sessionStartStep;
  const tokensPerSecond = done ? (done * stepTokens) / sessionSeconds : 0;
  const b = best();
  const result: TrainResult = {
    model,
    steps: step,
    totalSteps,
    tokens: tokensSeen,
    stopped,
    loss: lastLoss,
    evals,
    ...(b ? { best: b } : {}),
    ...(resumedFrom !== undefined ? { resumedFrom } : {}),
    skippedSteps: skipped,
    seconds: priorSeconds + sessionSeconds,
    tokensPerSecond,
    flops: {
      student: flops.train,
      teacher: teacherFlops,
      gflopsPerSecond: (tokensPerSecond * (flops.train + teacherFlops)) / 1e9,
    },
    backend: `${backend.name} (${backend.device})`,
    ...(teacherBackend ? { teacherBackend: `${teacherBackend.name} (${teacherBackend.device})` } : {}),
    ...(ckptDir && lastCheckpoint >= 0 ? { checkpoint: ckptDir } : {}),
    dataTokens: tokens.length,
    dataEnd: sampler.state(),
    ...(ev ? { evalData: ev.name } : {}),
  };
  jsonl?.write({
    type: 'end',
    step,
    stopped,
    tokens: tokensSeen,
    loss: lastLoss,
    seconds: result.seconds,
    tokensPerSecond,
    ...(b ? { bestPpl: b.ppl, bestStep: b.step } : {}),
  });
  log.info(
    `${s.kind} ${stopped === 'budget' ? 'done' : `stopped (${stopped})`}: ${step} steps, ${formatTokens(tokensSeen)} tokens, ${formatDuration(result.seconds)}, ${Math.round(tokensPerSecond)} tok/s`,
  );
  return result;
}
