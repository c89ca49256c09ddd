// the statistics of a method context are @lineage/calibrate's (its accessors typed by declaration merging)
import type {} from '@lineage/calibrate';
import {
  type CompressionMethod,
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
import { E8P12 } from './e8p.js';
import { QUANT_BITS, type QuantBits } from './grid.js';
import {
  bitsRecord,
  type HessianSource,
  type QuantizeModelResult,
  quantizeModel,
  type SequentialHessians,
} from './quantize-model.js';

/** This package's version (from its package.json, inlined at build time): the methods' `version`. */
export const VERSION: string = pkg.version;

/** Options both quantizers take. */
export const gridOptions = z.object({
  bits: z
    .number()
    .refine((b) => (QUANT_BITS as readonly number[]).includes(b), `must be one of ${QUANT_BITS.join(', ')}`)
    .meta({ description: `bits per weight: ${QUANT_BITS.join(', ')}` }),
  groupSize: z
    .number()
    .int('must be a positive whole number')
    .positive('must be a positive whole number')
    .default(64)
    .meta({
      description:
        'input columns sharing one f16 scale (the last group shorter; a width ≥ the layer: one scale per row)',
    }),
  zeroPoint: z.boolean().default(false).meta({ description: 'asymmetric grid with a zero point per group' }),
  hadamard: z.boolean().default(false).meta({
    description: 'randomized Hadamard incoherence on the input side (signs stored with each layer)',
  }),
  hadamardOutput: z.boolean().default(false).meta({
    description: 'with --hadamard: transform the output side too (QuIP#; measured worse on stories260K)',
  }),
  includeHead: z.boolean().default(false).meta({ description: 'also quantize an untied output head' }),
});

/** Options of `rtn`. */
export const rtnOptions = gridOptions;
export type RtnOptions = z.input<typeof rtnOptions>;

/** Options of `ldlq`. */
export const ldlqOptions = z.object({
  ...gridOptions.shape,
  codebook: z
    .enum(['scalar', E8P12])
    .default('scalar')
    .meta({
      description: `'scalar' (the grid of --bits) or '${E8P12}' (QuIP#'s E8 lattice: one 16-bit code per 8 weights, an f16 scale per row; --bits 2 only, --group-size does not apply)`,
    }),
  damp: z
    .number()
    .min(0, 'must be ≥ 0')
    .default(0.01)
    .meta({ description: 'Hessian damping relative to its mean diagonal' }),
  /** Hessian source (default: the method context's statistics or calibration). */
  hessians: z
    .custom<HessianSource>(
      (v) => typeof (v as Partial<HessianSource> | undefined)?.hessian === 'function',
      'must have hessian(layer)',
    )
    .optional()
    .meta({ cli: false }),
  sequential: z.boolean().default(false).meta({
    description:
      'GPTQ-style calibration walk: each block quantized from Hessians of inputs that went through the already quantized blocks (needs --data)',
  }),
});
export type LdlqOptions = z.input<typeof ldlqOptions>;

const HESSIANS_NEEDED =
  'ldlq needs calibration statistics with hessian (--stats <file>) or calibration text (--data <file>)';

async function hessiansFor(
  o: { hessians?: HessianSource | undefined },
  ctx: MethodContext,
  model: LlamaModel,
) {
  if (o.hessians) return o.hessians;
  if (ctx.stats) return ctx.stats;
  if (ctx.calibrate) return ctx.calibrate(model, { statistics: ['hessian'] });
  throw new LineageError(HESSIANS_NEEDED);
}

/** The context's sequential calibration walk, refused (one line) where it cannot run. */
export function sequentialWalkOf(
  o: { hessians?: HessianSource | undefined; includeHead?: boolean },
  ctx: MethodContext,
  method = 'ldlq',
): SequentialHessians {
  if (o.hessians)
    throw new LineageError(
      `${method}: sequential calibration computes its own Hessians; do not pass hessians`,
    );
  if (o.includeHead)
    throw new OptionError(
      method,
      'sequential',
      undefined,
      'walks the decoder blocks; it cannot also quantize the untied head ({includeHead})',
    );
  if (!ctx.calibrationWalk)
    throw new OptionError(
      method,
      'sequential',
      undefined,
      "needs calibration text to walk the model (--data <file>); a statistics file holds the parent's Hessians only",
    );
  return ctx.calibrationWalk;
}

function record(
  name: string,
  parent: LlamaModel,
  r: QuantizeModelResult,
  o: Record<string, Json>,
  t0: number,
): Record<string, Json> {
  const parentRec: Record<string, Json> = {
    fingerprint: modelFingerprint(parent),
    params: parent.stats().params,
  };
  if (parent.provenance?.source !== undefined) parentRec.source = parent.provenance.source;
  let bytes = 0;
  let weights = 0;
  for (const l of r.layers) {
    bytes += (l.bitsPerParam * l.shape[0] * l.shape[1]) / 8;
    weights += l.shape[0] * l.shape[1];
  }
  return {
    method: name,
    methodVersion: VERSION,
    parent: parentRec,
    ...o,
    bitsPerParam: Number(((bytes * 8) / weights).toFixed(4)),
    layerBits: bitsRecord(r.layers),
    tokens: 0,
    wallSeconds: (performance.now() - t0) / 1000,
  };
}

function logResult(ctx: MethodContext, name: string, r: QuantizeModelResult): void {
  const errs = r.layers.filter((l) => l.relError !== undefined).map((l) => l.relError!);
  const mean = errs.length ? errs.reduce((a, b) => a + b, 0) / errs.length : undefined;
  ctx.log.info(
    `${name}: ${r.layers.length} layers quantized${mean !== undefined ? `, mean relative proxy error ${mean.toExponential(3)}` : ''}`,
  );
}

/** The `rtn` method (registered as `rtn`; `rtn` itself is the matrix quantizer): round to nearest on a scalar grid, the data-free baseline. */
export function rtnMethod(options: RtnOptions): CompressionMethod<LlamaModel> {
  const o = parseOptions(rtnOptions, options, { where: 'rtn' });
  return {
    name: 'rtn',
    version: VERSION,
    needs: {},
    async apply(model, ctx) {
      const t0 = performance.now();
      const r = await quantizeModel(model, {
        quantizer: 'rtn',
        bits: o.bits as QuantBits,
        groupSize: o.groupSize,
        zeroPoint: o.zeroPoint,
        hadamard: o.hadamard,
        hadamardOutput: o.hadamardOutput,
        seed: ctx.seed, // the Hadamard signs
        includeHead: o.includeHead,
        progress: ctx.progress,
      });
      logResult(ctx, 'rtn', r);
      r.model.provenance = record('rtn', model, r, { ...o }, t0);
      return r.model;
    },
  };
}

/** The `ldlq` method (registered as `ldlq`; `ldlq` itself is the matrix quantizer): LDLQ/GPTQ on calibration Hessians, optional randomized Hadamard incoherence (QuIP#). */
export function ldlqMethod(options: LdlqOptions): CompressionMethod<LlamaModel> {
  const o = parseOptions(ldlqOptions, options, { where: 'ldlq' });
  if (o.codebook === E8P12 && o.bits !== 2)
    throw new OptionError('ldlq', 'bits', o.bits, `the codebook '${E8P12}' stores 2 bits per weight: give 2`);
  if (o.codebook === E8P12 && o.zeroPoint)
    throw new OptionError('ldlq', 'zeroPoint', undefined, `the codebook '${E8P12}' has no zero points`);
  return {
    name: 'ldlq',
    version: VERSION,
    needs: o.hessians ? {} : { stats: ['hessian'] },
    async apply(model, ctx) {
      const t0 = performance.now();
      const walk = o.sequential ? sequentialWalkOf(o, ctx) : undefined;
      const hessians = walk ? undefined : await hessiansFor(o, ctx, model);
      const r = await quantizeModel(model, {
        quantizer: 'ldlq',
        bits: o.bits as QuantBits,
        groupSize: o.groupSize,
        zeroPoint: o.zeroPoint,
        codebook: o.codebook,
        hadamard: o.hadamard,
        hadamardOutput: o.hadamardOutput,
        seed: ctx.seed, // the Hadamard signs
        damp: o.damp,
        ...(hessians ? { hessians } : {}),
        ...(walk ? { sequential: walk } : {}),
        includeHead: o.includeHead,
        progress: ctx.progress,
      });
      logResult(ctx, 'ldlq', r);
      const { hessians: _h, ...rec } = o;
      r.model.provenance = record('ldlq', model, r, rec, t0);
      return r.model;
    },
  };
}
