// the statistics of a method context are @lineage/calibrate's (its accessors typed by declaration merging)
import type {} from '@lineage/calibrate';
import {
  type CompressionMethod,
  decreasingSizes,
  type FamilyMethod,
  familyMethod,
  HostTensor,
  type Json,
  LineageError,
  type LlamaModel,
  type MethodContext,
  modelFingerprint,
  OptionError,
  parseOptions,
  z,
} from '@lineage/core';
import { E8P12, type QuantBits, sequentialWalkOf } from '@lineage/quant';
import { decomposableLayers } from '../decompose-model.js';
import { VERSION } from '../methods.js';
import { calderaLayer } from './layer.js';
import { QlrLinear } from './qlr-linear.js';

const bits = (allowed: readonly number[]) =>
  z
    .number()
    .int(`must be one of ${allowed.join(', ')}`)
    .refine((b) => allowed.includes(b), `must be one of ${allowed.join(', ')}`);
const whole = (what: string) => z.number().int(`must be a whole number ${what}`);

/** Options of `caldera` (defaults: the reference script's, with its dataclass's 5 LPLR iterations). */
export const calderaOptions = z.object({
  qBits: bits([2, 3, 4, 8]).default(2).meta({
    description: 'bits of Q (2, 3, 4 or 8): LDLQ on the calibration Hessian, one scale per matrix',
  }),
  qCodebook: z
    .enum(['scalar', E8P12])
    .optional()
    .meta({
      description: `Q's codebook at 2 bits: '${E8P12}' (QuIP#'s E8 lattice, one 16-bit code per 8 weights, as the reference) or 'scalar' (the uniform grid); default ${E8P12} with the Hadamard transform, scalar without`,
    }),
  lrBits: bits([2, 3, 4, 8, 16])
    .default(4)
    .meta({ description: 'bits of the factors L and R (2, 3, 4, 8; 16: not quantized)' }),
  rank: whole('≥ 1')
    .min(1, 'must be a whole number ≥ 1')
    .default(256)
    .meta({ description: 'rank of L·R (capped by each layer: at most its smaller side)' }),
  outerIters: whole('≥ 1')
    .min(1, 'must be a whole number ≥ 1')
    .default(20)
    .meta({ description: 'outer iterations (LR step, then Q step)' }),
  lplrIters: whole('≥ 1')
    .min(1, 'must be a whole number ≥ 1')
    .default(5)
    .meta({ description: 'LPLR iterations (least squares + quantization of L, then R) per LR step' }),
  hadamard: z
    .boolean()
    .default(true)
    .meta({ description: 'randomized Hadamard incoherence of W and H (signs stored with the layer)' }),
  hessianDowndate: z
    .boolean()
    .default(false)
    .meta({ description: "deflate H along L·R's row space before each Q step" }),
  ftRank: whole('≥ 0')
    .min(0, 'must be a whole number ≥ 0')
    .default(0)
    .meta({ description: 'leading ranks of L and R kept 16-bit and trainable' }),
  recoverTokens: whole('≥ 0').min(0, 'must be a whole number ≥ 0').default(0).meta({
    description: 'distillation tokens fine-tuning the 16-bit ranks from the parent (needs --ft-rank)',
  }),
  sequential: z.boolean().default(false).meta({
    description:
      'GPTQ-style calibration walk: each block decomposed from Hessians of inputs that went through the already compressed blocks (needs --data)',
  }),
});
export type CalderaOptions = z.input<typeof calderaOptions>;
type Parsed = z.output<typeof calderaOptions>;
/** Options with the default codebook resolved. */
type Resolved = Parsed & { qCodebook: 'scalar' | typeof E8P12 };

