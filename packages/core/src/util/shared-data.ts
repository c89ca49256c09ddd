import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Locates the read-only `shared/` folder (real model, tokenizer, data, fixtures) that sits beside the
 * repository: $LINEAGE_SHARED, else the first `shared/` found walking up from this file and from the cwd.
 */
export function sharedDir(): string {
  const env = process.env.LINEAGE_SHARED;
  if (env) {
    if (!existsSync(env)) throw new Error(`LINEAGE_SHARED=${env} does not exist`);
    return resolve(env);
  }
  const starts = [dirname(fileURLToPath(import.meta.url)), process.cwd()];
  for (const start of starts) {
    let dir = start;
    for (let i = 0; i < 10; i++) {
      const candidate = join(dir, 'shared');
      if (existsSync(join(candidate, 'models', 'stories260K'))) return candidate;
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  throw new Error(
    'the shared/ folder (stories260K model, data, fixtures) was not found beside the repository; set LINEAGE_SHARED to its path',
  );
}

/** Path of a file under shared/, failing with a clear reason when it is missing. */
export function sharedPath(...parts: string[]): string {
  const p = join(sharedDir(), ...parts);
  if (!existsSync(p)) throw new Error(`shared file missing: ${p}`);
  return p;
}
