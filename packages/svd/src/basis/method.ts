import type {} from '@lineage/calibrate';
import {
  type CompressionMethod,
  type FamilyMethod,
  familyMethod,
  type Json,
  LineageError,
  type LlamaModel,
  type MethodContext,
  modelFingerprint,
  type Ops,
  OptionError,
  type ParamGroup,
  parseOptions,
  type Regularizer,
  type Tensor,
  type TrainBudget,
  z,
} from '@lineage/core';
import { rankForFraction } from '../allocation.js';
import { decomposableLayers } from '../decompose-model.js';
import { type GramSource, whiteningOf } from '../factorize.js';
import { fractionSizes, lowRankOptions, VERSION } from '../methods.js';
import { BasisLinear } from './basis-linear.js';
import { basisOf } from './decompose-bases.js';
import { byImportance, geometric, globalCounts, type PruneLayer } from './prune-plan.js';

const fraction = z.number().gt(0, 'must be in (0, 1)').lt(1, 'must be in (0, 1)');
const positiveInt = z.number().int('must be a whole number').positive('must be positive');

/** Options of `basis` (Basis Selection). */
export const basisOptions = z.object({
  params: fraction.meta({ description: 'target fraction of the decomposable parameters, in (0, 1)' }),
  tokens: positiveInt.meta({
    description: 'target-domain training tokens in all: relearning rounds, then the final fine-tune',
  }),
  rounds: positiveInt.default(4).meta({
    description: 'relearn-then-prune rounds (1: one-shot prune of the relearned coefficients)',
  }),
  tokensPerRound: positiveInt.optional().meta({
    description:
      'tokens of each relearning round (default: 7% of --tokens over the rounds, about one optimiser step each at 60k; the rest fine-tunes)',
  }),
  coefficientsOnly: z.boolean().default(false).meta({
    description:
      "relearn only the coefficients and new bases (the authors' setting); by default the embeddings, norms and head also train, at the run learning rate",
  }),
  finetune: z.enum(['factors', 'coefficients']).default('factors').meta({
    description:
      "final fine-tune: 'factors' (the exported low_rank factors and the rest of the model, as an svd recovery) or 'coefficients' (coefficients and new bases only, before export)",
  }),
  newRank: z.number().int('must be a whole number ≥ 0').min(0, 'must be a whole number ≥ 0').default(0).meta({
    description:
      'new trainable bases per layer (A zero, B random: the layer starts unchanged); 0 by default: at a short budget they cost rank the fine-tune fills better',
  }),
  keepFraction: fraction.optional().meta({
    description:
      'share of the bases each round keeps (default: the geometric step that reaches --params in --rounds)',
  }),
  scope: z.enum(['layer', 'global']).default('global').meta({
    description:
      "pruning: 'layer' (every layer to the same parameter ratio) or 'global' (one cumulative-coefficient threshold)",
  }),
  l1: z
    .number()
    .min(0, 'must be ≥ 0')
    .default(0)
    .meta({ description: 'L1 weight on the coefficients while relearning (drives unneeded bases to zero)' }),
  kl: z
    .boolean()
    .default(false)
    .meta({ description: "relearn by distillation from the parent (KL) instead of the target's LM loss" }),
  lr: z
    .number()
    .positive('must be positive')
    .default(2e-2)
    .meta({ description: 'peak learning rate of the coefficients and new bases', flag: 'basis-lr' }),
  ...lowRankOptions.pick({ dataAware: true, gram: true, includeHead: true }).shape,
});
export type BasisOptions = z.input<typeof basisOptions>;
type Parsed = z.output<typeof basisOptions>;

/** Share of `tokens` the relearning rounds spend by default (the rest fine-tunes the exported factors). */
export const RELEARN_SHARE = 0.07;

const GRAMS_NEEDED =
  'basis: data-aware decomposition needs calibration statistics with hessian (--stats <file>) or calibration text (--data <file>)';

/** One layer's budget: the ranks that fit `params` and how many pretrained bases that leaves. */
interface LayerBudget {
  name: string;
  out: number;
  in: number;
  /** Pretrained bases the per-layer scope keeps at the end: the fraction's rank less the new bases. */
  bases: number;
}