/** The checks across options (kept out of the schema, whose fields `lineage family` omits by name). */
function checked(p: Parsed): Resolved {
  if (p.qCodebook === E8P12 && p.qBits !== 2)
    throw new OptionError('caldera', 'qBits', p.qBits, `Q on the '${E8P12}' codebook has 2 bits: give 2`);
  // E8P12 pays with the transform (its codebook is a ball: docs/caldera.md); without the transform the scalar
  // grid, which keeps `--no-hadamard` layers exportable to ONNX
  const o: Resolved = { ...p, qCodebook: p.qCodebook ?? (p.hadamard && p.qBits === 2 ? E8P12 : 'scalar') };
  if (o.ftRank > o.rank) throw new OptionError('caldera', 'ftRank', o.ftRank, `exceeds {rank} ${o.rank}`);
  if (o.recoverTokens > 0 && o.ftRank === 0 && o.lrBits !== 16)
    throw new OptionError(
      'caldera',
      'recoverTokens',
      o.recoverTokens,
      'needs 16-bit ranks to train ({ftRank} > 0, or {lrBits} 16)',
    );
  return o;
}

const NEEDS =
  'caldera needs calibration statistics with hessian (--stats <file>) or calibration text (--data <file>)';

/** Bytes a qlr layer of rank k would store: codes, one Q scale, per-component scales, 16-bit ranks, signs. */
export function qlrBytes(
  m: number,
  n: number,
  k: number,
  o: Pick<Parsed, 'qBits' | 'lrBits' | 'ftRank' | 'hadamard'> & { qCodebook?: Parsed['qCodebook'] },
): number {
  const ft = o.lrBits === 16 ? k : Math.min(o.ftRank, k);
  const kq = k - ft;
  const packed = (count: number, b: number) => Math.ceil((count * b) / 8);
  // E8P12 (at 2 bits): a u16 code per 8 weights of each row, the width padded to a multiple of 8
  const q = o.qCodebook === E8P12 && o.qBits === 2 ? 2 * m * Math.ceil(n / 8) : packed(m * n, o.qBits);
  return (
    q +
    2 +
    (kq > 0 ? packed(kq * m, o.lrBits) + packed(kq * n, o.lrBits) + 4 * kq : 0) +
    2 * ft * (m + n) +
    (o.hadamard ? packed(m, 1) + packed(n, 1) : 0)
  );
}

/** Makes the 16-bit ranks 16-bit again (training writes f32 back). */
function ftToF16(model: LlamaModel): void {
  for (const [, l] of model.linearLayers()) {
    if (!(l instanceof QlrLinear)) continue;
    for (const k of ['L_ft', 'R_ft']) {
      const p = l.parameters().get(k);
      if (p && p.value.dtype !== 'f16') p.value = HostTensor.fromF32(p.value.toF32(), p.value.shape, 'f16');
    }
  }
}

interface Plan {
  qBits: number;
  /** Rank per layer name. */
  ranks: Map<string, number>;
}

