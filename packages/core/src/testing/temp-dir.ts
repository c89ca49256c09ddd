import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as Vitest from 'vitest';

// vitest throws when imported outside its runner, and plain scripts (benches) import this entry too: load it
// only under vitest (see conformance.ts). A static import here once made every bench crash at import.
const vitest: typeof Vitest | undefined = process.env.VITEST ? await import('vitest') : undefined;

// Outside vitest: directories to remove at exit, under one listener however many a script makes.
const atExit = new Set<string>();

/**
 * A fresh directory under the OS temp dir, removed when the current test finishes (inside a test) or
 * after the current suite (at collection time), so test runs leave nothing behind in /tmp. Outside
 * vitest (a script), it is removed when the process exits.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const clean = () => rmSync(dir, { recursive: true, force: true });
  if (!vitest) {
    if (atExit.size === 0)
      process.once('exit', () => {
        for (const d of atExit) rmSync(d, { recursive: true, force: true });
      });
    atExit.add(dir);
    return dir;
  }
  try {
    vitest.onTestFinished(clean);
  } catch {
    vitest.afterAll(clean);
  }
  return dir;
}
