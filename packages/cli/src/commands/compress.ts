import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadStats, withCalibration } from '@lineage/calibrate';
import {
  applyMethod,
  type Backend,
  describeOptions,
  familyRecord,
  getMethod,
  LineageError,
  type LlamaModel,
  listMethods,
  loadModel,
  type MethodContext,
  type MethodDefinition,
  type MethodOption,
  methodContext,
  type OptionsSchema,
  parseOptions,
  saveModel,
  type TextData,
  TextDataset,
  writeFamily,
} from '@lineage/core';
import {
  DEFAULTS,
  hasCheckpoint,
  type RecoverOptions,
  type TrainResult,
  trySplitValidation,
  withRecover,
} from '@lineage/distill';
import '@lineage/quant';
import '@lineage/prune';
import '@lineage/svd';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { selectBackend } from '../backend.js';
import { defaultModel } from '../defaults.js';
import { log } from '../output.js';
import { checkNoOverlap, checkOutput, checkRunDir, type Input, tokenizerInput } from '../output-policy.js';
import { createProgress } from '../progress.js';
import {
  addBackendOptions,
  addJsonOption,
  addModelOptions,
  checkBatchFits,
  checkHoldout,
  checkOneStep,
  checkSeqLen,
  decimal,
  parseFloatArg,
  parseIntArg,
  parseLr,
  parseSeparator,
  requireContext,
  UsageError,
} from './common.js';
import { type Interrupt, onInterrupt } from './interrupt.js';
import { parseTokens } from './train.js';

/** Flags of the data, statistics, recovery and output options shared by `compress` and `family`. */
export interface CompressionFlags {
  out: string;
  data?: string[];
  docSeparator?: string;
  stats?: string;
  calibSamples?: number;
  seed: number;
  lr?: number | 'auto';
  minLr?: number;
  batchSize?: number;
  seqLen?: number;
  /** What the user wrote seqLen as, for errors (default `--seq-len`; a recipe's `recovery.seqLen`). */
  seqLenFlag?: string;
  hiddenWeight?: number;
  /** false with --no-early-stop. */
  earlyStop?: boolean;
  runDir?: string;
  resume?: boolean;
  dtype?: 'f32' | 'f16' | 'bf16';
  force?: boolean;
  plugin?: string[];
  tokenizer?: string;
  backend?: string;
  device?: string;
  json?: boolean;
}

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

/** The values of a repeatable or single flag in raw argv (`--flag v` or `--flag=v`). */
export function argvValues(argv: readonly string[], flag: string): string[] {
  const out: string[] = [];
  argv.forEach((a, i) => {
    if (a === flag && i + 1 < argv.length) out.push(argv[i + 1]!);
    else if (a.startsWith(`${flag}=`)) out.push(a.slice(flag.length + 1));
  });
  return out;
}

/**
 * Imports `--plugin` modules (packages or files) before the program is built, so that methods they register
 * appear in `compress --help` and parse their own options.
 */
export async function loadPlugins(argv: readonly string[]): Promise<void> {
  for (const spec of argvValues(argv, '--plugin')) {
    const target = spec.startsWith('.') || spec.startsWith('/') ? resolve(spec) : spec;
    // a plugin file must be a regular file: importing a FIFO or a device would wait or read forever
    if (target.startsWith('/') && existsSync(target) && !statSync(target).isFile())
      throw new LineageError(`cannot load plugin '${spec}': not a regular file`, spec);
    try {
      await import(target.startsWith('/') ? `file://${target}` : target);
    } catch (e) {
      throw new LineageError(`cannot load plugin '${spec}': ${(e as Error).message.split('\n')[0]}`);
    }
  }
}

