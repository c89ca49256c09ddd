import { existsSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { LineageError, type LlamaModel, type Logger, loadModel, saveModel, TextDataset } from '@lineage/core';
import type { CommonTrainOptions, Schedule, TrainResult } from '@lineage/distill';
import { DEFAULTS, l1, train, trySplitValidation } from '@lineage/distill';
import { type Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { selectBackend } from '../backend.js';
import { log, printJson } from '../output.js';
import {
  checkNoOverlap,
  checkOutput,
  checkRunDir,
  type Input,
  modelOutputKind,
  tokenizerInput,
} from '../output-policy.js';
import {
  addBackendOptions,
  addJsonOption,
  addModelOptions,
  checkBatchFits,
  checkBudget,
  checkHoldout,
  checkSeqLen,
  parseFieldName,
  parseFloatArg,
  parseIntArg,
  parseLr,
  parseSeparator,
  requireContext,
  UsageError,
} from './common.js';
import { type Interrupt, onInterrupt } from './interrupt.js';

/** Flags shared by `train` and `distill`. */
export interface TrainingFlags {
  data?: string[];
  docSeparator?: string;
  field?: string;
  tokens: number;
  out: string;
  seqLen?: number;
  batchSize?: number;
  microBatch?: number;
  lr?: number | 'auto';
  minLr?: number;
  warmup?: number;
  schedule?: Schedule;
  weightDecay?: number;
  clip?: number;
  train?: string[];
  l1?: number;
  seed: number;
  evalData?: string;
  holdout?: number;
  evalEvery?: number;
  evalLimit?: number;
  evalSeqLen?: number;
  /** Patience; false (--no-early-stop) turns the default early stopping off. */
  earlyStop?: number | false;
  minDelta?: number;
  runDir?: string;
  checkpointEvery?: number;
  resume?: boolean;
  restart?: boolean;
  stopAfter?: number;
  keepCheckpoint?: boolean;
  logEvery?: number;
  dtype?: 'f32' | 'f16' | 'bf16';
  force?: boolean;
  tokenizer?: string;
  backend?: string;
  device?: string;
  json?: boolean;
}

/** A token count: an integer, optionally with a k/M/B suffix or in exponent form (300k, 1.5M, 1e6). */
export function parseTokens(v: string): number {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)([kKmMbB]?)$/.exec(v.trim());
  const n = m ? Number(m[1]) * ({ k: 1e3, m: 1e6, b: 1e9 }[m[2]!.toLowerCase()] ?? 1) : Number.NaN;
  if (!Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError(`must be a number of tokens like 300000, 300k or 1.5M, got '${v}'`);
  return Math.round(n);
}

/** Comma-separated parameter-name globs (`layers.2.mlp.*,model.norm.weight`). */
export function parseGlobs(v: string): string[] {
  const globs = v.split(',').map((g) => g.trim());
  if (globs.some((g) => !g))
    throw new InvalidArgumentError(
      `must be comma-separated parameter-name globs like layers.2.mlp.*, got '${v}'`,
    );
  return globs;
}

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

/** Adds the data, budget, schedule, evaluation, checkpoint and output options. */
export function addTrainingOptions(cmd: Command): Command {
  cmd
    .option(
      '--data <path>',
      'training text: a text or JSONL file or a directory of them (repeat for several, used in order)',
      collect,
    )
    .option(
      '--doc-separator <s>',
      'documents are separated by lines equal to <s> (each gets BOS)',
      parseSeparator,
    )
    .option('--field <name>', 'JSONL data: the field holding each record’s text', parseFieldName, 'text')
    .requiredOption(
      '--tokens <n>',
      'training budget in tokens (e.g. 300k): steps = tokens / (batch × seq-len)',
      parseTokens,
    )
    .requiredOption(
      '--out <dir>',
      'where to write the trained model (Hugging Face directory, or a .bin for llama2.c)',
    )
    .option('--seq-len <n>', 'tokens per training sequence (default: min(256, context))', parseIntArg(2))
    .option(
      '--batch-size <n>',
      'sequences per optimiser step (default: 8, fewer when the budget buys under 256 steps of 8)',
      parseIntArg(),
    )
    .option(
      '--micro-batch <n>',
      'sequences per forward/backward pass; gradients accumulate (default: batch)',
      parseIntArg(),
    )
    .option(
      '--lr <x>',
      'peak learning rate (default: from the width, 1e-4·(4096/width)^0.72 to distill, 3× that to train; docs/training-defaults.md); auto: a range test on a copy picks it',
      parseLr,
    )
    .option('--min-lr <x>', 'final learning rate of the decay (default lr/10)', parseFloatArg(0, 10))
    .option('--warmup <steps>', 'linear warmup steps (default min(100, steps/20))', parseIntArg(0))
    .addOption(
      new Option('--schedule <s>', 'learning-rate decay after warmup (default cosine)').choices([
        'cosine',
        'linear',
        'constant',
      ]),
    )
    .option('--weight-decay <x>', 'AdamW weight decay (default 0.01)', parseFloatArg(0, 10))
    .option('--clip <x>', 'clip the gradient norm (default 1; 0 disables)', parseFloatArg(0, 1e9))
    .option(
      '--train <globs>',
      'train only the parameters whose names match these comma-separated globs (e.g. layers.2.mlp.*); the others stay unchanged',
      parseGlobs,
    )
    .option('--l1 <weight>', 'add an L1 penalty weight·Σ|w| on the trained parameters', parseFloatArg(0, 1e6))
    .option('--seed <n>', 'data sampling seed: a run is reproducible from it', parseIntArg(0), 0)
    .option(
      '--eval-data <file>',
      'held-out text: perplexity (documents protocol when it holds --doc-separator)',
    )
    .option(
      '--holdout <n>',
      'hold out the last n documents of the last --data file for evaluation',
      parseIntArg(),
    )
    .option(
      '--eval-every <n>',
      'evaluate every n steps (always before the first and after the last)',
      parseIntArg(),
    )
    .option('--eval-limit <n>', 'evaluate at most n documents or windows', parseIntArg())
    .option(
      '--eval-seq-len <n>',
      'evaluation truncation/window length (default: context / seq-len)',
      parseIntArg(2),
    )
    .option(
      '--early-stop <patience>',
      `stop after <patience> evaluations without held-out improvement (default ${DEFAULTS.patience}; without --eval-data or --holdout, on the last ${DEFAULTS.validationFraction * 100}% of the last --data file, split off)`,
      parseIntArg(),
    )
    .option('--no-early-stop', 'train the whole budget: no validation split, no early stopping')
    .option(
      '--min-delta <nats>',
      'smallest held-out NLL improvement that counts (default 1e-3)',
      parseFloatArg(0, 10),
    )
    .option('--run-dir <dir>', 'checkpoint and JSONL log of the run (default: <out>.run)')
    .option('--checkpoint-every <n>', 'write a checkpoint every n steps (default 200)', parseIntArg())
    .option('--resume', 'continue the run from the checkpoint in the run directory')
    .option('--restart', 'discard a checkpoint in the run directory and start over')
    .option(
      '--stop-after <steps>',
      'stop after this many steps with a checkpoint (resume later)',
      parseIntArg(),
    )
    .option('--keep-checkpoint', 'keep the checkpoint after the run finished (default: removed)')
    .option('--log-every <n>', 'print a progress line every n steps (default 10)', parseIntArg())
    .addOption(
      new Option('--dtype <dtype>', 'float type of the saved weights (default f32)').choices([
        'f32',
        'f16',
        'bf16',
      ]),
    )
    .option('--force', 'replace an existing --out');
  addModelOptions(cmd);
  addBackendOptions(cmd);
  addJsonOption(cmd);
  return cmd;
}

function stderrLogger(): Logger {
  return { info: log, warn: (m) => log(`warning: ${m}`), debug: () => {} };
}

/** Training or evaluation data: only files that hold the separator have documents; others are one stream. */
function openData(path: string, o: TrainingFlags): Promise<TextDataset> {
  return TextDataset.open(path, {
    ...(o.docSeparator ? { separator: o.docSeparator, separatorIfFound: true } : {}),
    ...(o.field ? { field: o.field } : {}),
  });
}

export interface PreparedRun {
  options: Omit<CommonTrainOptions, 'backend'>;
  runDir: string;
  checkpointDir: string;
  /** Ctrl-C stops training after its step, with a checkpoint (interrupt.ts, shared with compress and family). */
  interrupt: Interrupt;
  /** Removes the SIGINT handler. */
  dispose(): void;
}

/** Checks the output and resolves data, evaluation and run-directory options (before any model is loaded). */
export async function prepareRun(o: TrainingFlags, models: readonly Input[]): Promise<PreparedRun> {
  if (!o.data?.length) throw new LineageError('give training data: --data <file>');
  const out = resolve(o.out);
  if (o.resume && o.restart) throw new LineageError('--resume and --restart exclude each other');
  const runDirOf = resolve(o.runDir ?? `${out}.run`);
  const inputs: Input[] = [
    ...models,
    ...o.data.map((path) => ({ path, what: '--data' })),
    { path: o.evalData, what: '--eval-data' },
  ];
  const runDirShown = o.runDir ?? `${o.out}.run`;
  checkOutput({
    path: o.out,
    kind: modelOutputKind(o.out),
    force: o.force,
    inputs: [...inputs, { path: runDirShown, what: 'the run directory' }],
  });
  checkRunDir(runDirShown, inputs);
  if (o.microBatch !== undefined && o.batchSize !== undefined && o.microBatch > o.batchSize)
    throw new UsageError('--micro-batch', o.microBatch, `must not exceed --batch-size ${o.batchSize}`);
  if (typeof o.lr === 'number' && o.minLr !== undefined && o.minLr > o.lr)
    throw new UsageError('--min-lr', o.minLr, `must not exceed --lr ${o.lr}`);
  if (o.holdout !== undefined && o.evalData)
    throw new UsageError('--holdout', o.holdout, 'give either --eval-data or --holdout, not both');
  let data = await Promise.all(o.data.map((d) => openData(d, o)));
  checkHoldout(o.holdout, data);
  let evalData = o.evalData ? await openData(o.evalData, o) : undefined;
  if (!evalData && !o.holdout && o.earlyStop !== false) {
    // early stopping by default: a validation part of the training data, split off before training
    // data too small to split trains without early stopping (the run's log says when it is on)
    const split = trySplitValidation(data, () => {});
    if (split) {
      data = split.train;
      evalData = split.validation;
    }
  }
  const earlyStop =
    o.earlyStop === false || !(evalData || o.holdout) ? undefined : (o.earlyStop ?? DEFAULTS.patience);
  const runDir = runDirOf;
  const checkpointDir = resolve(runDir, 'checkpoint');
  const interrupt = onInterrupt();
  const options: Omit<CommonTrainOptions, 'backend'> = {
    data,
    tokens: o.tokens,
    ...(o.seqLen ? { seqLen: o.seqLen } : {}),
    ...(o.batchSize ? { batchSize: o.batchSize } : {}),
    ...(o.microBatch ? { microBatchSize: o.microBatch } : {}),
    ...(o.lr !== undefined ? { lr: o.lr } : {}),
    ...(o.minLr !== undefined ? { minLr: o.minLr } : {}),
    ...(o.warmup !== undefined ? { warmup: o.warmup } : {}),
    ...(o.schedule ? { schedule: o.schedule } : {}),
    ...(o.weightDecay !== undefined ? { weightDecay: o.weightDecay } : {}),
    ...(o.clip !== undefined ? { clip: o.clip } : {}),
    ...(o.train ? { trainable: o.train } : {}),
    ...(o.l1 ? { regularizers: [l1(o.l1)] } : {}),
    seed: o.seed,
    ...(evalData ? { evalData } : {}),
    ...(o.holdout ? { holdout: o.holdout } : {}),
    ...(o.evalEvery ? { evalEvery: o.evalEvery } : {}),
    ...(o.evalLimit ? { evalLimit: o.evalLimit } : {}),
    ...(o.evalSeqLen ? { evalSeqLen: o.evalSeqLen } : {}),
    ...(earlyStop
      ? {
          earlyStop: { patience: earlyStop, ...(o.minDelta !== undefined ? { minDelta: o.minDelta } : {}) },
        }
      : {}),
    checkpointDir,
    checkpointEvery: o.checkpointEvery ?? 200,
    resume: o.resume ?? false,
    restart: o.restart ?? false,
    ...(o.stopAfter ? { stopAfter: o.stopAfter } : {}),
    signal: interrupt.signal,
    logFile: resolve(runDir, 'log.jsonl'),
    logEvery: o.logEvery ?? 10,
    log: stderrLogger(),
  };
  return { options, runDir, checkpointDir, interrupt, dispose: interrupt.dispose };
}

/** Saves the trained model (unless the run stopped early for a later resume) and prints the summary. */
export async function finishRun(
  o: TrainingFlags,
  run: PreparedRun,
  model: LlamaModel,
  r: TrainResult,
  extra: Record<string, unknown>,
): Promise<void> {
  const paused = r.stopped === 'interrupted' || r.stopped === 'stop-after';
  const summary = {
    out: paused ? null : o.out,
    stopped: r.stopped,
    steps: r.steps,
    totalSteps: r.totalSteps,
    tokens: r.tokens,
    loss: r.loss,
    evals: r.evals,
    best: r.best ?? null,
    ...(r.resumedFrom !== undefined ? { resumedFrom: r.resumedFrom } : {}),
    skippedSteps: r.skippedSteps,
    seconds: r.seconds,
    tokensPerSecond: r.tokensPerSecond,
    gflopsPerSecond: r.flops.gflopsPerSecond,
    params: model.stats().params,
    backend: r.backend,
    ...(r.teacherBackend ? { teacherBackend: r.teacherBackend } : {}),
    ...(o.train ? { trainable: o.train } : {}),
    ...(o.l1 ? { l1: o.l1 } : {}),
    runDir: run.runDir,
    log: run.options.logFile,
    checkpoint: paused ? run.checkpointDir : null,
    ...extra,
  };
  if (!paused) {
    const format = modelOutputKind(o.out) === 'file' ? 'llama2c' : 'hf';
    await saveModel(model, o.out, {
      format,
      ...(o.dtype ? { dtype: o.dtype } : {}),
      overwrite: o.force ?? false,
      ...(format === 'hf'
        ? {
            provenance: {
              training: {
                ...extra,
                tokens: r.tokens,
                steps: r.steps,
                seed: o.seed,
                data: o.data,
                ...(o.train ? { trainable: o.train } : {}),
                ...(o.l1 ? { l1: o.l1 } : {}),
                ...(r.best ? { heldOutPpl: r.evals[r.evals.length - 1]!.ppl } : {}),
              },
            },
          }
        : {}),
    });
    if (!o.keepCheckpoint && existsSync(run.checkpointDir))
      rmSync(run.checkpointDir, { recursive: true, force: true });
  }
  if (o.json) printJson(summary);
  else {
    const last = r.evals[r.evals.length - 1];
    const first = r.evals[0];
    const ppl = last
      ? `, held-out ppl ${last.ppl.toFixed(4)}${first && first !== last ? ` (from ${first.ppl.toFixed(4)})` : ''}`
      : '';
    process.stdout.write(
      paused
        ? `stopped at step ${r.steps} of ${r.totalSteps}; checkpoint in ${run.checkpointDir} (continue with --resume)\n`
        : `wrote ${o.out}: ${r.steps} steps, ${r.tokens} tokens, loss ${r.loss.toFixed(4)}${ppl}\n`,
    );
  }
  // exit code 130 as for a shell's Ctrl-C; a CommanderError carries it through run() without a message
  if (r.stopped === 'interrupted') throw new CommanderError(130, 'lineage.interrupted', '');
}

export function trainCommand(program: Command): void {
  const cmd = program
    .command('train')
    .description('train a model with the next-token loss (e.g. the from-scratch baseline made by init)')
    .argument('<model>', 'llama2.c .bin file or Hugging Face directory');
  addTrainingOptions(cmd);
  cmd.action(async (path: string, o: TrainingFlags) => {
    const run = await prepareRun(o, [
      { path, what: 'the model' },
      { path: o.tokenizer, what: 'the tokenizer' },
    ]);
    try {
      const { model } = await loadModel(path, { tokenizer: o.tokenizer });
      requireContext(model, path);
      checkSeqLen('--seq-len', o.seqLen, [{ model, path }]);
      checkSeqLen('--eval-seq-len', o.evalSeqLen, [{ model, path }]);
      checkBatchFits(o, [model]);
      checkBudget(o, [model], model);
      checkNoOverlap(o.out, [tokenizerInput(model)]);
      checkNoOverlap(o.runDir ?? `${o.out}.run`, [tokenizerInput(model)], '--run-dir');
      const backend = await selectBackend(o);
      const r = await train({ ...run.options, model, backend });
      await finishRun(o, run, model, r, { kind: 'train', model: path });
    } finally {
      run.dispose();
    }
  });
}
