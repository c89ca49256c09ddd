/*
 * The corpus of bad inputs (bad-inputs.cases.ts) through the built CLI. Every case must: exit 1; print
 * exactly one error line (besides the informational backend:/model:/data: lines) that names the file (or
 * option) at fault; print no stack trace and no "internal error"; write nothing; leave every input
 * byte-identical; finish within 30 s. Cases run two at a time (each is a fresh node process).
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Case, cases, type Fixtures, makeFixtures, mutantCases } from './bad-inputs.cases.js';
import { BIN, tempDir } from './test-support.js';

const CASE_LIMIT_MS = 30_000;
/** The CLI under test: this package's build, or another (LINEAGE_BIN=…/dist/bin.js) to compare builds. */
const CLI = process.env.LINEAGE_BIN ?? BIN;
/** Only the cases whose name matches (LINEAGE_CASES=regex): vitest's -t filters the checks, not the runs. */
const ONLY = process.env.LINEAGE_CASES ? new RegExp(process.env.LINEAGE_CASES) : undefined;
const root = tempDir('lineage-bad-inputs-');
const mounts = { tiny: join(root, 'tiny'), readOnly: join(root, 'read-only') };

/** Mounts a 64 KiB tmpfs and a read-only one (root only; elsewhere the cases that need them are skipped). */
function tryMount(): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try {
    mkdirSync(mounts.tiny);
    mkdirSync(mounts.readOnly);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mounts.tiny], { stdio: 'pipe' });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', mounts.readOnly], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

function unmount(): void {
  for (const m of [mounts.tiny, mounts.readOnly]) {
    try {
      execFileSync('umount', [m], { stdio: 'pipe' });
    } catch {
      /* not mounted */
    }
  }
}

/** Path → sha256 of every file under `dir` (the fixtures: the inputs of every case). */
function hashTree(dir: string, base = dir, out = new Map<string, string>()): Map<string, string> {
  // a build that destroys its inputs may remove files while this walks: those count as changed
  for (const e of tryOr(() => readdirSync(dir, { withFileTypes: true }), [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) hashTree(p, base, out);
    else
      out.set(
        relative(base, p),
        tryOr(() => createHash('sha256').update(readFileSync(p)).digest('hex'), 'unreadable'),
      );
  }
  return out;
}

/**
 * Each case gets its own copy of the fixtures (hard links: cheap, and every writer replaces files by
 * renaming, so a case that destroys an input destroys only its own copy and cannot spoil the next case).
 */
function linkTree(src: string, dst: string): void {
  mkdirSync(dst, { recursive: true });
  for (const e of readdirSync(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    const to = join(dst, e.name);
    if (e.isDirectory()) linkTree(from, to);
    else
      try {
        linkSync(from, to);
      } catch {
        copyFileSync(from, to);
      }
  }
}

/** The fixtures with every path moved from `from` to `to`. */
function rebase<T>(value: T, from: string, to: string): T {
  if (typeof value === 'string') return (value.startsWith(from) ? to + value.slice(from.length) : value) as T;
  if (Array.isArray(value)) return value.map((v) => rebase(v, from, to)) as T;
  return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, rebase(v, from, to)])) as T;
}

function tryOr<T>(f: () => T, otherwise: T): T {
  try {
    return f();
  } catch {
    return otherwise;
  }
}

/** Every entry under `dir`, recursively (what a case left behind). */
function listTree(dir: string): string[] {
  return tryOr(() => readdirSync(dir, { recursive: true }).map(String).sort(), []);
}

interface Outcome {
  out: string;
  /** The case's own copy of the fixtures. */
  fx: Fixtures;
  code: number | null;
  stderr: string;
  ms: number;
  killed: boolean;
  /** Entries the case left in its output directory and in the fixtures. */
  leftOut: string[];
  leftFixtures: string[];
  changedInputs: string[];
}

function runCase(
  c: Case,
  f: Fixtures,
  out: string,
): Promise<Omit<Outcome, 'out' | 'fx' | 'leftOut' | 'leftFixtures' | 'changedInputs'>> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(
      'node',
      [CLI, ...c.argv(f, out)],
      { cwd: out, timeout: CASE_LIMIT_MS, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
      (err, _stdout, stderr) => {
        const e = err as (Error & { code?: number; killed?: boolean }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          stderr,
          ms: performance.now() - t0,
          killed: e?.killed ?? false,
        });
      },
    );
  });
}

