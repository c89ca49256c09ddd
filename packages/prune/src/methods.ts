// the statistics of a method context are @lineage/calibrate's (its accessors typed by declaration merging)
import type {} from '@lineage/calibrate';
import {
  asMethodOption,
  type CompressionMethod,
  decreasingSizes,
  type FamilyMethod,
  familyMethod,
  type Json,
  LineageError,
  type LlamaConfig,
  type LlamaModel,
  type MethodContext,
  type MethodStats,
  modelFingerprint,
  OptionError,
  parseOptions,
  perplexity,
  splitDocuments,
  z,
} from '@lineage/core';
import pkg from '../package.json' with { type: 'json' };
import { depthLossIncrease, keepAroundBlock } from './depth.js';
import {
  activationImportance,
  type Importance,
  magnitudeImportance,
  randomImportance,
} from './importance.js';
import { keptLayers, type PruneOptions, pruneToShape } from './prune.js';
import { budgetOf, type Candidate, candidates } from './search.js';
import { AXES, denseParams, formatShape, parseAxes, parseShape, prunedConfig } from './shape.js';

/** This package's version (from its package.json, inlined at build time): the methods' `version`. */
export const VERSION: string = pkg.version;

const wholeTokens = z
  .number()
  .int('must be a whole number ≥ 0')
  .min(0, 'must be a whole number ≥ 0')
  .default(0);

/** Options of `minitron`: a parameter budget (`params`) or an explicit target (`shape`), exactly one. */
export const minitronOptions = z.object({
  params: z.number().positive('must be a fraction in (0, 1) or a parameter count').optional().meta({
    description:
      "target size: a fraction in (0, 1) of the parent's total parameters (embedding and head included), or a count",
  }),
  shape: z.string().optional().meta({
    description: 'or an explicit target shape: layers=..,hidden=..,heads=..,kv-heads=..,ffn=.. (any subset)',
    placeholder: 'spec',
  }),
  axes: z
    .string()
    .default('heads,ffn,hidden,layers')
    .meta({ description: `axes a --params search may cut (of ${AXES.join(', ')})`, placeholder: 'list' }),
  multipleOf: z
    .number()
    .int('must be a whole number ≥ 1')
    .min(1, 'must be a whole number ≥ 1')
    .default(1)
    .meta({ description: 'hidden and FFN widths are multiples of this (ModelOpt: 64)' }),
  importance: z.enum(['activation', 'random', 'magnitude']).default('activation').meta({
    description:
      "component scores: 'activation' (Minitron, from --stats importance or calibrated on --data), or the ablations 'random' and 'magnitude'",
  }),
  depth: z.enum(['block', 'loss', 'contiguous']).default('block').meta({
    description:
      "layers dropped by: 'block' (Block Importance 1 − cos), 'loss' (LM-loss increase when each layer is removed), 'contiguous' (the contiguous block whose removal costs least)",
    flag: 'depth-importance',
  }),
  kvGroups: z
    .boolean()
    .default(false)
    .meta({ description: 'prune attention as whole KV groups (query heads go with their group)' }),
  search: z
    .number()
    .int('must be a whole number ≥ 1')
    .min(1, 'must be a whole number ≥ 1')
    .default(4)
    .meta({ description: 'candidate shapes a --params search compares (the largest within the budget)' }),
  searchTokens: wholeTokens.meta({
    description: 'distillation tokens per search candidate before ranking (0: rank right after pruning)',
  }),
  searchHoldout: z
    .number()
    .int('must be a whole number ≥ 1')
    .min(1, 'must be a whole number ≥ 1')
    .default(50)
    .meta({ description: 'documents at the end of the --data text that rank the search candidates' }),
  hiddenLoss: z.number().min(0, 'must be ≥ 0').default(0).meta({
    description:
      "distillation: weight of the hidden-state loss between each kept layer and the parent's same layer (when the hidden width is kept; 0: KL only)",
  }),
  recoverTokens: wholeTokens.meta({
    description: 'distillation tokens for the pruned model (forward KL from the parent; 0: none)',
  }),
});
export type MinitronOptions = z.input<typeof minitronOptions>;
type Parsed = z.output<typeof minitronOptions>;

/** A minitron family's sizes: decreasing fractions of the parent's parameters. */
export const minitronSizes = decreasingSizes(
  z.number().gt(0, 'must be in (0, 1)').lt(1, 'must be in (0, 1)'),
);

/** Options of a minitron family: decreasing fractions of the parent's parameters, each from the previous. */
export interface MinitronFamilyOptions extends Omit<MinitronOptions, 'params' | 'shape'> {
  sizes: readonly number[];
}

