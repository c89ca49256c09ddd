import { totalmem } from 'node:os';
import { LineageError, type LlamaModel, namedParameters, selectParameters } from '@lineage/core';
import { DEFAULTS, defaultBatchSize } from '@lineage/distill';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { formatBytes } from '../output.js';

export function addModelOptions(cmd: Command): Command {
  return cmd.option('--tokenizer <path>', 'tokenizer file or directory (default: found beside the model)');
}

export function addBackendOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--backend <name>', 'compute backend: js, onnxruntime, tfjs (default: fastest available)'),
    )
    .addOption(new Option('--device <device>', 'device for the backend: cpu, webgpu, cuda'));
}

export function addJsonOption(cmd: Command): Command {
  return cmd.option('--json', 'print one JSON object on stdout');
}

/**
 * A number as a person writes it on a command line: decimal, optionally signed, with a fraction and an
 * exponent (`8`, `0.9`, `-1`, `1e-4`, `1.5e6`). Hex, octal and binary forms, blanks, trailing junk
 * (`12abc`), `Infinity` and `NaN` are not numbers here (JavaScript's Number() would take some of them).
 */
const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A command-line number (see DECIMAL), NaN when it is not one. */
export function decimal(v: string): number {
  // no blanks around it either: ' 12' is a quoting slip the user should see, not a number
  return DECIMAL.test(v) ? Number(v) : Number.NaN;
}

/**
 * An integer flag in [min, max] (max: the largest exact integer by default). Out-of-range and malformed
 * values are usage errors naming the flag (commander adds it), e.g. `option '--batch-size <n>' argument
 * '1e400' is invalid. must be an integer in [1, 9007199254740991]`.
 */
export function parseIntArg(min = 1, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = decimal(v);
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(
        max === Number.MAX_SAFE_INTEGER
          ? `must be an integer ≥ ${min}, got '${v}'`
          : `must be an integer in [${min}, ${max}], got '${v}'`,
      );
    return n;
  };
}

/** A number flag in [min, max], or (min, max] with `minExclusive` (e.g. --top-p). NaN and ±Infinity never pass. */
export function parseFloatArg(min: number, max: number, options: { minExclusive?: boolean } = {}) {
  const range = `${options.minExclusive ? '(' : '['}${min}, ${max}]`;
  return (v: string): number => {
    const n = decimal(v);
    if (!Number.isFinite(n) || n < min || n > max || (options.minExclusive && n === min))
      throw new InvalidArgumentError(`must be a number in ${range}, got '${v}'`);
    return n;
  };
}

/**
 * A --doc-separator: one line of visible text. Empty or blank, it would split on nothing or on every space;
 * with a line break it could never equal a line.
 */
export function parseSeparator(v: string): string {
  if (!v.trim() || /[\r\n]/.test(v))
    throw new InvalidArgumentError(
      `must be one non-blank line of text, like '<|endoftext|>', got ${JSON.stringify(v)}`,
    );
  return v;
}

/** A JSONL `--field` name: a non-empty key on one line (an empty name would select no record's text). */
export function parseFieldName(v: string): string {
  if (!v.trim() || /[\r\n]/.test(v))
    throw new InvalidArgumentError(
      `must be the name of a JSONL field, like 'text', got ${JSON.stringify(v)}`,
    );
  return v;
}

/**
 * A misuse of flags found after parsing (one flag against another, or against the model): one line naming
 * the flag and its value, e.g. `--kv-heads 3: must divide --heads 8`, printed like commander's usage errors.
 */
export class UsageError extends LineageError {
  readonly usage = true;
  constructor(flag: string, value: unknown, problem: string) {
    super(`${flag}${value === undefined ? '' : ` ${String(value)}`}: ${problem}`);
  }
}

/** A peak learning rate, or 'auto' (a learning-rate range test on a copy picks it); 0 would train nothing. */
export function parseLr(v: string): number | 'auto' {
  return v === 'auto' ? 'auto' : parseFloatArg(0, 10, { minExclusive: true })(v);
}

/**
 * Evaluation and training need sequences of at least two tokens (one input, one target): a model whose
 * context is shorter is refused at once, naming the model file (not a --seq-len the user never gave).
 */
export function requireContext(model: LlamaModel, path: string, need = 2): void {
  const ctx = model.config.maxPositions;
  if (!(ctx >= need))
    throw new LineageError(
      `the model's context (max_position_embeddings ${ctx}) is too short: evaluating or training needs at least ${need} tokens`,
      path,
    );
}

/** A sequence-length flag against the context of every model it applies to (`--seq-len 600: more than …`). */
export function checkSeqLen(
  flag: string,
  value: number | undefined,
  models: readonly { model: { config: { maxPositions: number } }; path: string }[],
): void {
  if (value === undefined) return;
  for (const { model, path } of models) {
    const ctx = model.config.maxPositions;
    if (value > ctx)
      throw new UsageError(flag, value, `more than the model's context of ${ctx} tokens (${path})`);
  }
}

