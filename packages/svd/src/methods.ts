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
  type LlamaModel,
  type MethodContext,
  modelFingerprint,
  OptionError,
  parseOptions,
  z,
} from '@lineage/core';
import pkg from '../package.json' with { type: 'json' };
import { checkFractions, type DecomposeResult, decomposeModel, ranksRecord } from './decompose-model.js';
import type { GramSource } from './factorize.js';

/** This package's version (from its package.json, inlined at build time): the methods' `version`. */
export const VERSION: string = pkg.version;

const fraction = z.number().gt(0, 'must be in (0, 1)').lt(1, 'must be in (0, 1)');

/** Decreasing fractions, one family member each: the sizes of the svd, plrd and basis families. */
export const fractionSizes = decreasingSizes(fraction);

/** Options every low-rank method takes. */
export const lowRankOptions = z.object({
  allocation: z.enum(['uniform', 'energy']).default('uniform').meta({
    description:
      "rank allocation: 'uniform' (same ratio per layer) or 'energy' (global budget by singular-value energy)",
  }),
  dataAware: z.boolean().default(false).meta({
    description:
      'whiten by calibration Grams (SVD-LLM): minimise the output error; Grams from --stats, or calibrated on the first --data file',
  }),
  /** Gram source for dataAware (default: the method context's statistics or calibration). */
  gram: z
    .custom<GramSource>(
      (v) => typeof (v as Partial<GramSource> | undefined)?.hessian === 'function',
      'must have hessian(layer)',
    )
    .optional()
    .meta({ cli: false }),
  includeHead: z.boolean().default(false).meta({ description: 'also decompose an untied output head' }),
});
export type LowRankOptions = z.input<typeof lowRankOptions>;

/** Options of `svd`: a target fraction (`params`) or one rank (`rank`), exactly one of them. */
export const svdOptions = z.object({
  params: fraction
    .optional()
    .meta({ description: 'target fraction of the decomposable parameters, in (0, 1)' }),
  rank: z
    .number()
    .int('must be a whole number')
    .positive('must be positive')
    .optional()
    .meta({ description: 'or one rank for every layer (instead of --params)' }),
  ...lowRankOptions.shape,
});
export type SvdMethodOptions = z.input<typeof svdOptions>;

/** Options of `svd` as a family at several sizes (`lineage family --method svd`). */
export interface SvdFamilyOptions extends LowRankOptions {
  /** Decreasing fractions of the decomposable parameters: one member each, each cut from the parent. */
  sizes: readonly number[];
  /** Recovery tokens of each member (distillation from the parent; 0: none). */
  recoverTokens?: number;
}

/** Options of `plrd`. */
export const plrdOptions = z.object({
  schedule: fractionSizes.meta({
    description: 'decreasing fractions of the decomposable parameters, e.g. 0.8,0.6,0.45,0.3',
  }),
  recoverTokens: z
    .number()
    .int('must be a whole number ≥ 0')
    .min(0, 'must be a whole number ≥ 0')
    .default(0)
    .meta({ description: 'recovery tokens after each step (distillation from the parent; 0: none)' }),
  teacher: z
    .enum(['parent', 'previous'])
    .default('parent')
    .meta({ description: "recovery teacher: 'parent' or 'previous' member" }),
  /**
   * With dataAware: whiten each step by the Grams of the model being truncated (the previous member,
   * calibrated through the context's `calibrate`), default true; false uses the parent's Grams throughout.
   */
  recalibrate: z.boolean().default(true).meta({ cli: false }),
  ...lowRankOptions.shape,
});
export type PlrdOptions = z.input<typeof plrdOptions>;

const GRAMS_NEEDED =
  'data-aware decomposition needs calibration statistics with hessian (--stats <file>) or calibration text (--data <file>)';

/**
 * The Grams that whiten `model`: the method's own source, else the context's statistics (which describe the
 * parent), else fresh ones from the context's calibration capability.
 */
async function gramFor(
  o: Pick<LowRank, 'dataAware' | 'gram'>,
  ctx: MethodContext,
  model: LlamaModel,
  isParent: boolean,
): Promise<GramSource | undefined> {
  if (!o.dataAware) return undefined;
  if (o.gram) return o.gram;
  if (isParent && ctx.stats) return ctx.stats;
  if (ctx.calibrate) return ctx.calibrate(model, { statistics: ['hessian'] });
  if (ctx.stats) return ctx.stats;
  throw new LineageError(GRAMS_NEEDED);
}

