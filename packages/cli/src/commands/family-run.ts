import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Json,
  LineageError,
  type LlamaModel,
  loadModel,
  saveModel,
  writeFileAtomic,
} from '@lineage/core';
import type { SamplerState } from '@lineage/distill';

const STATE = 'family-run.json';
const SCHEMA = 'lineage.family-run/1';

/** A finished member read back from the run directory. */
export interface FinishedMember {
  model: LlamaModel;
  /** Where its recovery left the training text (absent without recovery). */
  dataEnd?: SamplerState;
}

/** The run directory of `lineage family`: finished members and recovery checkpoints, for `--resume`. */
export interface FamilyRun {
  dir: string;
  /** Whether this run continues an interrupted one. */
  resuming: boolean;
  /** Member `i` as finished by the interrupted run (only when resuming). */
  finished(i: number): Promise<FinishedMember | undefined>;
  /** Keeps a finished member (its Hugging Face directory, then a marker with its data position). */
  save(i: number, model: LlamaModel, dataEnd?: SamplerState): Promise<void>;
  /** Removes what this run kept once the family is written. */
  finish(): Promise<void>;
  /**
   * After a failure: removes the run directory when it keeps nothing to resume (no finished member, no
   * recovery checkpoint), so that a run refused by its first member leaves nothing behind.
   */
  discardIfEmpty(): Promise<void>;
}

async function ours(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir))
    .filter((n) => n === STATE || n === 'members' || /^member-\d+$/.test(n))
    .map((n) => join(dir, n));
}

/** The first setting that differs, as `key: was → now`. */
function difference(was: Record<string, Json>, now: Record<string, Json>): string | undefined {
  for (const k of new Set([...Object.keys(was), ...Object.keys(now)])) {
    const a = JSON.stringify(was[k] ?? null);
    const b = JSON.stringify(now[k] ?? null);
    if (a !== b) return `${k}: ${a} → ${b}`;
  }
  return undefined;
}

/** `--resume` needs an interrupted family run in `dir` (checked before any model is loaded). */
export function checkFamilyResumable(dir: string): void {
  if (!existsSync(join(dir, STATE)))
    throw new LineageError(
      'nothing to resume: holds no interrupted family run (run the command without --resume)',
      dir,
    );
}

/**
 * Opens the run directory: with `resume`, the interrupted run's (refused when there is none, or when it was
 * started with other settings); else a fresh one (what an earlier run left there is removed).
 */
export async function familyRun(
  dir: string,
  o: { resume: boolean; settings: Record<string, Json | undefined> },
): Promise<FamilyRun> {
  const settings = JSON.parse(JSON.stringify(o.settings)) as Record<string, Json>;
  const state = join(dir, STATE);
  if (o.resume) {
    checkFamilyResumable(dir);
    const was = JSON.parse(await readFile(state, 'utf8')) as {
      schema?: string;
      settings?: Record<string, Json>;
    };
    if (was.schema !== SCHEMA) throw new LineageError(`is not a family run directory (${STATE})`, dir);
    const diff = difference(was.settings ?? {}, settings);
    if (diff) throw new LineageError(`holds a family run started with other settings (${diff})`, dir);
  } else {
    for (const p of await ours(dir)) await rm(p, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(state, `${JSON.stringify({ schema: SCHEMA, settings }, null, 2)}\n`);
  }
  const memberDir = (i: number) => join(dir, 'members', String(i + 1));
  const marker = (i: number) => join(dir, 'members', `${i + 1}.json`);
  const finish = async () => {
    for (const p of await ours(dir)) await rm(p, { recursive: true, force: true });
    await rmdir(dir).catch(() => {}); // only when nothing else is left in it
  };
  return {
    dir,
    resuming: o.resume,
    async finished(i) {
      if (!o.resume || !existsSync(marker(i))) return undefined;
      const m = JSON.parse(await readFile(marker(i), 'utf8')) as { dataEnd?: SamplerState };
      const { model } = await loadModel(memberDir(i));
      return { model, ...(m.dataEnd ? { dataEnd: m.dataEnd } : {}) };
    },
    async save(i, model, dataEnd) {
      await mkdir(join(dir, 'members'), { recursive: true });
      await saveModel(model, memberDir(i), { format: 'hf', overwrite: true });
      await writeFileAtomic(marker(i), `${JSON.stringify(dataEnd ? { dataEnd } : {})}\n`);
    },
    finish,
    async discardIfEmpty() {
      if (o.resume) return;
      const kept = (await ours(dir)).filter((p) => !p.endsWith(STATE));
      const members = kept.find((p) => p.endsWith('members'));
      if (kept.length === 0 || (kept.length === 1 && members && (await readdir(members)).length === 0))
        await finish();
    },
  };
}
