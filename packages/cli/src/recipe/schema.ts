import { z } from '@lineage/core';

/** A token count: a whole number, or text like 20k / 1.5M. */
export const tokens = z.union(
  [
    z.number().int('must be a whole number ≥ 0').min(0, 'must be a whole number ≥ 0'),
    z
      .string()
      .regex(/^\d+(\.\d+)?[kKmMbB]?$/, 'must be a number of tokens like 300000, 300k or 1.5M')
      .transform((v) => {
        const n = Number.parseFloat(v);
        const unit = v.at(-1)!.toLowerCase();
        return Math.round(n * ({ k: 1e3, m: 1e6, b: 1e9 }[unit] ?? 1));
      }),
  ],
  { error: 'must be a number of tokens like 300000, 300k or 1.5M' },
);

const path = z.string().min(1, 'must be a path');

/** One stage: a registered method, its options (the method's own schema checks them), its recovery budget. */
export const stageSchema = z.strictObject({
  method: z.string().min(1, 'must name a registered method'),
  options: z.record(z.string(), z.unknown()).default({}),
  /** Recovery after this stage (the method's `recoverTokens`): distillation from the stage's input. */
  recover: z.strictObject({ tokens }).optional(),
});

/** The recipe file's structure; the stages' options and the outputs' fields are checked by their owners. */
export const recipeSchema = z.strictObject({
  /** The model compressed: a llama2.c .bin file or a Hugging Face directory. */
  parent: path,
  tokenizer: path.optional(),
  /** Compute backend (js, onnxruntime, tfjs); default: the fastest available. */
  backend: z.string().optional(),
  device: z.string().optional(),
  seed: z.number().int('must be a whole number ≥ 0').min(0, 'must be a whole number ≥ 0').default(0),
  /** Training/calibration text, as `lineage compress --data` takes it. */
  data: z
    .strictObject({
      train: z.union([path, z.array(path).min(1, 'must list at least one file')]),
      docSeparator: z
        .string()
        .regex(/^[^\r\n]*\S[^\r\n]*$/, "must be one non-blank line of text, like '<|endoftext|>'")
        .optional(),
      stats: path.optional(),
      calibSamples: z.number().int().min(1).optional(),
    })
    .optional(),
  /** Settings of every stage's recovery (the budgets are per stage). */
  recovery: z
    .strictObject({
      lr: z.union([z.number().positive().max(10), z.literal('auto')]).optional(),
      minLr: z.number().min(0).max(10).optional(),
      batchSize: z.number().int().min(1).optional(),
      seqLen: z.number().int().min(2).optional(),
      hiddenWeight: z.number().min(0).optional(),
      earlyStop: z.boolean().optional(),
    })
    .optional(),
  stages: z.array(stageSchema).min(1, 'must list at least one stage'),
  /** Held-out perplexity of the parent and every result (for family.json and the report). */
  evaluation: z
    .strictObject({
      /** A separate held-out file; else the tail of the last training file is held out. */
      data: path.optional(),
      /** Hold out the last n documents of the last training file (needs data.docSeparator). */
      holdout: z.number().int().min(1).optional(),
      /** Or this fraction of it (default 0.1). */
      fraction: z.number().gt(0).lt(1).optional(),
      limit: z.number().int().min(1).optional(),
      seqLen: z.number().int().min(2).optional(),
    })
    .optional(),
  /** Where results go: a list of `{ kind, ... }` items, each checked by its output kind. */
  outputs: z
    .array(z.looseObject({ kind: z.string().min(1, 'must name an output kind') }))
    .min(1, 'must list at least one output'),
  /** Recovery checkpoints for --resume (default: <recipe file>.run). */
  runDir: path.optional(),
  dtype: z.enum(['f32', 'f16', 'bf16']).optional(),
});

export type RecipeInput = z.input<typeof recipeSchema>;
export type Recipe = z.output<typeof recipeSchema>;
