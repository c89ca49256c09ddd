import {
  applyMethod,
  type Backend,
  LineageError,
  type LlamaModel,
  perplexity,
  readTextFile,
  splitDocuments,
} from '@lineage/core';
import { type Allocation, plrd } from '@lineage/svd';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { formatBytes, formatCount, log, printJson, table } from '../output.js';
import { parseIntArg } from './common.js';
import { addCompressionOptions, type CompressionFlags, checkOut, prepare, saveFamily } from './compress.js';
import { parseTokens } from './train.js';

interface FamilyFlags extends CompressionFlags {
  schedule: number[];
  recoverTokens: number;
  allocation?: Allocation;
  dataAware?: boolean;
  includeHead?: boolean;
  teacher?: 'parent' | 'previous';
  evalData?: string;
  holdout?: number;
  evalLimit?: number;
  evalSeqLen?: number;
}

function parseSchedule(v: string): number[] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (!xs.length || xs.some((x) => !Number.isFinite(x)))
    throw new InvalidArgumentError(`must be comma-separated fractions like 0.8,0.6,0.45,0.3, got '${v}'`);
  return xs;
}

interface HeldOut {
  text: string;
  separator?: string;
  name: string;
}

/** One row of the family table. */
export interface FamilyRow {
  name: string;
  fraction: number | null;
  params: number;
  bytes: number;
  ppl: number;
  nll: number;
  /** Recovery tokens spent on the way to this member (cumulative). */
  tokens: number;
  ranks?: unknown;
}

async function heldOutPpl(model: LlamaModel, backend: Backend, h: HeldOut, o: FamilyFlags) {
  return perplexity(
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
    },
    h.name,
  );
}

export function familyCommand(program: Command): void {
  const cmd = program
    .command('family')
    .description(
      'build a PLRD family: ranks lowered step by step with recovery (distillation from the parent) between steps; prints params, bytes and held-out perplexity per member',
    )
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)')
    .requiredOption(
      '--schedule <fractions>',
      'decreasing fractions of the decomposable parameters',
      parseSchedule,
    )
    .requiredOption(
      '--recover-tokens <n>',
      'recovery tokens after each step (e.g. 200k; 0: none)',
      parseTokens,
    )
    .requiredOption('--out <dir>', 'output directory: one Hugging Face directory per member plus family.json')
    .addOption(
      new Option('--allocation <mode>', 'rank allocation (default uniform)').choices(['uniform', 'energy']),
    )
    .option(
      '--data-aware',
      'whiten by calibration Grams (SVD-LLM); from --stats, or calibrated on the first --data file (each member on its own)',
    )
    .option('--include-head', 'also decompose an untied output head')
    .addOption(
      new Option('--teacher <which>', 'recovery teacher (default parent)').choices(['parent', 'previous']),
    )
    .option(
      '--eval-data <file>',
      'held-out text for the table (documents protocol when it holds --doc-separator)',
    )
    .option(
      '--holdout <n>',
      'hold out the last n documents of the last --data file for the table',
      parseIntArg(),
    )
    .option('--eval-limit <n>', 'evaluate at most n documents or windows', parseIntArg())
    .option(
      '--eval-seq-len <n>',
      'evaluation truncation/window length (default: context; stream 256)',
      parseIntArg(2),
    );
  addCompressionOptions(cmd);
  cmd.action(async (modelArg: string | undefined, o: FamilyFlags) => {
    checkOut(o);
    if (o.evalData && o.holdout) throw new LineageError('give either --eval-data or --holdout, not both');
    if (!o.evalData && !o.holdout)
      throw new LineageError('the family table needs held-out data: --eval-data <file> or --holdout <n>');
    if (o.recoverTokens > 0 && !o.data?.length)
      throw new LineageError('recovery needs training data: --data <file> (or --recover-tokens 0)');
    if (o.holdout && !o.docSeparator) throw new LineageError('--holdout needs --doc-separator');
    const method = plrd({
      schedule: o.schedule,
      recoverTokens: o.recoverTokens,
      ...(o.allocation ? { allocation: o.allocation } : {}),
      ...(o.dataAware ? { dataAware: true } : {}),
      ...(o.includeHead ? { includeHead: true } : {}),
      ...(o.teacher ? { teacher: o.teacher } : {}),
    });
    const p = await prepare(
      modelArg,
      o,
      o.holdout ? { docs: o.holdout, separator: o.docSeparator! } : undefined,
    );
    let held: HeldOut;
    if (o.evalData) {
      const text = await readTextFile(o.evalData);
      held = {
        text,
        name: o.evalData,
        ...(o.docSeparator && text.includes(o.docSeparator) ? { separator: o.docSeparator } : {}),
      };
    } else {
      const last = o.data![o.data!.length - 1]!;
      const docs = splitDocuments(await readTextFile(last), o.docSeparator!);
      held = {
        text: docs.slice(docs.length - o.holdout!).join(`\n${o.docSeparator}\n`),
        separator: o.docSeparator!,
        name: `${last} (last ${o.holdout} documents)`,
      };
    }
    const t0 = performance.now();
    const family = await applyMethod(method, p.model, p.ctx);
    const seconds = (performance.now() - t0) / 1000;
    const rows: FamilyRow[] = [];
    const row = async (name: string, m: LlamaModel, fraction: number | null, tokens: number) => {
      log(`evaluating ${name} on ${held.name}`);
      const r = await heldOutPpl(m, p.backend, held, o);
      const s = m.stats();
      rows.push({
        name,
        fraction,
        params: s.params,
        bytes: s.bytes,
        ppl: r.ppl,
        nll: r.nll,
        tokens,
        ...(m.provenance?.ranks ? { ranks: m.provenance.ranks } : {}),
      });
    };
    await row('parent', p.model, null, 0);
    const members = family.map((m, i) => ({ name: `plrd-${o.schedule[i]!.toFixed(2)}`, model: m }));
    for (const [i, m] of members.entries())
      await row(m.name, m.model, o.schedule[i]!, Number(m.model.provenance?.tokens ?? 0));
    const record = {
      method: 'plrd',
      parent: { path: p.path, params: rows[0]!.params, bytes: rows[0]!.bytes },
      schedule: o.schedule,
      recoverTokens: o.recoverTokens,
      heldOut: held.name,
      members: rows
        .slice(1)
        .map((r, i) => ({ dir: members[i]!.name, ...r, provenance: members[i]!.model.provenance ?? null })),
      parentPpl: rows[0]!.ppl,
      seconds,
    };
    await saveFamily(members, record, o.out, o);
    if (o.json) printJson(record);
    else {
      process.stdout.write(
        `${table(
          ['member', 'fraction', 'params', 'bytes', 'held-out ppl', 'recovery tokens'],
          rows.map((r) => [
            r.name,
            r.fraction === null ? '1 (dense)' : r.fraction.toFixed(2),
            formatCount(r.params),
            formatBytes(r.bytes),
            r.ppl.toFixed(4),
            formatCount(r.tokens),
          ]),
        )}\nwrote ${members.length} members and family.json to ${o.out} (${seconds.toFixed(1)} s)\n`,
      );
    }
  });
}