export function addCompressionOptions(cmd: Command): Command {
  cmd
    .option('--data <file>', 'training text for recovery (repeat for several files, used in order)', collect)
    .option(
      '--doc-separator <s>',
      'documents are separated by lines equal to <s> (each gets BOS)',
      parseSeparator,
    )
    .option(
      '--stats <file>',
      'calibration statistics of this model (lineage calibrate), for data-aware methods',
    )
    .option(
      '--calib-samples <n>',
      'data-aware methods without --stats: sequences of the first --data file to calibrate on (default 64)',
      parseIntArg(),
    )
    .option('--seed <n>', 'seed of data sampling and of any randomness in the method', parseIntArg(0), 0)
    .option(
      '--lr <x>',
      'recovery: peak learning rate (default: from the width, 1e-4·(4096/width)^0.72; docs/training-defaults.md); auto: a range test on a copy picks it',
      parseLr,
    )
    .option('--min-lr <x>', 'recovery: final learning rate (default lr/10)', parseFloatArg(0, 10))
    .option(
      '--batch-size <n>',
      'recovery: sequences per step (default: 8, fewer when the budget buys under 256 steps of 8)',
      parseIntArg(),
    )
    .option('--seq-len <n>', 'recovery: tokens per sequence (default min(256, context))', parseIntArg(2))
    .option(
      '--hidden-weight <w>',
      "recovery: weight of the hidden-state loss against the teacher's layers (default 1 when the widths match, else off; 0: KL only)",
      parseFloatArg(0, 1e6),
    )
    .option(
      '--no-early-stop',
      `recovery: train every budget in full (default: early stopping on the last ${DEFAULTS.validationFraction * 100}% of the last --data file, split off once)`,
    )
    .option('--run-dir <dir>', 'recovery checkpoints and logs (default: <out>.run)')
    .option('--resume', 'resume an interrupted recovery from the run directory')
    .addOption(
      new Option('--dtype <dtype>', 'float type of dense weights when saving (default: as loaded)').choices([
        'f32',
        'f16',
        'bf16',
      ]),
    )
    .option('--force', 'replace an existing --out')
    .option(
      '--plugin <module>',
      'import a package or file that registers more methods (repeatable)',
      collect,
    );
  addModelOptions(cmd);
  addBackendOptions(cmd);
  addJsonOption(cmd);
  return cmd;
}

/** The run directory of the recoveries: --run-dir, or `<out>.run`. */
export function runDirOf(o: CompressionFlags): string {
  return resolve(o.runDir ?? `${resolve(o.out)}.run`);
}

/**
 * The output policy (output-policy.ts) for --out and the run directory, against every file the command reads:
 * the model, its tokenizer, --data, --stats and `more` (family's --eval-data).
 */
export function checkOut(modelArg: string | undefined, o: CompressionFlags, more: Input[] = []): void {
  const inputs: Input[] = [
    { path: modelArg ?? defaultModel(), what: 'the model' },
    { path: o.tokenizer, what: 'the tokenizer' },
    ...(o.data ?? []).map((path) => ({ path, what: '--data' })),
    { path: o.stats, what: '--stats' },
    ...more,
  ];
  const runDir = o.runDir ?? `${o.out}.run`;
  checkOutput({
    path: o.out,
    kind: 'dir',
    force: o.force,
    inputs: [...inputs, { path: runDir, what: 'the run directory' }],
  });
  checkRunDir(runDir, inputs);
}

/** A --data file as a dataset: documents when it holds the separator, else one stream. */
function openData(path: string, separator: string | undefined): Promise<TextDataset> {
  return TextDataset.open(path, { ...(separator ? { separator } : {}), separatorIfFound: true });
}

export interface Prepared {
  model: LlamaModel;
  path: string;
  backend: Backend;
  ctx: MethodContext;
  /** The options of the context's `recover` (absent without training data), to derive per-step ones. */
  recover?: Partial<RecoverOptions>;
  /** Text held out of training and calibration, when `prepare` was asked to hold some out. */
  heldOut?: HeldOutText;
}

