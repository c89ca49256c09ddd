// the statistics of a method context are @lineage/calibrate's (its accessors typed by declaration merging)
import type {} from '@lineage/calibrate';
import {
  type CompressionMethod,
  type Json,
  LineageError,
  type LlamaModel,
  type MethodContext,
  modelFingerprint,
} from '@lineage/core';
import type { Allocation } from './allocation.js';
import { type DecomposeResult, decomposeModel, ranksRecord } from './decompose-model.js';
import type { GramSource } from './factorize.js';

export const VERSION = '0.1.0';

export interface LowRankOptions {
  /** 'uniform' (SVD-LLM's per-layer ratio, default) or 'energy' (one global budget by singular-value energy). */
  allocation?: Allocation;
  /** Whiten by the input Gram of each layer (needs calibration statistics with `hessian`). */
  dataAware?: boolean;
  /** Gram source for dataAware (default: the method context's statistics). */
  gram?: GramSource;
  /** Also decompose an untied output head. */
  includeHead?: boolean;
}

export interface SvdMethodOptions extends LowRankOptions {
  /** Target fraction of the decomposable parameters, in (0, 1). */
  params?: number;
  /** Or one rank for every layer (layers where it saves nothing stay dense, and the record says so). */
  rank?: number;
}

export interface PlrdOptions extends LowRankOptions {
  /** Decreasing fractions of the decomposable parameters, each in (0, 1): one family member each. */
  schedule: readonly number[];
  /** Recovery tokens after each step (0: no recovery). */
  recoverTokens: number;
  /** Teacher of each recovery: the parent (default) or the previous member. */
  teacher?: 'parent' | 'previous';
  /**
   * With dataAware: whiten each step by the Grams of the model being truncated (the previous member,
   * calibrated through the context's `calibrate`), default true; false uses the parent's Grams throughout.
   */
  recalibrate?: boolean;
}

function checkFraction(p: number, what: string): void {
  if (!(typeof p === 'number' && p > 0 && p < 1))
    throw new LineageError(`${what} must be in (0, 1), got ${String(p)}`);
}

const GRAMS_NEEDED =
  'data-aware decomposition needs calibration statistics with hessian (--stats <file>) or calibration text (--data <file>)';

/**
 * The Grams that whiten `model`: the method's own source, else the context's statistics (which describe the
 * parent), else fresh ones from the context's calibration capability.
 */
async function gramFor(
  o: LowRankOptions,
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

function stepRecord(r: DecomposeResult, o: LowRankOptions, target: number | null): Record<string, Json> {
  return {
    fraction: target,
    achievedFraction: r.plan.fraction,
    decomposableParams: r.plan.denseParams,
    allocation: o.allocation ?? 'uniform',
    dataAware: o.dataAware ?? false,
    ranks: ranksRecord(r.layers),
  };
}

/** One-shot truncated SVD to a target size: the baseline. */
export function svd(o: SvdMethodOptions): CompressionMethod<LlamaModel> {
  if ((o.params === undefined) === (o.rank === undefined))
    throw new LineageError('svd: give either params (a target fraction) or rank');
  if (o.params !== undefined) checkFraction(o.params, 'params (the target fraction)');
  return {
    name: 'svd',
    version: VERSION,
    needs: o.dataAware && !o.gram ? { stats: ['hessian'] } : {},
    async apply(model, ctx) {
      const t0 = performance.now();
      const r = await decomposeModel(model, {
        ...(o.params !== undefined ? { fraction: o.params } : { rank: o.rank! }),
        ...(o.allocation ? { allocation: o.allocation } : {}),
        ...(o.includeHead ? { includeHead: true } : {}),
        progress: ctx.progress,
        ...(o.dataAware ? { gram: (await gramFor(o, ctx, model, true))! } : {}),
      });
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
export function plrd(o: PlrdOptions): CompressionMethod<LlamaModel[]> {
  const schedule = [...o.schedule];
  if (!schedule.length) throw new LineageError('the PLRD schedule is empty');
  schedule.forEach((p, i) => {
    checkFraction(p, `schedule entry ${i + 1}`);
    if (i > 0 && !(p < schedule[i - 1]!))
      throw new LineageError(`the schedule must be decreasing: ${schedule[i - 1]} then ${p}`);
  });
  if (!(Number.isInteger(o.recoverTokens) && o.recoverTokens >= 0))
    throw new LineageError(`recoverTokens must be a whole number ≥ 0, got ${o.recoverTokens}`);
  return {
    name: 'plrd',
    version: VERSION,
    needs: {
      ...(o.dataAware && !o.gram ? { stats: ['hessian'] } : {}),
      training: o.recoverTokens > 0,
    },
    async apply(parent, ctx) {
      const family: LlamaModel[] = [];
      const recalibrate = o.dataAware && o.recalibrate !== false && !o.gram;
      if (recalibrate && !ctx.calibrate && ctx.stats)
        ctx.log.warn(
          "no calibration text: every step whitens by the parent's statistics (give --data to calibrate each member)",
        );
      const parentGram = await gramFor(o, ctx, parent, true);
      const parentRec = parentRecord(parent);
      let previous = parent;
      let tokensTotal = 0;
      for (const [i, fraction] of schedule.entries()) {
        const t0 = performance.now();
        ctx.log.info(
          `PLRD step ${i + 1}/${schedule.length}: ranks to ${fraction} of the decomposable parameters`,
        );
        const ownGrams = i > 0 && recalibrate && !!ctx.calibrate;
        const gram = ownGrams ? await gramFor(o, ctx, previous, false) : parentGram;
        const r = await decomposeModel(previous, {
          fraction,
          ...(o.allocation ? { allocation: o.allocation } : {}),
          ...(o.includeHead ? { includeHead: true } : {}),
          progress: ctx.progress,
          ...(gram ? { gram } : {}),
        });
        logDense(ctx, r);
        let member = r.model;
        const decomposeSeconds = (performance.now() - t0) / 1000;
        if (o.recoverTokens > 0) {
          if (!ctx.recover) throw new LineageError('PLRD recovery needs training: import @lineage/distill');
          const teacher = o.teacher === 'previous' ? previous : parent;
          member = await ctx.recover(member, { tokens: o.recoverTokens, teacher });
        }
        tokensTotal += o.recoverTokens;
        member.provenance = {
          method: 'plrd',
          methodVersion: VERSION,
          parent: parentRec,
          step: i + 1,
          schedule,
          derivedFrom: i === 0 ? 'parent' : `member ${i}`,
          ...stepRecord(r, o, fraction),
          ...(o.dataAware ? { whitenedBy: ownGrams ? `member ${i}` : 'parent' } : {}),
          recoverTokens: o.recoverTokens,
          teacher: o.teacher ?? 'parent',
          tokens: tokensTotal,
          decomposeSeconds,
          wallSeconds: (performance.now() - t0) / 1000,
        };
        family.push(member);
        previous = member;
      }
      return family;
    },
  };
}