function parentRecord(model: LlamaModel): Record<string, Json> {
  const rec: Record<string, Json> = { fingerprint: modelFingerprint(model), params: model.stats().params };
  const name = model.provenance?.source;
  if (name !== undefined) rec.source = name;
  return rec;
}

/** Options checked once, at creation: a one-line error names the bad one before any work. */
function check(o: Parsed, where: string, family: boolean): void {
  if (!family && (o.params === undefined) === (o.shape === undefined))
    throw o.params === undefined
      ? new OptionError(
          where,
          'params',
          undefined,
          'give either {params} (a target size) or {shape} (an explicit target)',
        )
      : new OptionError(where, 'shape', o.shape, 'give either {params} (a target size) or {shape}, not both');
  if (o.shape !== undefined) parseShape(o.shape);
  parseAxes(o.axes);
}

/** The component scores of `model` the options ask for. */
async function importanceOf(
  o: Parsed,
  ctx: MethodContext,
  model: LlamaModel,
  isParent: boolean,
): Promise<Importance> {
  let imp: Importance;
  if (o.importance === 'random') imp = randomImportance(model.config, ctx.seed);
  else if (o.importance === 'magnitude') imp = magnitudeImportance(model);
  else {
    let stats: MethodStats | undefined = isParent ? ctx.stats : undefined;
    if (stats && !stats.has('importance')) stats = undefined;
    if (stats) {
      const fp = modelFingerprint(model);
      if (stats.info.modelFingerprint !== fp)
        throw new LineageError(
          'minitron: the statistics were computed for another model (fingerprints differ); recompute them with lineage calibrate --stats importance',
          stats.path,
        );
    } else if (ctx.calibrate) stats = await ctx.calibrate(model, { statistics: ['importance'] });
    else
      throw new LineageError(
        'minitron: activation importance needs calibration statistics with importance (--stats <file> from lineage calibrate --stats importance) or calibration text (--data <file>); or use --importance random|magnitude',
      );
    imp = await activationImportance(stats, model.config);
  }
  if (o.depth === 'loss') {
    if (!ctx.data)
      throw new LineageError('minitron: --depth-importance loss needs text to score on (--data <file>)');
    imp.layers = await depthLossIncrease(model, ctx.backend, ctx.data, 1, depthOptions(ctx, isParent));
  }
  return imp;
}

function depthOptions(ctx: MethodContext, isParent: boolean) {
  const path = isParent ? ctx.stats?.path : undefined;
  return {
    ...(path ? { cache: `${path}.minitron-depth.json` } : {}),
    log: (m: string) => ctx.log.info(m),
  };
}

/** The pruned model of one candidate shape, and the parent layers it kept. */
async function pruneOne(
  o: Parsed,
  ctx: MethodContext,
  model: LlamaModel,
  imp: Importance,
  target: LlamaConfig,
  isParent: boolean,
): Promise<{ model: LlamaModel; layers: Int32Array }> {
  const drop = model.config.numLayers - target.numLayers;
  let options: PruneOptions = {};
  if (o.depth === 'contiguous' && drop > 0) {
    if (!ctx.data)
      throw new LineageError(
        'minitron: --depth-importance contiguous needs text to score on (--data <file>)',
      );
    const inc = await depthLossIncrease(model, ctx.backend, ctx.data, drop, depthOptions(ctx, isParent));
    options = { keepLayers: keepAroundBlock(inc, model.config.numLayers, drop) };
  }
  return {
    model: pruneToShape(model, imp, target, options),
    layers: keptLayers(imp, model.config.numLayers, target, options),
  };
}

/**
 * The distillation budget: `tokens` from `teacher`, with the hidden-state loss between each kept layer and
 * the teacher's same layer (`teacherLayers[i]` behind student layer i) when asked for and the width allows it.
 */
function budget(
  o: Parsed,
  tokens: number,
  teacher: LlamaModel,
  student: LlamaModel,
  teacherLayers: readonly number[],
) {
  const hidden =
    o.hiddenLoss > 0 &&
    teacherLayers.length === student.config.numLayers &&
    student.config.hiddenSize === teacher.config.hiddenSize
      ? { hidden: { layers: teacherLayers.map((t, s) => [s, t] as const), weight: o.hiddenLoss } }
      : {};
  return { tokens, teacher, ...hidden };
}

/** The last `n` documents of the context's text (or its last 5% as a stream): what ranks candidates. */
function heldOut(ctx: MethodContext, n: number): { text: string; separator?: string } | undefined {
  const d = ctx.data;
  if (!d) return undefined;
  if (d.separator) {
    const docs = splitDocuments(d.text, d.separator);
    return { text: docs.slice(-n).join(`\n${d.separator}\n`), separator: d.separator };
  }
  return { text: d.text.slice(Math.floor(d.text.length * 0.95)) };
}