/** Text held out for evaluation: documents (with their separator) or a stream. */
export interface HeldOutText {
  text: string;
  separator?: string;
  /** What it is, for tables and family.json. */
  name: string;
}

/**
 * What to hold out of the last --data file: its last `docs` documents, or its last `fraction` (documents
 * when the file holds the separator, else text cut at a line boundary).
 */
export type HoldoutSpec =
  | {
      docs: number;
      separator: string;
      /** What the user wrote it as, for errors (default `--holdout`; a recipe's `evaluation.holdout`). */
      flag?: string;
    }
  | { fraction: number };

/** The held-out tail of `last` (core's one split) and what remains to train and calibrate on. */
function holdOutTail(last: TextDataset, spec: HoldoutSpec): { train: TextDataset; heldOut: HeldOutText } {
  if ('docs' in spec && !last.hasDocuments)
    throw new LineageError(
      `--holdout needs documents: the last --data file holds no '${spec.separator}' lines`,
      last.path,
    );
  if ('docs' in spec) checkHoldout(spec.docs, [last], spec.flag);
  const { train, heldOut } = last.split(
    'docs' in spec ? { holdout: spec.docs } : { fraction: spec.fraction },
  );
  const { text, separator } = heldOut.evalText();
  const name = last.hasDocuments
    ? `${last.path} (last ${heldOut.length} documents)`
    : `${last.path} (last ${Math.round((spec as { fraction: number }).fraction * 100)}%: ${text.length} characters)`;
  return { train, heldOut: { text, ...(separator ? { separator } : {}), name } };
}

/**
 * A method's error about a layer of the model it was given ("layer 'x' is a 'low_rank' layer", marked
 * `inModel`) names no file: it is that model's, so the model's path is put in front (errors name their
 * file). Others, and those that already name a file, are left as they are.
 */
export function withModelNamed(e: unknown, path: string): unknown {
  if (e instanceof LineageError && e.inModel && !e.file)
    return new LineageError(e.message, path, { cause: e });
  return e;
}

/**
 * Loads the model, its statistics and data, and builds the method context, with `recover` (distillation
 * from the teacher each method names, through @lineage/distill) when training data is given.
 * `holdout` keeps the tail of the last data file out of training and calibration (see HoldoutSpec).
 */