/** Checks the sizes before any work: the new bases must leave room for pretrained ones. */
function budgets(model: LlamaModel, o: Parsed): { layers: LayerBudget[]; dense: number; target: number } {
  const layers = decomposableLayers(model, o.includeHead).map(([name, l]) => ({
    name,
    out: l.outFeatures,
    in: l.inFeatures,
    bases: rankForFraction(o.params, l.outFeatures, l.inFeatures) - o.newRank,
  }));
  if (!layers.length) throw new LineageError('basis: the model has no layers to decompose');
  const dense = layers.reduce((a, l) => a + l.out * l.in, 0);
  const perBasis = layers.reduce((a, l) => a + l.out + l.in, 0);
  // what the pretrained bases may cost in the exported factors, after the new bases' share
  const target = Math.floor(o.params * dense) - o.newRank * perBasis;
  if (o.scope === 'layer') {
    const tight = layers.find((l) => l.bases < 1);
    if (tight)
      throw new OptionError(
        'basis',
        'newRank',
        o.newRank,
        `saves nothing: at {params} ${o.params} layer '${tight.name}' has room for rank ${tight.bases + o.newRank} in all, which the new bases take (lower {newRank} or raise {params})`,
      );
  } else if (target < perBasis)
    throw new OptionError(
      'basis',
      'newRank',
      o.newRank,
      `saves nothing: at {params} ${o.params} the new bases leave no room for one pretrained basis per layer (lower {newRank} or raise {params})`,
    );
  return { layers, dense, target };
}

async function gramFor(o: Parsed, ctx: MethodContext, model: LlamaModel): Promise<GramSource | undefined> {
  if (!o.dataAware) return undefined;
  if (o.gram) return o.gram;
  if (ctx.stats) return ctx.stats;
  if (ctx.calibrate) return ctx.calibrate(model, { statistics: ['hessian'] });
  throw new LineageError(GRAMS_NEEDED);
}

function basisLayers(model: LlamaModel): [string, BasisLinear][] {
  return model.linearLayers().filter((e): e is [string, BasisLinear] => e[1] instanceof BasisLinear);
}

/** Σ w² over the coefficient tensors: the L1 norm of the (non-negative) effective coefficients. */
function coefficientL1(weight: number, names: ReadonlySet<string>): Regularizer {
  return {
    name: 'l1',
    weight,
    params: (n) => names.has(n),
    fn: async (ops: Ops, ts: readonly Tensor[]) => {
      let total: Tensor | undefined;
      for (const t of ts) {
        const s = await ops.reduce('sum', await ops.unary('square', t), [0]);
        total = total ? await ops.add(total, s) : s;
      }
      return total!;
    },
  };
}

/**
 * Basis Selection (Li et al. 2024): every decomposable linear becomes its pretrained bases (full SVD, plain
 * or whitened by target-data Grams) with trainable coefficients; the coefficients are relearned on the
 * target data (the context's `recover`: LM loss, or KL to the parent), the least important bases are
 * pruned in rounds down to `params`, new bases learn what the pretrained ones lack, and the result is
 * exported as ordinary `low_rank` layers of rank kept + newRank.
 */