function parentRecord(model: LlamaModel): Record<string, Json> {
  const rec: Record<string, Json> = { fingerprint: modelFingerprint(model), params: model.stats().params };
  const name = model.provenance?.source;
  if (name !== undefined) rec.source = name;
  return rec;
}

function stepRecord(r: DecomposeResult, o: LowRank, target: number | null): Record<string, Json> {
  return {
    fraction: target,
    achievedFraction: r.plan.fraction,
    decomposableParams: r.plan.denseParams,
    allocation: o.allocation,
    dataAware: o.dataAware,
    ranks: ranksRecord(r.layers),
  };
}

type LowRank = z.output<typeof lowRankOptions>;

function decomposeOptions(o: LowRank, ctx: MethodContext, gram: GramSource | undefined) {
  return {
    allocation: o.allocation,
    ...(o.includeHead ? { includeHead: true } : {}),
    progress: ctx.progress,
    ...(gram ? { gram } : {}),
  };
}

/** The parent's Grams, computed once per parent however many members use them. */
function parentGrams(
  o: LowRank,
): (ctx: MethodContext, parent: LlamaModel) => Promise<GramSource | undefined> {
  const memo = new WeakMap<LlamaModel, Promise<GramSource | undefined>>();
  return (ctx, parent) => {
    let g = memo.get(parent);
    if (!g) {
      g = gramFor(o, ctx, parent, true);
      memo.set(parent, g);
    }
    return g;
  };
}

/** One-shot truncated SVD to a target size: the baseline. */
export function svd(options: SvdMethodOptions): CompressionMethod<LlamaModel> {
  const o = parseOptions(svdOptions, options, { where: 'svd' });
  if ((o.params === undefined) === (o.rank === undefined))
    throw o.params === undefined
      ? new OptionError('svd', 'params', undefined, 'give either {params} (a target fraction) or {rank}')
      : new OptionError(
          'svd',
          'rank',
          o.rank,
          'give either {params} (a target fraction) or {rank}, not both',
        );
  return {
    name: 'svd',
    version: VERSION,
    needs: o.dataAware && !o.gram ? { stats: ['hessian'] } : {},
    async apply(model, ctx) {
      const t0 = performance.now();
      const gram = await gramFor(o, ctx, model, true);
      const r = await asMethodOption('svd', () =>
        decomposeModel(model, {
          ...(o.params !== undefined ? { fraction: o.params } : { rank: o.rank! }),
          ...decomposeOptions(o, ctx, gram),
        }),
      );
      logDense(ctx, r);
      r.model.provenance = {
        method: 'svd',
        methodVersion: VERSION,
        parent: parentRecord(model),
        ...stepRecord(r, o, o.params ?? null),
        tokens: 0,
        wallSeconds: (performance.now() - t0) / 1000,
      };
      return r.model;
    },
  };
}

/**
 * One-shot SVD at several sizes: every member is cut from the parent (independently), then recovered for
 * `recoverTokens` by distillation from the parent. The baseline family PLRD is compared with.
 */
export function svdFamily(options: SvdFamilyOptions): FamilyMethod {
  const o = parseOptions(lowRankOptions, options, { where: 'svd' });
  const sizes = parseOptions(
    z.object({ sizes: fractionSizes }),
    { sizes: options.sizes },
    { where: 'svd' },
  ).sizes;
  const recoverTokens = parseOptions(plrdOptions.pick({ recoverTokens: true }), options, {
    where: 'svd',
  }).recoverTokens;
  const grams = parentGrams(o);
  return familyMethod({
    name: 'svd',
    version: VERSION,
    needs: { ...(o.dataAware && !o.gram ? { stats: ['hessian'] } : {}), training: recoverTokens > 0 },
    sizes,
    derivation: 'independent',
    async member(parent, i, ctx) {
      const t0 = performance.now();
      const fraction = sizes[i]!;
      if (i === 0)
        await asMethodOption('svd', async () => checkFractions(parent, sizes, o), { params: 'sizes' });
      ctx.log.info(
        `svd member ${i + 1}/${sizes.length}: ranks to ${fraction} of the decomposable parameters`,
      );
      const gram = await grams(ctx, parent);
      // the fraction is one of the family's sizes
      const r = await asMethodOption(
        'svd',
        () => decomposeModel(parent, { fraction, ...decomposeOptions(o, ctx, gram) }),
        { params: 'sizes' },
      );
      logDense(ctx, r);
      const decomposeSeconds = (performance.now() - t0) / 1000;
      let member = r.model;
      if (recoverTokens > 0) {
        if (!ctx.recover) throw new LineageError('svd recovery needs training: import @lineage/distill');
        member = await ctx.recover(member, { tokens: recoverTokens, teacher: parent });
      }
      member.provenance = {
        method: 'svd',
        methodVersion: VERSION,
        parent: parentRecord(parent),
        step: i + 1,
        schedule: sizes,
        derivedFrom: 'parent',
        ...stepRecord(r, o, fraction),
        recoverTokens,
        teacher: 'parent',
        tokens: recoverTokens,
        decomposeSeconds,
        wallSeconds: (performance.now() - t0) / 1000,
      };
      return member;
    },
  });
}