const outcomes = new Map<string, Outcome>();
let fixtures: Fixtures;
let all: Case[] = [];
let mounted = false;

beforeAll(async () => {
  mounted = tryMount();
  const dir = join(root, 'fixtures');
  mkdirSync(dir);
  fixtures = await makeFixtures(dir, mounts);
  all = [...cases, ...mutantCases(fixtures)].filter(
    (c) => (mounted || !c.needsMount) && (!ONLY || ONLY.test(c.name)),
  );
  const baseline = hashTree(dir);
  const baselineEntries = listTree(dir);
  let next = 0;
  const worker = async () => {
    while (next < all.length) {
      const i = next++;
      const c = all[i]!;
      const out = join(root, 'out', String(i));
      mkdirSync(out, { recursive: true });
      const fxDir = join(root, 'fx', String(i));
      linkTree(dir, fxDir);
      const fx = rebase(fixtures, dir, fxDir);
      const r = await runCase(c, fx, out);
      const now = hashTree(fxDir);
      outcomes.set(c.name, {
        ...r,
        out,
        fx,
        leftOut: listTree(out),
        leftFixtures: listTree(fxDir).filter((p) => !baselineEntries.includes(p)),
        changedInputs: [...baseline].filter(([p, h]) => now.get(p) !== h).map(([p]) => p),
      });
      // what the checks need is recorded: drop the case's copy now, so that the final clean-up stays short
      rmSync(fxDir, { recursive: true, force: true });
      rmSync(out, { recursive: true, force: true });
    }
  };
  await Promise.all([worker(), worker()]);
}, 600_000);

afterAll(unmount);

/** Informational lines: the backend, and calibrate's per-layer progress before a failing write. */
const INFO = /^(teacher )?backend:|^model:|^data:|^layer \d+ of \d+: |^[\d.]+ s, \d+ tokens\/s$/;

describe('bad inputs and misuse: one line naming the file, exit 1, nothing written, inputs unchanged', () => {
  it('the corpus is large enough and every case ran', () => {
    if (!ONLY) expect(all.length).toBeGreaterThanOrEqual(mounted ? 80 : 74);
    expect(outcomes.size).toBe(all.length);
  });

  // the case list is known only once the fixtures exist: one test per static case, then the mutants
  const check = (c: Case) => {
    const r = outcomes.get(c.name);
    if (!r) return; // a mount case where mounting is not allowed
    const out = r.out;
    const lines = r.stderr
      .trim()
      .split('\n')
      .filter((l) => l && !INFO.test(l));
    const shown = `${c.name}\n${r.stderr}`;
    expect(r.killed, `${shown}: still running after ${CASE_LIMIT_MS} ms`).toBe(false);
    expect(r.code, shown).toBe(1);
    expect(lines, shown).toHaveLength(1);
    expect(lines[0], shown).toMatch(/^lineage: /);
    expect(lines[0], shown).not.toMatch(/internal error|\n\s+at /);
    expect(lines[0], shown).toContain(c.names(r.fx, out));
    if (c.notSaying) expect(lines[0], shown).not.toMatch(c.notSaying);
    expect(r.leftOut, `${c.name}: wrote into its output directory`).toEqual([]);
    expect(r.leftFixtures, `${c.name}: wrote beside the inputs`).toEqual([]);
    expect(r.changedInputs, `${c.name}: changed an input`).toEqual([]);
  };
  for (const c of cases) it.skipIf(c.needsMount && process.getuid?.() !== 0)(c.name, () => check(c));
  it('fast-check mutants: truncated checkpoints and safetensors, invalid config.json fields, broken tokenizer.json', () => {
    for (const c of mutantCases(fixtures)) if (!ONLY || ONLY.test(c.name)) check(c);
  });
  it.skipIf(process.getuid?.() !== 0)('nothing is left on the full or the read-only file system', () => {
    if (!mounted) return;
    expect(listTree(mounts.tiny)).toEqual([]);
    expect(listTree(mounts.readOnly)).toEqual([]);
  });
  it('the fixtures exist (sanity)', () => {
    expect(statSync(fixtures.stats).size).toBeGreaterThan(0);
  });
});
