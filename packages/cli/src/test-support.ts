/* Helpers shared by the CLI's tests (not part of the package's API): run the built binary, check errors. */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, expect } from 'vitest';

export const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'bin.js');

/** The shared fixtures: stories260K, TinyStories training head and dev split, and its document separator. */
export const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
export const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
export const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
export const SEP = '<|endoftext|>';

/** A fresh temporary directory named `prefix…`, removed after the file's tests (call at a file's top level). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/bin.js …args` and resolves with its exit code and output (never rejects). */
export function lineage(args: string[], env: Record<string, string> = {}): Promise<Run> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build the CLI first (pnpm build)`);
  return new Promise((resolve) => {
    execFile(
      'node',
      [BIN, ...args],
      { env: { ...process.env, ...env }, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** Exit 0 (stderr shown otherwise); returns stdout parsed as JSON. */
export function expectJson(r: Run): ReturnType<typeof JSON.parse> {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** Exit 1 and, besides the informational `backend:`/`model:` lines, exactly one error line matching `pattern`. */
export function expectOneLineError(r: Run, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr
    .trim()
    .split('\n')
    .filter((l) => !/^(teacher )?backend:|^model:|^data:/.test(l));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}
