import { basename, join, resolve } from 'node:path';
import {
  type Backend,
  buildFamily,
  decreasingSizes,
  describeOptions,
  type FamilyMethod,
  familyRecord,
  getMethod,
  type HeldOutScore,
  type Json,
  LineageError,
  type LlamaModel,
  listMethods,
  type MethodDefinition,
  perplexity,
  readTextFile,
  writeFamily,
  z,
} from '@lineage/core';
import { type SamplerState, type TrainResult, withRecover } from '@lineage/distill';
import { type Command, InvalidArgumentError } from 'commander';
import { nameMethodOptions } from '../errors.js';
import { formatBytes, formatCount, log, printJson, table } from '../output.js';
import { recordSeries } from '../report/data.js';
import { writeReport } from '../report/write.js';
import { checkOneStep, checkSeqLen, decimal, parseIntArg, requireContext, UsageError } from './common.js';
import {
  addCompressionOptions,
  addMethodFlags,
  argvValues,
  type CompressionFlags,
  checkOut,
  type HeldOutText,
  type HoldoutSpec,
  memberDirs,
  methodValues,
  prepare,
  runDirOf,
  withModelNamed,
} from './compress.js';
import { checkFamilyResumable, familyRun } from './family-run.js';
import { onInterrupt } from './interrupt.js';
import { parseTokens } from './train.js';

/** The fraction of the last --data file held out for the table when neither --eval-data nor --holdout is given. */
export const DEFAULT_HOLDOUT = 0.1;

interface FamilyFlags extends CompressionFlags {
  method: string;
  schedule: number[];
  recoverTokens?: number;
  evalData?: string;
  holdout?: number;
  evalLimit?: number;
  evalSeqLen?: number;
}

function parseSchedule(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim());
  const xs = parts.map(decimal);
  // Number('') is 0: an empty entry is no size
  if (parts.some((s) => s === '') || xs.some((x) => !Number.isFinite(x)))
    throw new InvalidArgumentError(`must be comma-separated fractions like 0.8,0.6,0.45,0.3, got '${v}'`);
  return xs;
}

/** Held-out perplexity of one model (documents protocol when the text holds documents, else 256-token windows). */
export async function heldOutScore(
  model: LlamaModel,
  backend: Backend,
  h: HeldOutText,
  o: { evalSeqLen?: number; evalLimit?: number },
): Promise<HeldOutScore> {
  const r = await perplexity(
    model,
    backend,
    h.text,
    {
      protocol: h.separator ? 'documents' : 'stream',
      ...(h.separator ? { separator: h.separator } : {}),
      ...(o.evalSeqLen
        ? { seqLen: o.evalSeqLen }
        : !h.separator
          ? { seqLen: Math.min(256, model.config.maxPositions) }
          : {}),
      ...(o.evalLimit ? { limit: o.evalLimit } : {}),
      fused: true, // a member is frozen once scored: the backend's fused graph may serve it
    },
    h.name,
  );
  return { ppl: r.ppl, nll: r.nll };
}

/** Methods that yield members at given sizes. */
function familyMethods(): MethodDefinition[] {
  return listMethods().filter((m) => m.family);
}

/** The sizes of a family method that declares no schema for them. */
const POSITIVE_SIZES = decreasingSizes(z.number().gt(0, 'must be positive'));

/**
 * The schema `family` takes a method's flags by: the method's options without those the family's sizes and
 * budget stand in for, plus `schedule`, checked by the method's own sizes schema, so that every error names
 * the flag the user wrote (`--schedule entry 2 …`).
 */
function familySchema(def: MethodDefinition) {
  const mask: Record<string, true> = {};
  for (const k of def.family!.replaces) mask[k] = true;
  return def.options
    .omit(mask as Parameters<typeof def.options.omit>[0])
    .extend({ schedule: def.family!.sizes ?? POSITIVE_SIZES });
}