export async function prepare(
  modelArg: string | undefined,
  o: CompressionFlags,
  holdout?: HoldoutSpec,
  interrupt?: Interrupt,
): Promise<Prepared> {
  const path = modelArg ?? defaultModel();
  const { model } = await loadModel(path, { tokenizer: o.tokenizer });
  // a tokenizer found beside the model is an input too
  checkNoOverlap(o.out, [tokenizerInput(model)]);
  checkNoOverlap(o.runDir ?? `${o.out}.run`, [tokenizerInput(model)], '--run-dir');
  model.provenance = { ...(model.provenance ?? {}), source: path };
  // recovery and the family's held-out table train and evaluate on sequences
  if (o.data?.length || holdout) requireContext(model, path);
  checkSeqLen(o.seqLenFlag ?? '--seq-len', o.seqLen, [{ model, path }]);
  // each recovery trains a copy against the parent (the teacher): both in memory
  if (o.data?.length) checkBatchFits(o, [model, model]);
  const stats = o.stats ? await loadStats(o.stats, model) : undefined;
  const backend = await selectBackend(o);
  const progress = createProgress();
  const logger = { info: log, warn: (m: string) => log(`warning: ${m}`), debug: () => {} };
  const sources = await Promise.all((o.data ?? []).map((d) => openData(d, o.docSeparator)));
  let heldOut: HeldOutText | undefined;
  if (holdout && sources.length) {
    const split = holdOutTail(sources[sources.length - 1]!, holdout);
    sources[sources.length - 1] = split.train;
    heldOut = split.heldOut;
  }
  // the context's text: the first --data file, less any held-out tail
  const first = sources[0];
  const firstText = first?.evalText();
  const data: TextData | undefined =
    first && firstText
      ? {
          text: firstText.text,
          path: first.path,
          ...(firstText.separator ? { separator: firstText.separator } : {}),
        }
      : undefined;
  let ctx = methodContext(backend, {
    progress,
    log: logger,
    seed: o.seed,
    ...(data ? { data } : {}),
    ...(stats ? { stats } : {}),
  });
  let recover: Partial<RecoverOptions> | undefined;
  if (sources.length) {
    // early stopping of every recovery on one validation part of the training text, split off here once;
    // why it is off is said with the recovery's first log line, once its data are read (a run that fails
    // before then prints its error alone)
    let earlyStopOff: string | undefined;
    const recoveryLog = {
      ...logger,
      info(message: string) {
        if (earlyStopOff) logger.info(earlyStopOff);
        earlyStopOff = undefined;
        logger.info(message);
      },
    };
    const split =
      o.earlyStop !== false
        ? trySplitValidation(sources, (why) => {
            earlyStopOff = `recovery early stopping off: ${why}`;
          })
        : undefined;
    const validation = split?.validation;
    const runDir = runDirOf(o);
    recover = {
      // calibration still sees the whole text: validation only has to be kept out of training
      data: split?.train ?? sources,
      seed: o.seed,
      checkpointRoot: runDir,
      checkpointEvery: 200,
      resume: o.resume ?? false,
      log: recoveryLog,
      logEvery: 25,
      ...(o.lr !== undefined ? { lr: o.lr } : {}),
      ...(o.minLr !== undefined ? { minLr: o.minLr } : {}),
      ...(o.batchSize ? { batchSize: o.batchSize } : {}),
      ...(o.seqLen ? { seqLen: o.seqLen } : {}),
      ...(o.hiddenWeight !== undefined
        ? {
            hidden: o.hiddenWeight
              ? { layers: 'uniform' as const, weight: o.hiddenWeight }
              : (false as const),
          }
        : {}),
      ...(validation ? { evalData: validation, earlyStop: { patience: DEFAULTS.patience } } : {}),
    };
    // Ctrl-C stops the running recovery with a checkpoint, and the command with it
    let stopped: TrainResult['stopped'] | undefined;
    const inner = withRecover(ctx, {
      ...recover,
      ...(interrupt
        ? {
            signal: interrupt.signal,
            onResult: (r: TrainResult) => {
              stopped = r.stopped;
            },
          }
        : {}),
    }).recover!;
    ctx = {
      ...ctx,
      // recover throws RecoveryInterrupted (after its checkpoint) when Ctrl-C stopped it: say where to resume
      recover: async (m, budget) => {
        try {
          return await inner(m, budget);
        } catch (e) {
          if (interrupt && stopped === 'interrupted')
            throw interrupt.stop(
              `interrupted: the recovery checkpoint is in ${runDir}; run the same command with --resume to continue`,
            );
          throw e;
        }
      },
    };
    // statistics of any model the method asks about (e.g. each PLRD member): the context's data file (the
    // first --data), minus held-out text, read only if a method calibrates
    ctx = withCalibration(ctx, {
      data: sources[0]!,
      ...(o.calibSamples ? { samples: o.calibSamples } : {}),
      // compress's --seq-len is the recovery's: calibration's length is not a flag here
      flags: { samples: '--calib-samples' },
    });
  }
  return { model, path, backend, ctx, ...(recover ? { recover } : {}), ...(heldOut ? { heldOut } : {}) };
}

/** `--name <value>` (or `--name` for booleans, `--no-name` for booleans on by default, `<list>` for numbers). */
function flagText(opt: MethodOption): string {
  if (opt.type === 'boolean') return opt.default === true ? `--no-${opt.name}` : `--${opt.name}`;
  return `--${opt.name} <${opt.placeholder}>`;
}

