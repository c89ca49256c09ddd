import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { saveModel } from '../checkpoint/save-model.js';
import { writeDirAtomic } from '../io/atomic.js';
import { readRegularFile } from '../io/fs-util.js';
import { findDuplicateKey } from '../io/json-keys.js';
import type { Json } from '../nn/layer.js';
import type { LlamaModel } from '../nn/llama.js';
import { LineageError } from '../util/errors.js';

/** The one schema of `family.json` (docs/family-json.md); bumped when a field changes meaning. */
export const FAMILY_SCHEMA = 'lineage.family/1';

/** Held-out perplexity of one model (absent when the family was built without held-out data). */
export interface HeldOutScore {
  ppl: number;
  nll: number;
}

/** One member of a family as `family.json` records it. */
export interface FamilyMemberRecord {
  /** Its Hugging Face directory, relative to family.json. */
  dir: string;
  /** The size it was made at, in the method's unit (fractions of the decomposable parameters for svd/plrd). */
  size: number | null;
  /** Parameters and bytes as stored (factors counted as factors). */
  params: number;
  bytes: number;
  bitsPerParam: number;
  /** Held-out perplexity and mean NLL (nats per token); null without held-out data. */
  perplexity: number | null;
  nll: number | null;
  /** Training tokens spent on the way to this member (cumulative along a progressive family). */
  tokens: number;
  /** Wall time the method spent making this member (decomposition and recovery), seconds. */
  wallSeconds: number | null;
  /** The method's lineage record of the member (also in its config.json under `lineage`). */
  provenance: Json | null;
}

export interface FamilyRecord {
  schema: typeof FAMILY_SCHEMA;
  method: { name: string; version: string };
  parent: {
    path: string;
    params: number;
    bytes: number;
    bitsPerParam: number;
    perplexity: number | null;
    nll: number | null;
  };
  /** What the perplexities were measured on; null without held-out data. */
  heldOut: string | null;
  /** The sizes asked for, largest first. */
  sizes: number[] | null;
  members: FamilyMemberRecord[];
  /** Wall time of the whole run, seconds. */
  wallSeconds: number;
}

export interface FamilyMemberInput {
  dir: string;
  model: LlamaModel;
  size?: number | null;
  score?: HeldOutScore;
}

export interface FamilyRecordInput {
  method: { name: string; version: string };
  parent: { path: string; model: LlamaModel; score?: HeldOutScore };
  heldOut?: string;
  sizes?: readonly number[];
  members: readonly FamilyMemberInput[];
  wallSeconds: number;
}

function bitsPerParam(params: number, bytes: number): number {
  return params ? (8 * bytes) / params : 0;
}

function num(v: Json | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** The `family.json` record of a family, from its models (counts as stored) and their held-out scores. */
export function familyRecord(input: FamilyRecordInput): FamilyRecord {
  const ps = input.parent.model.stats();
  return {
    schema: FAMILY_SCHEMA,
    method: { name: input.method.name, version: input.method.version },
    parent: {
      path: input.parent.path,
      params: ps.params,
      bytes: ps.bytes,
      bitsPerParam: bitsPerParam(ps.params, ps.bytes),
      perplexity: input.parent.score?.ppl ?? null,
      nll: input.parent.score?.nll ?? null,
    },
    heldOut: input.heldOut ?? null,
    sizes: input.sizes ? [...input.sizes] : null,
    members: input.members.map((m) => {
      const s = m.model.stats();
      const prov = m.model.provenance;
      return {
        dir: m.dir,
        size: m.size ?? num(prov?.fraction) ?? null,
        params: s.params,
        bytes: s.bytes,
        bitsPerParam: bitsPerParam(s.params, s.bytes),
        perplexity: m.score?.ppl ?? null,
        nll: m.score?.nll ?? null,
        tokens: num(prov?.tokens) ?? 0,
        wallSeconds: num(prov?.wallSeconds),
        provenance: (prov as Json | undefined) ?? null,
      };
    }),
    wallSeconds: input.wallSeconds,
  };
}

export interface WriteFamilyOptions {
  /** Float type of dense weights (default: as loaded). */
  dtype?: 'f32' | 'f16' | 'bf16';
  /** Replace an existing non-empty directory. */
  overwrite?: boolean;
}

/**
 * Writes a family: one Hugging Face directory per member (`record.members[i].dir`) and `family.json`, all
 * appearing at once (built beside `out`, then renamed into place).
 */
export async function writeFamily(
  out: string,
  models: readonly LlamaModel[],
  record: FamilyRecord,
  o: WriteFamilyOptions = {},
): Promise<void> {
  if (models.length !== record.members.length)
    throw new Error(`writeFamily: ${models.length} models for ${record.members.length} member records`);
  await writeDirAtomic(
    out,
    async (tmp) => {
      for (const [i, m] of record.members.entries())
        await saveModel(models[i]!, join(tmp, m.dir), {
          format: 'hf',
          ...(o.dtype ? { dtype: o.dtype } : {}),
        });
      await writeFile(join(tmp, 'family.json'), `${JSON.stringify(record, null, 2)}\n`);
    },
    { overwrite: o.overwrite ?? false },
  );
}

/** Reads a `family.json` (the file, or the directory holding it), refusing other schemas. */
export async function readFamily(path: string): Promise<FamilyRecord> {
  const file = path.endsWith('.json') ? path : join(path, 'family.json');
  // a regular file of bounded size (a FIFO or a device is refused before it is opened)
  const bytes = await readRegularFile(file);
  let r: Partial<FamilyRecord>;
  const text = bytes.toString('utf8');
  try {
    r = JSON.parse(text) as Partial<FamilyRecord>;
  } catch (e) {
    throw new LineageError(`cannot read a family record: ${(e as Error).message.split('\n')[0]}`, file);
  }
  // JSON.parse keeps the last of two equal keys: which members were meant is not for us to guess
  const dup = findDuplicateKey(text);
  if (dup) throw new LineageError(`the key '${dup.join('.')}' appears twice`, file);
  if (r.schema !== FAMILY_SCHEMA)
    throw new LineageError(
      `is not a family record of schema ${FAMILY_SCHEMA} (schema: ${JSON.stringify(r.schema ?? null)})`,
      file,
    );
  return r as FamilyRecord;
}