export function familyCommand(program: Command, argv: readonly string[] = []): void {
  const cmd = program
    .command('family')
    .description(
      'build a family of smaller models at given sizes with any method that yields members (plrd: progressive, each member from the previous one; svd: one-shot per size), recovered by distillation from the parent; prints params, bytes and held-out perplexity per member',
    )
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)')
    .option(
      '--method <name>',
      `method: ${familyMethods()
        .map((m) => m.name)
        .join(', ')}`,
      'plrd',
    )
    .requiredOption(
      '--schedule <fractions>',
      'decreasing sizes, one member each (fractions of the decomposable parameters for plrd and svd)',
      parseSchedule,
    )
    .option(
      '--recover-tokens <n>',
      'recovery tokens of each member (e.g. 200k; default 0: none)',
      parseTokens,
    )
    .requiredOption('--out <dir>', 'output directory: one Hugging Face directory per member plus family.json')
    .option(
      '--eval-data <file>',
      'held-out text for the table (documents protocol when it holds --doc-separator)',
    )
    .option(
      '--holdout <n>',
      `hold out the last n documents of the last --data file for the table (default without --eval-data: its last ${DEFAULT_HOLDOUT * 100}%)`,
      parseIntArg(),
    )
    .option('--eval-limit <n>', 'evaluate at most n documents or windows', parseIntArg())
    .option(
      '--eval-seq-len <n>',
      'evaluation truncation/window length (default: context; stream 256)',
      parseIntArg(2),
    );
  addCompressionOptions(cmd);
  // the method's own options (plrd's by default), without those --schedule and --recover-tokens stand for
  const named = argvValues(argv, '--method')[0] ?? 'plrd';
  const def = familyMethods().find((m) => m.name === named);
  if (def) {
    addMethodFlags(cmd, describeOptions(familySchema(def)));
    cmd.addHelpText(
      'after',
      `\nOptions above from --method ${def.name} (${def.package}): ${def.description}`,
    );
  }
  cmd.addHelpText(
    'after',
    `\nMethods that yield families: ${familyMethods()
      .map((m) => m.name)
      .join(', ')} (lineage family --method <name> --help shows its options)`,
  );
  cmd.action(async (modelArg: string | undefined, o: FamilyFlags & Record<string, unknown>) => {
    // a family method's sizes are this command's --schedule
    nameMethodOptions({ flags: true, aliases: { sizes: 'schedule' } });
    const d = getMethod(o.method);
    if (!d.family)
      throw new LineageError(
        `method '${d.name}' does not yield members at given sizes (family methods: ${familyMethods()
          .map((m) => m.name)
          .join(', ')})`,
      );
    checkOut(modelArg, o, [{ path: o.evalData, what: '--eval-data' }]);
    if (o.resume) checkFamilyResumable(runDirOf(o));
    if (o.evalData && o.holdout) throw new LineageError('give either --eval-data or --holdout, not both');
    if (!o.evalData && !o.data?.length)
      throw new LineageError(
        'the family table needs held-out data: --eval-data <file>, or --data <file> (its tail is held out)',
      );
    const recoverTokens = o.recoverTokens ?? 0;
    if (recoverTokens > 0 && !o.data?.length)
      throw new LineageError('recovery needs training data: --data <file> (or --recover-tokens 0)');
    if (o.holdout && !o.docSeparator) throw new LineageError('--holdout needs --doc-separator');
    if (typeof o.lr === 'number' && o.minLr !== undefined && o.minLr > o.lr)
      throw new UsageError('--min-lr', o.minLr, `must not exceed --lr ${o.lr}`);
    const { schedule: sizes, ...options } = methodValues(d, o, familySchema(d));
    const method = d.family!.create(options, { sizes: sizes as number[], recoverTokens });
    const holdout: HoldoutSpec | undefined = o.evalData
      ? undefined
      : o.holdout
        ? { docs: o.holdout, separator: o.docSeparator! }
        : { fraction: DEFAULT_HOLDOUT };
    const p = await prepare(modelArg, o, holdout);
    requireContext(p.model, p.path);
    checkSeqLen('--eval-seq-len', o.evalSeqLen, [{ model: p.model, path: p.path }]);
    if (recoverTokens > 0) checkOneStep('--recover-tokens', recoverTokens, o, [p.model]);
    let held = p.heldOut;
    if (o.evalData) {
      const text = await readTextFile(o.evalData);
      held = {
        text,
        name: o.evalData,
        ...(o.docSeparator && text.includes(o.docSeparator) ? { separator: o.docSeparator } : {}),
      };
    }
    // the run directory once the model and data are known good: a refused run leaves nothing behind
    const run = await familyRun(runDirOf(o), {
      resume: o.resume ?? false,
      settings: {
        model: modelArg ?? null,
        method: d.name,
        options: options as Json,
        schedule: o.schedule,
        recoverTokens,
        // everything that decides what each recovery and calibration sees
        data: o.data ?? [],
        docSeparator: o.docSeparator ?? null,
        heldOut: o.evalData ? null : (o.holdout ?? `${DEFAULT_HOLDOUT}`),
        stats: o.stats ?? null,
        calibSamples: o.calibSamples ?? null,
        seed: o.seed,
        recovery: [o.lr, o.minLr, o.batchSize, o.seqLen, o.hiddenWeight].map((x) => x ?? null),
        earlyStop: o.earlyStop !== false,
      },
    });
    const t0 = performance.now();
    let family: LlamaModel[];
    try {
      family = await buildMembers(method, p, run);
    } catch (e) {
      await run.discardIfEmpty();
      throw withModelNamed(e, p.path);
    }
    const seconds = (performance.now() - t0) / 1000;
    log(`evaluating the parent and ${family.length} members on ${held!.name}`);
    const parentScore = await heldOutScore(p.model, p.backend, held!, o);
    const scores: HeldOutScore[] = [];
    for (const m of family) scores.push(await heldOutScore(m, p.backend, held!, o));
    const dirs = memberDirs(d.name, family, o.schedule);
    const record = familyRecord({
      method: { name: method.name, version: method.version },
      parent: { path: p.path, model: p.model, score: parentScore },
      heldOut: held!.name,
      sizes: o.schedule,
      members: family.map((model, i) => ({ dir: dirs[i]!, model, size: o.schedule[i]!, score: scores[i]! })),
      wallSeconds: seconds,
    });
    await writeFamily(o.out, family, record, {
      overwrite: o.force ?? false,
      ...(o.dtype ? { dtype: o.dtype } : {}),
    });
    await run.finish();
    // the family's report beside family.json (lineage report on this directory makes the same page)
    const report = join(o.out, 'report.html');
    await writeReport(report, [recordSeries(record, `${d.name} (${basename(resolve(o.out))})`, o.out)], {
      force: true,
    });
    log(`report: ${report}`);
    if (o.json) printJson({ ...record, report });
    else {
      const rows = [
        { name: 'parent', size: null, ...record.parent, tokens: 0 },
        ...record.members.map((m) => ({ name: m.dir, ...m })),
      ];
      process.stdout.write(
        `${table(
          ['member', 'size', 'params', 'bytes', 'bits/param', 'held-out ppl', 'recovery tokens'],
          rows.map((r) => [
            r.name,
            r.size === null ? '1 (dense)' : r.size.toFixed(2),
            formatCount(r.params),
            formatBytes(r.bytes),
            r.bitsPerParam.toFixed(2),
            r.perplexity!.toFixed(4),
            formatCount(r.tokens),
          ]),
        )}\nwrote ${family.length} members and family.json to ${o.out} (${seconds.toFixed(1)} s)\n`,
      );
    }
  });
}