/** A number flag's text: plain, or with a k/M/B suffix (`20k` tokens). */
function parseNumber(v: string): number {
  const n = /^\d+(\.\d+)?[kKmMbB]$/.test(v) ? parseTokens(v) : decimal(v);
  if (!v.trim() || !Number.isFinite(n)) throw new InvalidArgumentError(`must be a number, got '${v}'`);
  return n;
}

/** The CLI option of a method option (derived from the method's schema), with its parser and default. */
export function methodFlag(opt: MethodOption): Option {
  const o = new Option(flagText(opt), opt.description);
  if (opt.type === 'number' || opt.type === 'integer') o.argParser(parseNumber);
  else if (opt.type === 'numbers') {
    o.argParser((v: string) =>
      v.split(',').map((s) => {
        const n = decimal(s.trim()); // a space after a comma is fine in a list
        if (!Number.isFinite(n))
          throw new InvalidArgumentError(`must be comma-separated numbers like 0.8,0.6, got '${v}'`);
        return n;
      }),
    );
  }
  if (opt.choices) o.choices(opt.choices);
  if (opt.default !== undefined && opt.type !== 'boolean') o.default(opt.default);
  if (opt.required) o.makeOptionMandatory();
  return o;
}

/**
 * A method's options from parsed flags (commander names them by the schema's keys), validated by the
 * method's schema: one-line errors name the flag.
 */
export function methodValues(
  def: MethodDefinition,
  o: Record<string, unknown>,
  schema: OptionsSchema = def.options,
): Record<string, unknown> {
  const raw = Object.fromEntries(
    describeOptions(schema)
      .map((opt) => [opt.key, o[camel(opt.name)]])
      .filter(([, v]) => v !== undefined),
  );
  return parseOptions(schema, raw, { where: def.name, flags: true });
}

/** commander's attribute name of a flag (`recover-tokens` → `recoverTokens`). */
function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Adds the flags of a method's options that the command does not define itself. */
export function addMethodFlags(cmd: Command, options: readonly MethodOption[]): void {
  for (const opt of options) {
    if (!cmd.options.some((x) => x.long === `--${opt.name}`)) cmd.addOption(methodFlag(opt));
  }
}

function methodsHelp(): string {
  const lines = ['', "Methods (lineage compress --method <name> --help shows one method's options):"];
  for (const m of listMethods()) {
    lines.push(`  ${m.name.padEnd(10)} ${m.description} (${m.package})`);
    for (const opt of describeOptions(m.options)) {
      const flag = flagText(opt);
      const dflt =
        opt.default !== undefined ? ` (default: ${String(opt.default)})` : opt.required ? ' (required)' : '';
      lines.push(`      ${flag.padEnd(26)} ${opt.description}${dflt}`);
    }
  }
  return lines.join('\n');
}

/** Saves one model (a method's single result) atomically, with its provenance in config.json. */
export async function saveMember(model: LlamaModel, out: string, o: CompressionFlags): Promise<void> {
  await saveModel(model, out, {
    format: 'hf',
    overwrite: o.force ?? false,
    ...(o.dtype ? { dtype: o.dtype } : {}),
  });
}

/** Directory names of a family's members: `<method>-<size>` (e.g. plrd-0.80), else member-<i>. */
export function memberDirs(
  method: string,
  models: readonly LlamaModel[],
  sizes?: readonly number[],
): string[] {
  return models.map((m, i) => {
    const f = sizes?.[i] ?? m.provenance?.fraction;
    return typeof f === 'number' ? `${method}-${f.toFixed(2)}` : `member-${i + 1}`;
  });
}

/** `--resume` needs a recovery checkpoint in the run directory (a one-line error otherwise). */
export function checkResumable(runDir: string): void {
  const any =
    existsSync(runDir) &&
    readdirSync(runDir).some((n) => /^recover-\d+$/.test(n) && hasCheckpoint(join(runDir, n)));
  if (!any)
    throw new LineageError(
      'nothing to resume: holds no recovery checkpoint (run the command without --resume)',
      runDir,
    );
}