/** One model by CALDERA at a plan (Q's bits, each layer's rank), then the optional fine-tuning. */
async function calderaModel(
  model: LlamaModel,
  ctx: MethodContext,
  o: Resolved,
  plan: Plan,
  extra: Record<string, Json> = {},
): Promise<LlamaModel> {
  const t0 = performance.now();
  const layers = decomposableLayers(model);
  // sequential: each block's Hessians from a walk through the blocks already compressed (GPTQ-style)
  const walk = o.sequential ? sequentialWalkOf({}, ctx, 'caldera') : undefined;
  const stats = walk
    ? undefined
    : (ctx.stats ?? (ctx.calibrate ? await ctx.calibrate(model, { statistics: ['hessian'] }) : undefined));
  if (!walk && !stats) throw new LineageError(NEEDS);
  const copy = model.clone();
  const record: Record<string, Json> = {};
  ctx.progress.start('caldera', layers.length);
  let dense = 0;
  let stored = 0;
  const compressOne = async (i: number, name: string, hessian: Float64Array) => {
    const l = copy.getLinear(name);
    const [m, n] = [l.outFeatures, l.inFeatures];
    const k = plan.ranks.get(name)!;
    const { layer, decomposition: d } = await calderaLayer(l.denseWeight(), m, n, hessian, l.denseBias(), {
      qBits: plan.qBits as QuantBits,
      qCodebook: plan.qBits === 2 ? o.qCodebook : 'scalar',
      lrBits: o.lrBits as QuantBits | 16,
      rank: k,
      outerIters: o.outerIters,
      lplrIters: o.lplrIters,
      hadamard: o.hadamard,
      hessianDowndate: o.hessianDowndate,
      ftRank: Math.min(o.ftRank, k),
      seed: ctx.seed + 2 * i,
      name,
    });
    copy.setLinear(name, layer);
    dense += m * n;
    stored += layer.stats().bytes;
    const first = d.steps.find((s) => s.step === 'Q')!.error;
    ctx.log.info(
      `caldera ${i + 1}/${layers.length} ${name}: rank ${k}, error ${first.toFixed(4)} → ${d.error.toFixed(4)} (best at iteration ${d.best.iteration + 1} ${d.best.step})`,
    );
    record[name] = {
      rank: k,
      error: d.error,
      best: { iteration: d.best.iteration, step: d.best.step },
      errors: d.steps.map((s) => s.error),
      ...(d.shift > 0 ? { hessianShift: d.shift } : {}),
    };
    ctx.progress.tick();
  };
  if (walk) {
    const index = new Map(layers.map(([name], i) => [name, i]));
    await walk(copy, async (block) => {
      for (const name of block.layers) {
        const i = index.get(name);
        if (i !== undefined) await compressOne(i, name, await block.hessian(name));
      }
    });
  } else for (const [i, [name]] of layers.entries()) await compressOne(i, name, await stats!.hessian(name));
  ctx.progress.end();
  const decomposeSeconds = (performance.now() - t0) / 1000;
  let out = copy;
  if (o.recoverTokens > 0) {
    if (!ctx.recover) throw new LineageError('caldera fine-tuning needs training: import @lineage/distill');
    out = await ctx.recover(copy, { tokens: o.recoverTokens, teacher: model, trainable: /\.(L_ft|R_ft)$/ });
    ftToF16(out);
  }
  const parent: Record<string, Json> = { fingerprint: modelFingerprint(model), params: model.stats().params };
  if (model.provenance?.source !== undefined) parent.source = model.provenance.source;
  out.provenance = {
    method: 'caldera',
    methodVersion: VERSION,
    parent,
    ...extra,
    qBits: plan.qBits,
    qCodebook: plan.qBits === 2 ? o.qCodebook : 'scalar',
    lrBits: o.lrBits,
    rank: o.rank,
    outerIters: o.outerIters,
    lplrIters: o.lplrIters,
    hadamard: o.hadamard,
    hessianDowndate: o.hessianDowndate,
    ftRank: o.ftRank,
    sequential: o.sequential,
    bitsPerParam: (stored * 8) / dense,
    layers: record,
    recoverTokens: o.recoverTokens,
    tokens: o.recoverTokens,
    decomposeSeconds,
    wallSeconds: (performance.now() - t0) / 1000,
  };
  return out;
}

/**
 * CALDERA (W ≈ Q + L·R, every part low precision): each block linear of the model, layer by layer, from its
 * calibration Hessian (q/k/v share one, gate/up share one), becomes a `qlr` layer; optionally the 16-bit
 * ranks are then fine-tuned by distillation from the parent (`recoverTokens`, through the context's
 * `recover`, training only `L_ft`/`R_ft`).
 */