/**
 * The parent's layer behind each layer `source` kept (`layers`): the same indices when `source` is the
 * parent, else through the `parentLayers` a family member records; empty when unknown.
 */
function toTeacher(source: LlamaModel, isParent: boolean, layers: Int32Array): number[] {
  if (isParent) return [...layers];
  const map = source.provenance?.parentLayers;
  if (!Array.isArray(map) || map.length !== source.config.numLayers) return [];
  return [...layers].map((l) => Number(map[l]));
}

interface Ranked extends Candidate {
  nll?: number;
}

/**
 * Prunes `source` to each candidate, distils each briefly from `teacher` (searchTokens), ranks them by loss on
 * held-out text, prints the table and returns the ranked list (best first).
 */
async function rank(
  o: Parsed,
  ctx: MethodContext,
  source: LlamaModel,
  imp: Importance,
  list: Candidate[],
  teacher: LlamaModel,
  isParent: boolean,
): Promise<Ranked[]> {
  const text = heldOut(ctx, o.searchHoldout);
  if (!text) {
    ctx.log.warn('minitron: no --data text to rank the search candidates by: the largest shape is taken');
    return list;
  }
  const seqLen = Math.min(256, source.config.maxPositions);
  const evalOpts = text.separator
    ? { protocol: 'documents' as const, separator: text.separator, seqLen }
    : { protocol: 'stream' as const, seqLen };
  const out: Ranked[] = [];
  for (const [i, c] of list.entries()) {
    let { model: m, layers } = await pruneOne(o, ctx, source, imp, c.config, isParent);
    if (o.searchTokens > 0) {
      if (!ctx.recover)
        throw new LineageError('minitron search distillation needs training: import @lineage/distill');
      const map = toTeacher(source, isParent, layers);
      m = await ctx.recover(m, budget(o, o.searchTokens, teacher, m, map));
    }
    const r = await perplexity(m, ctx.backend, text.text, evalOpts);
    m.release();
    out.push({ ...c, nll: r.nll });
    ctx.log.info(
      `minitron candidate ${i + 1}/${list.length}: ${formatShape(c.config)} (${c.params} params): held-out loss ${r.nll.toFixed(4)}`,
    );
  }
  out.sort((a, b) => a.nll! - b.nll!);
  const lines = [
    `minitron search: ${list.length} candidates, ${o.searchTokens} distillation tokens each, ranked by loss on the last ${o.searchHoldout} documents`,
    '  rank  params    loss     shape',
    ...out.map(
      (c, i) =>
        `  ${String(i + 1).padStart(4)}  ${String(c.params).padEnd(8)}  ${c.nll!.toFixed(4)}  ${formatShape(c.config)}`,
    ),
  ];
  ctx.log.info(lines.join('\n'));
  return out;
}

interface Step {
  model: LlamaModel;
  record: Record<string, Json>;
}

/** The shapes a --params search over `source` may choose from. */
function searchSpace(o: Parsed, source: LlamaModel) {
  return {
    axes: parseAxes(o.axes),
    multipleOf: o.multipleOf,
    kvGroups: o.kvGroups,
    untiedHead: source.lmHead !== undefined,
  };
}

/** One pruning step: importance of `source`, the target shape(s), search, pruning, distillation. */
async function step(
  o: Parsed,
  ctx: MethodContext,
  source: LlamaModel,
  teacher: LlamaModel,
  isParent: boolean,
  budgetParams: number | undefined,
): Promise<Step> {
  const t0 = performance.now();
  const untied = source.lmHead !== undefined;
  const sourceParams = denseParams(source.config, untied);
  let list: Candidate[];
  if (o.shape !== undefined) {
    const config = prunedConfig(source.config, parseShape(o.shape), o.multipleOf);
    list = [{ config, params: denseParams(config, untied) }];
  } else {
    list = candidates(source.config, budgetParams!, o.search, searchSpace(o, source));
  }
  const imp = await importanceOf(o, ctx, source, isParent);
  const ranked: Ranked[] = list.length > 1 ? await rank(o, ctx, source, imp, list, teacher, isParent) : list;
  const best = ranked[0]!;
  ctx.log.info(`minitron: pruning to ${formatShape(best.config)} (${best.params} of ${sourceParams} params)`);
  const pruned = await pruneOne(o, ctx, source, imp, best.config, isParent);
  let model = pruned.model;
  const parentLayers = toTeacher(source, isParent, pruned.layers);
  const pruneSeconds = (performance.now() - t0) / 1000;
  if (o.recoverTokens > 0) {
    if (!ctx.recover) throw new LineageError('minitron recovery needs training: import @lineage/distill');
    model = await ctx.recover(model, budget(o, o.recoverTokens, teacher, model, parentLayers));
  }
  const record: Record<string, Json> = {
    shape: formatShape(best.config),
    params: model.stats().params,
    ...(parentLayers.length ? { parentLayers } : {}),
    importance: o.importance,
    depthImportance: o.depth,
    kvGroups: o.kvGroups,
    multipleOf: o.multipleOf,
    ...(o.shape !== undefined ? { target: o.shape } : { axes: o.axes, budget: budgetParams! }),
    candidates: ranked.map((c) => ({
      shape: formatShape(c.config),
      params: c.params,
      ...(c.nll !== undefined ? { heldOutLoss: c.nll } : {}),
    })),
    searchTokens: list.length > 1 ? o.searchTokens : 0,
    recoverTokens: o.recoverTokens,
    pruneSeconds,
    wallSeconds: (performance.now() - t0) / 1000,
  };
  return { model, record };
}