export function compressCommand(program: Command, argv: readonly string[] = []): void {
  const cmd = program
    .command('compress')
    .description(
      "compress a model with a registered method (svd, plrd, or a plugin's); writes a Hugging Face directory",
    )
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)')
    .requiredOption(
      '--method <name>',
      `method: ${listMethods()
        .map((m) => m.name)
        .join(', ')}`,
    )
    .requiredOption(
      '--out <dir>',
      'output directory (a family: one subdirectory per member and family.json)',
    );
  addCompressionOptions(cmd);
  // The method's own options: those of the method named on the command line, or every method's in --help.
  const named = argvValues(argv, '--method')[0];
  const def = named ? listMethods().find((m) => m.name === named) : undefined;
  if (def) {
    addMethodFlags(cmd, describeOptions(def.options));
    cmd.addHelpText(
      'after',
      `\nOptions above from --method ${def.name} (${def.package}): ${def.description}`,
    );
  } else cmd.addHelpText('after', methodsHelp);
  cmd.action(
    async (
      modelArg: string | undefined,
      o: CompressionFlags & { method: string } & Record<string, unknown>,
    ) => {
      const d = getMethod(o.method);
      checkOut(modelArg, o);
      const method = d.create(methodValues(d, o));
      // what recovery needs, said by flag before any work (the method context would only say it cannot train)
      if (method.needs?.training && !o.data?.length)
        throw new UsageError(
          '--data',
          undefined,
          `${d.name} trains (its recovery or relearning budget): give training text`,
        );
      if (typeof o.lr === 'number' && o.minLr !== undefined && o.minLr > o.lr)
        throw new UsageError('--min-lr', o.minLr, `must not exceed --lr ${o.lr}`);
      if (o.resume) checkResumable(runDirOf(o));
      const interrupt = onInterrupt();
      const t0 = performance.now();
      let result: LlamaModel | LlamaModel[];
      let p: Prepared;
      try {
        p = await prepare(modelArg, o, undefined, interrupt);
        // a method's recovery budget (its --recover-tokens) must buy a step, checked before any work
        const budget = o.recoverTokens;
        if (typeof budget === 'number' && budget > 0 && o.data?.length)
          checkOneStep('--recover-tokens', budget, o, [p.model]);
        result = await applyMethod(method, p.model, p.ctx).catch((e: unknown) => {
          throw withModelNamed(e, p.path);
        });
      } finally {
        interrupt.dispose();
      }
      const seconds = (performance.now() - t0) / 1000;
      const before = p.model.stats();
      if (Array.isArray(result)) {
        const dirs = memberDirs(d.name, result);
        const record = familyRecord({
          method: { name: method.name, version: method.version },
          parent: { path: p.path, model: p.model },
          members: result.map((model, i) => ({ dir: dirs[i]!, model })),
          wallSeconds: seconds,
        });
        await writeFamily(o.out, result, record, {
          overwrite: o.force ?? false,
          ...(o.dtype ? { dtype: o.dtype } : {}),
        });
        if (o.json) process.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
        else process.stdout.write(`wrote ${result.length} models to ${o.out} in ${seconds.toFixed(1)} s\n`);
      } else {
        await saveMember(result, o.out, o);
        const after = result.stats();
        const summary = {
          out: o.out,
          method: d.name,
          params: { before: before.params, after: after.params },
          bytes: { before: before.bytes, after: after.bytes },
          layers: after.layers.map((l) => ({ name: l.name, kind: l.kind, shape: l.shape, params: l.params })),
          provenance: result.provenance ?? null,
          seconds,
        };
        if (o.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
        else {
          process.stdout.write(
            `wrote ${o.out}: ${after.params} params (${((100 * after.params) / before.params).toFixed(1)}% of ${before.params}), ${after.bytes} bytes, in ${seconds.toFixed(1)} s\n`,
          );
        }
      }
    },
  );
}
