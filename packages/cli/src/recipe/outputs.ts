import { join } from 'node:path';
import { type FamilyRecord, type LlamaModel, saveModel, writeDirAtomic, writeFamily, z } from '@lineage/core';
import { writeExport } from '../commands/export.js';
import { checkOutput, type Input } from '../output-policy.js';
import { recordSeries } from '../report/data.js';
import { writeReport } from '../report/write.js';

/** What a recipe made, handed to each output. */
export interface RecipeResult {
  /** The results: one model, or a family's members largest first. */
  models: LlamaModel[];
  /** Whether the stages yielded a family (written as one, with family.json) or one model. */
  family: boolean;
  /** The family.json record of the results (one member for a single model), with held-out scores. */
  record: FamilyRecord;
  dtype?: 'f32' | 'f16' | 'bf16';
}

/**
 * A kind of recipe output (`outputs: - kind: save`): its fields' schema (paths already resolved against the
 * recipe's directory by `paths`), a check before any work, and the writer. Packages add kinds with
 * `registerRecipeOutput` (e.g. `export` once an exporter is installed).
 */
export interface RecipeOutputKind<S extends z.ZodObject = z.ZodObject> {
  kind: string;
  description: string;
  schema: S;
  /** Keys of path fields, resolved relative to the recipe file. */
  paths: readonly string[];
  /**
   * Refuses before any work (the target exists without --force, or it is, holds or lies inside one of the
   * recipe's `inputs`: the one output policy, `checkOutput`).
   */
  check(o: z.output<S>, force: boolean, inputs: readonly Input[]): void;
  /** Writes the output; returns where it went. */
  write(o: z.output<S>, result: RecipeResult, force: boolean): Promise<string>;
}

/** Types an output kind by its schema; registers nothing. */
function outputKind<S extends z.ZodObject>(def: RecipeOutputKind<S>): RecipeOutputKind<S> {
  return def;
}

const SAVE = outputKind({
  kind: 'save',
  description: 'a Hugging Face directory (a family: one per member and family.json)',
  schema: z.strictObject({ kind: z.literal('save'), dir: z.string().min(1, 'must be a directory') }),
  paths: ['dir'],
  check: (o, force, inputs) => checkOutput({ path: o.dir, kind: 'dir', force, inputs, flag: 'outputs.dir' }),
  async write(o, r, force) {
    if (r.family)
      await writeFamily(o.dir, r.models, r.record, {
        overwrite: force,
        ...(r.dtype ? { dtype: r.dtype } : {}),
      });
    else
      await saveModel(r.models[0]!, o.dir, {
        format: 'hf',
        overwrite: force,
        ...(r.dtype ? { dtype: r.dtype } : {}),
      });
    return o.dir;
  },
});

const REPORT = outputKind({
  kind: 'report',
  description: 'the report of the results (lineage report): an HTML page or a Markdown table',
  schema: z.strictObject({
    kind: z.literal('report'),
    path: z.string().min(1, 'must be a file'),
    format: z.enum(['html', 'md']).default('html'),
    x: z.enum(['params', 'bytes', 'bits']).default('params'),
  }),
  paths: ['path'],
  check: (o, force, inputs) =>
    checkOutput({ path: o.path, kind: 'file', force, inputs, flag: 'outputs.path', noun: 'the report' }),
  async write(o, r, force) {
    await writeReport(o.path, [recordSeries(r.record, r.record.method.name, null)], {
      format: o.format,
      x: o.x,
      force,
    });
    return o.path;
  },
});

const EXPORT = outputKind({
  kind: 'export',
  description:
    'ONNX for onnxruntime and transformers.js (lineage export --to onnx), or that plus a web page (--to web); a family: one directory per member',
  schema: z.strictObject({
    kind: z.literal('export'),
    dir: z.string().min(1, 'must be a directory'),
    to: z.enum(['onnx', 'web']).default('onnx'),
    dtype: z.enum(['fp32', 'fp16']).default('fp32'),
  }),
  paths: ['dir'],
  check: (o, force, inputs) => checkOutput({ path: o.dir, kind: 'dir', force, inputs, flag: 'outputs.dir' }),
  async write(o, r, force) {
    const from = r.record.parent.path;
    if (!r.family) await writeExport(r.models[0]!, o.dir, { ...o, force, from });
    else {
      // one export per member, under one directory that appears atomically
      await writeDirAtomic(
        o.dir,
        async (tmp) => {
          for (const [i, m] of r.models.entries())
            await writeExport(m, join(tmp, r.record.members[i]!.dir), { ...o, from });
        },
        { overwrite: force },
      );
    }
    return o.dir;
  },
});

// the built-in kinds, then any a package adds
// biome-ignore lint/suspicious/noExplicitAny: kinds of any schema share the one registry
const KINDS = new Map<string, RecipeOutputKind<any>>([
  [SAVE.kind, SAVE],
  [REPORT.kind, REPORT],
  [EXPORT.kind, EXPORT],
]);

export function registerRecipeOutput<S extends z.ZodObject>(def: RecipeOutputKind<S>): void {
  KINDS.set(def.kind, def);
}

export function getRecipeOutput(kind: string): RecipeOutputKind | undefined {
  return KINDS.get(kind);
}

export function recipeOutputKinds(): string[] {
  return [...KINDS.keys()];
}