/**
 * Builds the members one by one: each recovery checkpoints into the run directory (and stops with a
 * checkpoint on Ctrl-C), each finished member is saved there at once, and `--resume` reads finished members
 * back instead of recomputing them, continuing the training text where the last finished member stopped.
 */
async function buildMembers(
  method: FamilyMethod,
  p: Awaited<ReturnType<typeof prepare>>,
  run: Awaited<ReturnType<typeof familyRun>>,
): Promise<LlamaModel[]> {
  const interrupt = onInterrupt();
  const interrupted = () =>
    interrupt.stop(
      `interrupted: finished members and the recovery checkpoint are in ${run.dir}; run the same command with --resume to continue`,
    );
  // where the training text continues: after the last finished member's recovery
  let dataStart: SamplerState | undefined;
  let last: TrainResult | undefined;
  try {
    return await buildFamily(method, p.model, p.ctx, {
      finished: async (i) => {
        const done = await run.finished(i);
        if (done) {
          log(`member ${i + 1}: finished before the interruption, read from ${run.dir}`);
          dataStart = done.dataEnd ?? dataStart;
          return done.model;
        }
        return undefined;
      },
      context: (i) => {
        if (!p.recover) return p.ctx;
        const inner = withRecover(p.ctx, {
          ...p.recover,
          checkpointRoot: join(run.dir, `member-${i + 1}`),
          resume: run.resuming,
          signal: interrupt.signal,
          ...(dataStart ? { dataStart } : {}),
          onResult: (r) => {
            last = r;
          },
        }).recover!;
        return {
          ...p.ctx,
          // recover throws RecoveryInterrupted (after its checkpoint) when Ctrl-C stopped it: say where to resume
          recover: async (model, budget) => {
            try {
              return await inner(model, budget);
            } catch (e) {
              if (last?.stopped === 'interrupted') throw interrupted();
              throw e;
            }
          },
        };
      },
      onMember: async (i, member) => {
        if (last) dataStart = last.dataEnd;
        await run.save(i, member, dataStart);
        last = undefined;
        if (interrupt.signal.aborted && i < method.sizes.length - 1) throw interrupted();
      },
    });
  } finally {
    interrupt.dispose();
  }
}