function logDense(ctx: MethodContext, r: DecomposeResult): void {
  const dense = r.layers.filter((l) => l.rank === undefined);
  if (dense.length)
    ctx.log.info(`${dense.length} of ${r.layers.length} layers stay dense (${dense[0]!.note})`);
}

/**
 * Progressive low-rank decomposition: each member is the previous one with its ranks lowered to the next
 * fraction, then recovered (the context's `recover`: distillation from the parent, or LM training) for
 * `recoverTokens`. Returns the family, largest first; every member's `provenance` records its lineage.
 */
export function plrd(options: PlrdOptions): FamilyMethod {
  const o = parseOptions(plrdOptions, options, { where: 'plrd' });
  const schedule = o.schedule;
  const recalibrate = o.dataAware && o.recalibrate && !o.gram;
  const grams = parentGrams(o);
  return familyMethod({
    name: 'plrd',
    version: VERSION,
    needs: {
      ...(o.dataAware && !o.gram ? { stats: ['hessian'] } : {}),
      training: o.recoverTokens > 0,
    },
    sizes: schedule,
    derivation: 'progressive',
    async member(previous, i, ctx, parent) {
      const t0 = performance.now();
      const fraction = schedule[i]!;
      if (i === 0 && recalibrate && !ctx.calibrate && ctx.stats)
        ctx.log.warn(
          "no calibration text: every step whitens by the parent's statistics (give --data to calibrate each member)",
        );
      if (i === 0)
        await asMethodOption('plrd', async () => checkFractions(previous, schedule, o), {
          params: 'schedule',
        });
      ctx.log.info(
        `PLRD step ${i + 1}/${schedule.length}: ranks to ${fraction} of the decomposable parameters`,
      );
      const ownGrams = i > 0 && recalibrate && !!ctx.calibrate;
      const gram = ownGrams ? await gramFor(o, ctx, previous, false) : await grams(ctx, parent);
      const r = await asMethodOption(
        'plrd',
        () => decomposeModel(previous, { fraction, ...decomposeOptions(o, ctx, gram) }),
        { params: 'schedule' },
      );
      logDense(ctx, r);
      let member = r.model;
      const decomposeSeconds = (performance.now() - t0) / 1000;
      if (o.recoverTokens > 0) {
        if (!ctx.recover) throw new LineageError('PLRD recovery needs training: import @lineage/distill');
        const teacher = o.teacher === 'previous' ? previous : parent;
        member = await ctx.recover(member, { tokens: o.recoverTokens, teacher });
      }
      const before = i === 0 ? 0 : Number(previous.provenance?.tokens ?? 0);
      member.provenance = {
        method: 'plrd',
        methodVersion: VERSION,
        parent: parentRecord(parent),
        step: i + 1,
        schedule,
        derivedFrom: i === 0 ? 'parent' : `member ${i}`,
        ...stepRecord(r, o, fraction),
        ...(o.dataAware ? { whitenedBy: ownGrams ? `member ${i}` : 'parent' } : {}),
        recoverTokens: o.recoverTokens,
        teacher: o.teacher,
        tokens: before + o.recoverTokens,
        decomposeSeconds,
        wallSeconds: (performance.now() - t0) / 1000,
      };
      return member;
    },
  });
}