/**
 * `--holdout n` against the data it holds out of: the last source with documents must have more than n
 * (one document at least stays to train on).
 */
export function checkHoldout(
  n: number | undefined,
  sources: readonly { hasDocuments: boolean; length: number; path: string }[],
  flag = '--holdout',
): void {
  if (n === undefined) return;
  const last = [...sources].reverse().find((s) => s.hasDocuments);
  if (!last)
    throw new UsageError(
      flag,
      n,
      `needs data with documents (--doc-separator, or JSONL): ${sources.at(-1)?.path ?? 'the data'} is one stream`,
    );
  if (n >= last.length)
    throw new UsageError(
      flag,
      n,
      `${last.path} has only ${last.length} document${last.length === 1 ? '' : 's'}: hold out fewer, so that some are left to train on`,
    );
}

/**
 * Refuses a micro-batch whose activations could not fit in this machine's memory (before any is
 * allocated): a rough upper estimate of what one forward and backward pass keeps per token (logits and their
 * gradient, each layer's activations and attention scores), against half the machine's memory. Only absurd
 * sizes meet it (a typo, an extra zero), never one that would merely be slow. `forwardOnly` (evaluation)
 * counts the logits and two layers' activations alive at once, not every layer's.
 */
export function checkBatchFits(
  o: { batchSize?: number; microBatch?: number; seqLen?: number },
  models: readonly LlamaModel[],
  { forwardOnly = false } = {},
): void {
  const given = o.microBatch ?? o.batchSize;
  if (given === undefined) return; // the defaults are small
  const micro = Math.min(given, o.batchSize ?? given);
  const flag = o.microBatch !== undefined && micro === o.microBatch ? '--micro-batch' : '--batch-size';
  const ctx = Math.min(...models.map((m) => m.config.maxPositions));
  const seqLen = o.seqLen ?? Math.min(256, ctx);
  let perToken = 0;
  for (const m of models) {
    const c = m.config;
    const layer = 16 * c.hiddenSize + 4 * c.intermediateSize + 2 * c.numHeads * seqLen;
    perToken += 4 * (3 * c.vocabSize + (forwardOnly ? Math.min(2, c.numLayers) : c.numLayers) * layer);
  }
  const need = micro * seqLen * perToken;
  const memory = totalmem() / 2;
  if (need > memory)
    throw new UsageError(
      flag,
      micro,
      `sequences of ${seqLen} tokens would need about ${formatBytes(need)} of activations at once, more than this machine can hold (${formatBytes(memory)}, half its memory); lower it${flag === '--batch-size' && !forwardOnly ? ' or give a smaller --micro-batch' : ''}`,
    );
}

/**
 * A training budget (`flag`, in tokens) must buy one optimiser step at least, as the trainer plans steps
 * (sequence length and batch size given or by default); returns the number of steps.
 */
export function checkOneStep(
  flag: string,
  tokens: number,
  o: { seqLen?: number; batchSize?: number },
  models: readonly LlamaModel[],
): number {
  const ctx = Math.min(...models.map((m) => m.config.maxPositions));
  const seqLen = o.seqLen ?? Math.min(DEFAULTS.seqLen, ctx);
  const batch = o.batchSize ?? defaultBatchSize(tokens, seqLen);
  const step = batch * seqLen;
  const steps = Math.floor(tokens / step);
  if (steps < 1)
    throw new UsageError(
      flag,
      tokens,
      `less than one training step (${batch} sequence${batch === 1 ? '' : 's'} of ${seqLen} tokens = ${step} tokens); give at least ${step}`,
    );
  return steps;
}

/**
 * The training budget and schedule flags against the models (as the trainer will plan them): `--tokens` must
 * buy one step at least, `--warmup` fit in the steps, each `--train` glob match a parameter. Named by flag.
 */
export function checkBudget(
  o: { tokens: number; seqLen?: number; batchSize?: number; warmup?: number; train?: string[] },
  models: readonly LlamaModel[],
  trained: LlamaModel,
): void {
  const steps = checkOneStep('--tokens', o.tokens, o, models);
  if (o.warmup !== undefined && o.warmup > steps)
    throw new UsageError('--warmup', o.warmup, `more than the run's ${steps} steps (--tokens ${o.tokens})`);
  if (o.train) {
    try {
      selectParameters(namedParameters(trained), o.train, 'glob');
    } catch (e) {
      if (e instanceof LineageError)
        throw new UsageError('--train', o.train.join(','), e.message.replace(/^glob: /, ''));
      throw e;
    }
  }
}