function needsOf(o: Parsed) {
  return {
    ...(o.importance === 'activation' ? { stats: ['importance'] } : {}),
    ...(o.depth !== 'block' ? { data: true } : {}),
    training: o.recoverTokens > 0 || o.searchTokens > 0,
  };
}

/**
 * Minitron (Muralidharan et al., 2024): structured pruning of heads, KV groups, FFN neurons, hidden channels
 * and layers by activation importance, to an explicit shape or to the best of the shapes within a parameter
 * budget (architecture search), then distillation from the parent. The result is a plain, smaller Llama.
 */
export function minitron(options: MinitronOptions): CompressionMethod<LlamaModel> {
  const o = parseOptions(minitronOptions, options, { where: 'minitron' });
  check(o, 'minitron', false);
  return {
    name: 'minitron',
    version: VERSION,
    needs: needsOf(o),
    async apply(model, ctx) {
      const untied = model.lmHead !== undefined;
      const parentParams = denseParams(model.config, untied);
      const r = await asMethodOption('minitron', async () => {
        const budget = o.params !== undefined ? budgetOf(o.params, parentParams) : undefined;
        return step(o, ctx, model, model, true, budget);
      });
      r.model.provenance = {
        method: 'minitron',
        methodVersion: VERSION,
        parent: parentRecord(model),
        ...(o.params !== undefined ? { fraction: o.params < 1 ? o.params : o.params / parentParams } : {}),
        achievedFraction: r.model.stats().params / model.stats().params,
        ...r.record,
        tokens: o.recoverTokens,
      };
      return r.model;
    },
  };
}

/**
 * A Minitron family: member i is pruned from member i − 1 (iterative pruning, as the paper recommends past
 * 50%) to sizes[i] of the parent's parameters, scored by its own importance (calibrated through the context
 * for members after the first), and distilled from the parent.
 */
export function minitronFamily(options: MinitronFamilyOptions): FamilyMethod {
  const o = parseOptions(
    minitronOptions,
    { ...options, params: undefined, shape: undefined },
    {
      where: 'minitron',
    },
  );
  check(o, 'minitron', true);
  const sizes = parseOptions(
    z.object({ sizes: minitronSizes }),
    { sizes: options.sizes },
    { where: 'minitron' },
  ).sizes;
  return familyMethod({
    name: 'minitron',
    version: VERSION,
    needs: needsOf(o),
    sizes,
    derivation: 'progressive',
    async member(previous, i, ctx, parent) {
      const parentParams = denseParams(parent.config, parent.lmHead !== undefined);
      const budget = Math.floor(sizes[i]! * parentParams);
      // a size no shape fits is refused before the member's note, as the step would refuse it
      await asMethodOption(
        'minitron',
        async () => candidates(previous.config, budget, o.search, searchSpace(o, previous)),
        { params: 'sizes' },
      );
      ctx.log.info(`minitron member ${i + 1}/${sizes.length}: ${sizes[i]} of the parent's parameters`);
      const r = await asMethodOption('minitron', () => step(o, ctx, previous, parent, i === 0, budget), {
        params: 'sizes',
      });
      const before = i === 0 ? 0 : Number(previous.provenance?.tokens ?? 0);
      r.model.provenance = {
        method: 'minitron',
        methodVersion: VERSION,
        parent: parentRecord(parent),
        step: i + 1,
        schedule: sizes,
        derivedFrom: i === 0 ? 'parent' : `member ${i}`,
        teacher: 'parent',
        fraction: sizes[i]!,
        achievedFraction: r.model.stats().params / parent.stats().params,
        ...r.record,
        tokens: before + o.recoverTokens,
      };
      return r.model;
    },
  });
}