export function basisSelection(options: BasisOptions): CompressionMethod<LlamaModel> {
  const o = parseOptions(basisOptions, options, { where: 'basis' });
  // relearning is short by default: the fine-tune of all factors is what the budget buys most of (BENCHMARKS.md)
  const perRound = o.tokensPerRound ?? Math.floor((RELEARN_SHARE * o.tokens) / o.rounds);
  const fineTune = o.tokens - o.rounds * perRound;
  if (perRound < 1 || fineTune < 1)
    throw new OptionError(
      'basis',
      'tokens',
      o.tokens,
      `do not cover ${o.rounds} rounds ({rounds}) of ${perRound} tokens and a fine-tune`,
    );
  return {
    name: 'basis',
    version: VERSION,
    needs: { data: true, training: true, ...(o.dataAware && !o.gram ? { stats: ['hessian'] } : {}) },
    async apply(parent, ctx) {
      const t0 = performance.now();
      const { layers, dense, target } = budgets(parent, o);
      if (!ctx.recover) throw new LineageError('basis needs training: import @lineage/distill');
      const gram = await gramFor(o, ctx, parent);

      let model = parent.clone();
      ctx.progress.start('bases', layers.length);
      for (const [i, l] of layers.entries()) {
        const layer = model.getLinear(l.name);
        const whitening = gram ? whiteningOf(await gram.hessian(l.name), l.in, l.name, gram.path) : undefined;
        const b = basisOf(layer, whitening, l.name);
        model.setLinear(l.name, o.newRank ? b.withNewBases(o.newRank, ctx.seed * 7919 + i) : b);
        ctx.progress.tick();
      }
      ctx.progress.end();
      const start = layers.map((l) => (model.getLinear(l.name) as BasisLinear).bases);
      const startLine = `${start.reduce((a, b) => a + b, 0)} pretrained bases in ${layers.length} layers${o.newRank ? `, ${o.newRank} new per layer` : ''}`;

      // only the coefficients (and the new bases) train; everything else stays bitwise the parent's
      const trainNames = new Set(layers.flatMap((l) => ['w', 'A', 'B'].map((s) => `${l.name}.${s}`)));
      const coefNames = new Set(layers.map((l) => `${l.name}.w`));
      const trainable = (n: string) => trainNames.has(n);
      const groups: ParamGroup[] = [{ params: trainable, lr: o.lr }];
      const budget = (tokens: number, relearn: boolean): TrainBudget & { teacher?: LlamaModel } => ({
        tokens,
        // U and V are frozen by their flags, so 'everything' is the coefficients, new bases and the rest
        trainable: o.coefficientsOnly ? trainable : () => true,
        groups,
        ...(relearn && o.l1 > 0 ? { regularizers: [coefficientL1(o.l1, coefNames)] } : {}),
        ...(o.kl ? { teacher: parent } : {}),
      });

      const startCost = layers.reduce((a, l, i) => a + start[i]! * (l.out + l.in), 0);
      const rounds: Json[] = [];
      for (let round = 1; round <= o.rounds; round++) {
        model = await ctx.recover(model, budget(perRound, true));
        const current = basisLayers(model);
        let counts: number[];
        if (o.scope === 'layer') {
          counts = layers.map((l, i) => {
            const end = Math.min(l.bases, start[i]!);
            const step =
              o.keepFraction !== undefined && round < o.rounds
                ? Math.ceil(start[i]! * o.keepFraction ** round)
                : Math.round(geometric(start[i]!, end, round, o.rounds));
            return Math.max(end, Math.min(step, current[i]![1].bases));
          });
        } else {
          const goal =
            o.keepFraction !== undefined && round < o.rounds
              ? Math.max(target, startCost * o.keepFraction ** round)
              : geometric(startCost, Math.min(target, startCost), round, o.rounds);
          const plan: PruneLayer[] = current.map(([, b], i) => ({
            coefficients: b.coefficients(),
            cost: layers[i]!.out + layers[i]!.in,
            min: 1,
          }));
          counts = globalCounts(plan, goal);
        }
        for (const [i, [name, b]] of current.entries()) {
          const keep = byImportance(b.coefficients())
            .slice(0, counts[i]!)
            .sort((x, y) => x - y);
          if (keep.length < b.bases) model.setLinear(name, b.keepBases(keep));
        }
        const kept = counts.reduce((a, b) => a + b, 0);
        rounds.push(kept);
        // logged after the first training call, so bad data fails before any other output
        if (round === 1) ctx.log.info(`basis: ${startLine}`);
        ctx.log.info(`basis round ${round}/${o.rounds}: relearned on ${perRound} tokens, ${kept} bases kept`);
      }
      if (o.finetune === 'coefficients') model = await ctx.recover(model, budget(fineTune, false));

      // export: ordinary low_rank factors of rank kept + new
      const ranks: Record<string, Json> = {};
      let params = 0;
      for (const [name, b] of basisLayers(model)) {
        const lr = b.exportLowRank();
        model.setLinear(name, lr);
        ranks[name] = lr.rank;
        params += lr.rank * (lr.outFeatures + lr.inFeatures);
      }
      if (o.finetune === 'factors')
        model = await ctx.recover(model, { tokens: fineTune, ...(o.kl ? { teacher: parent } : {}) });
      model.provenance = {
        method: 'basis',
        methodVersion: VERSION,
        parent: {
          fingerprint: modelFingerprint(parent),
          params: parent.stats().params,
          ...(parent.provenance?.source !== undefined ? { source: parent.provenance.source } : {}),
        },
        fraction: o.params,
        achievedFraction: params / dense,
        decomposableParams: dense,
        scope: o.scope,
        dataAware: o.dataAware,
        newRank: o.newRank,
        rounds: o.rounds,
        tokensPerRound: perRound,
        basesPerRound: rounds,
        relearn: o.kl ? 'kl' : 'lm',
        l1: o.l1,
        finetune: o.finetune,
        coefficientsOnly: o.coefficientsOnly,
        ranks,
        tokens: o.tokens,
        wallSeconds: (performance.now() - t0) / 1000,
      };
      return model;
    },
  };
}

/** Options of `basis` as a family (`lineage family --method basis`): the other options, for every size. */
export type BasisFamilyOptions = Omit<BasisOptions, 'params'> & {
  /** Decreasing fractions of the decomposable parameters: one member each, each from the parent. */
  sizes: readonly number[];
};

/**
 * Basis Selection at several sizes: every member is made from the parent independently (decomposed,
 * relearned and pruned on the target data with its own `tokens`), so members differ only in their size.
 */
export function basisFamily(options: BasisFamilyOptions): FamilyMethod {
  const { sizes: given, ...rest } = options;
  const sizes = parseOptions(z.object({ sizes: fractionSizes }), { sizes: given }, { where: 'basis' }).sizes;
  const members = sizes.map((params) => basisSelection({ ...rest, params })); // checks the options once
  return familyMethod({
    name: 'basis',
    version: VERSION,
    needs: members[0]!.needs ?? {},
    sizes,
    derivation: 'independent',
    async member(parent, i, ctx) {
      ctx.log.info(`basis member ${i + 1}/${sizes.length}: ${sizes[i]} of the decomposable parameters`);
      const m = await members[i]!.apply(parent, ctx);
      m.provenance = { ...m.provenance, step: i + 1, schedule: sizes, derivedFrom: 'parent' };
      return m;
    },
  });
}