export function caldera(options: CalderaOptions): CompressionMethod<LlamaModel> {
  const o = checked(parseOptions(calderaOptions, options, { where: 'caldera' }));
  return {
    name: 'caldera',
    version: VERSION,
    needs: { stats: ['hessian'], training: o.recoverTokens > 0 },
    async apply(model, ctx: MethodContext) {
      const ranks = new Map<string, number>();
      // bad input before any work: a rank that saves nothing
      for (const [name, l] of decomposableLayers(model)) {
        const k = Math.min(o.rank, l.outFeatures, l.inFeatures);
        const bytes = qlrBytes(l.outFeatures, l.inFeatures, k, o);
        const stored = l.stats().bytes;
        if (bytes >= stored)
          throw new OptionError(
            'caldera',
            'rank',
            o.rank,
            `saves nothing on '${name}' (${l.outFeatures}×${l.inFeatures}, rank ${k}): Q + L·R would store ${bytes} bytes, the layer stores ${stored}`,
          );
        ranks.set(name, k);
      }
      return calderaModel(model, ctx, o, { qBits: o.qBits, ranks });
    },
  };
}

/** A caldera family's sizes: decreasing budgets in bits per parameter of the decoder's linears. */
export const calderaSizes = decreasingSizes(z.number().gt(0, 'must be positive'));

/** Options of `caldera` as a family over bit budgets (`lineage family --method caldera --schedule 3,2.5`). */
export interface CalderaFamilyOptions extends Omit<CalderaOptions, 'qBits' | 'recoverTokens'> {
  /** Decreasing budgets in bits per parameter of the decoder's linears, one member each. */
  sizes: readonly number[];
  recoverTokens?: number;
}

/**
 * The plan that fits `budget` bits per parameter in every layer: the most bits for Q (8, 4, 3, 2) that
 * leave every layer at least rank 1, then each layer's largest rank (up to `rank`) within the budget.
 */
export function budgetPlan(
  model: LlamaModel,
  budget: number,
  o: Omit<Parsed, 'qCodebook'> & { qCodebook?: Parsed['qCodebook'] },
): Plan {
  const layers = decomposableLayers(model);
  for (const qBits of [8, 4, 3, 2]) {
    const ranks = new Map<string, number>();
    for (const [name, l] of layers) {
      const [m, n] = [l.outFeatures, l.inFeatures];
      let k = 0;
      const cap = Math.min(o.rank, m, n);
      while (k < cap && (qlrBytes(m, n, k + 1, { ...o, qBits }) * 8) / (m * n) <= budget) k++;
      if (k === 0) break;
      ranks.set(name, k);
    }
    if (ranks.size === layers.length) return { qBits, ranks };
  }
  throw new OptionError(
    'caldera',
    'sizes',
    budget,
    `bits per parameter are below Q at 2 bits plus one rank of L·R (with {lrBits} ${o.lrBits}${o.ftRank ? ` and {ftRank} ${o.ftRank}` : ''})`,
  );
}

/**
 * CALDERA at several bit budgets: every member cut from the parent independently, at the plan `budgetPlan`
 * makes for its budget, its 16-bit ranks fine-tuned for `recoverTokens` when `ftRank` > 0.
 */
export function calderaFamily(options: CalderaFamilyOptions): FamilyMethod {
  const { sizes: rawSizes, ...rest } = options;
  const o = checked(
    parseOptions(
      calderaOptions,
      { ...rest, recoverTokens: options.recoverTokens ?? 0 },
      { where: 'caldera' },
    ),
  );
  const sizes = parseOptions(
    z.object({ sizes: calderaSizes }),
    { sizes: rawSizes },
    { where: 'caldera' },
  ).sizes;
  return familyMethod({
    name: 'caldera',
    version: VERSION,
    needs: { stats: ['hessian'], training: o.recoverTokens > 0 },
    sizes,
    derivation: 'independent',
    async member(parent, i, ctx) {
      // every budget against the parent before the first member's work (a plan needs only the shapes)
      if (i === 0) for (const b of sizes) budgetPlan(parent, b, o);
      const budget = sizes[i]!;
      const plan = budgetPlan(parent, budget, o);
      ctx.log.info(
        `caldera member ${i + 1}/${sizes.length}: ${budget} bits per parameter, Q at ${plan.qBits} bits`,
      );
      return calderaModel(parent, ctx, o, plan, {
        step: i + 1,
        schedule: sizes,
        budget,
        derivedFrom: 'parent',
      });
    },
  });
}
