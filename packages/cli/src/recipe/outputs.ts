import { existsSync, readdirSync, statSync } from 'node:fs';
import { type FamilyRecord, LineageError, type LlamaModel, saveModel, writeFamily, z } from '@lineage/core';
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
  /** Refuses before any work (e.g. the target exists without --force); returns the target for messages. */
  check(o: z.output<S>, force: boolean): void;
  /** Writes the output; returns where it went. */
  write(o: z.output<S>, result: RecipeResult, force: boolean): Promise<string>;
}

function refuseExisting(p: string, force: boolean): void {
  const nonEmpty = existsSync(p) && (!statSync(p).isDirectory() || readdirSync(p).length > 0);
  if (nonEmpty && !force) throw new LineageError('output exists (pass --force to replace it)', p);
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
  check: (o, force) => refuseExisting(o.dir, force),
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
  check: (o, force) => refuseExisting(o.path, force),
  async write(o, r, force) {
    await writeReport(o.path, [recordSeries(r.record, r.record.method.name, null)], {
      format: o.format,
      x: o.x,
      force,
    });
    return o.path;
  },
});

// the built-in kinds, then any a package adds
// biome-ignore lint/suspicious/noExplicitAny: kinds of any schema share the one registry
const KINDS = new Map<string, RecipeOutputKind<any>>([
  [SAVE.kind, SAVE],
  [REPORT.kind, REPORT],
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
