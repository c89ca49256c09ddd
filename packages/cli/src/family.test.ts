import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsBackend, type LlamaModel, loadModel, perplexity, readTextFile } from '@lineage/core';
import '@lineage/svd'; // registers the low_rank layer kind for loading members here
import { describe, expect, it } from 'vitest';
import {
  BIN,
  expectJson,
  expectOneLineError,
  lineage,
  MODEL,
  type Run,
  TRAIN,
  tempDir,
} from './test-support.js';

const tmp = tempDir('lineage-family-cli-');
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'test-fixtures');

/** The acceptance command: `lineage family MODEL --method M --schedule 0.6,0.3 --data TRAIN --out DIR --json`. */
function family(method: string, out: string, ...extra: string[]) {
  return lineage([
    'family',
    MODEL,
    '--method',
    method,
    '--schedule',
    '0.6,0.3',
    '--data',
    TRAIN,
    '--out',
    out,
    '--json',
    '--backend',
    'js',
    ...extra,
  ]);
}

function expectSameWeights(a: LlamaModel, b: LlamaModel): void {
  const sa = a.stateDict();
  const sb = b.stateDict();
  expect([...sb.keys()]).toEqual([...sa.keys()]);
  for (const [name, t] of sa) {
    const u = sb.get(name)!;
    expect(u.dtype, name).toBe(t.dtype);
    expect(Buffer.from(u.bytes()).equals(Buffer.from(t.bytes())), name).toBe(true);
  }
}

describe('lineage family --method', () => {
  const records: Record<string, ReturnType<typeof JSON.parse>> = {};

  for (const method of ['svd', 'plrd']) {
    it(`--method ${method} writes two members and family.json in the one schema; members reload at the recorded perplexity`, async () => {
      const out = join(tmp, method);
      const j = expectJson(await family(method, out));
      records[method] = j;
      // the members, family.json and the family's report; --json prints the record plus where the report is
      expect(readdirSync(out).sort()).toEqual(
        ['family.json', `${method}-0.30`, `${method}-0.60`, 'report.html'].sort(),
      );
      const { report, ...record } = j;
      expect(report).toBe(join(out, 'report.html'));
      expect(JSON.parse(readFileSync(join(out, 'family.json'), 'utf8'))).toEqual(record);
      expect(j).toMatchObject({ schema: 'lineage.family/1', method: { name: method }, sizes: [0.6, 0.3] });
      expect(j.heldOut).toMatch(/train-head\.txt \(last 10%/);
      expect(j.members).toHaveLength(2);
      expect(j.members[0].params).toBeGreaterThan(j.members[1].params);
      expect(existsSync(`${out}.run`)).toBe(false); // the run directory is gone once the family is written
      // held out by default: the last 10% of the data file (at a line boundary), scored as a token stream
      const text = await readTextFile(TRAIN);
      const held = text.slice(text.lastIndexOf('\n', Math.floor(text.length * 0.9)) + 1);
      for (const m of j.members) {
        expect(m).toMatchObject({ tokens: 0, provenance: { method, fraction: m.size } });
        expect(m.bitsPerParam).toBe(32);
        expect(m.wallSeconds).toBeGreaterThan(0);
        const { model } = await loadModel(join(out, m.dir));
        const p = await perplexity(model, new JsBackend(), held, { protocol: 'stream', seqLen: 256 });
        expect(p.ppl).toBe(m.perplexity);
      }
    }, 300_000);
  }

  it('svd and plrd records have the same fields; without recovery their first members are the same cut', () => {
    const keys = (o: object) => Object.keys(o).sort();
    expect(keys(records.plrd)).toEqual(keys(records.svd));
    expect(keys(records.plrd.members[0])).toEqual(keys(records.svd.members[0]));
    expect(records.plrd.members[0].params).toBe(records.svd.members[0].params);
    expect(records.plrd.parent).toEqual(records.svd.parent);
  });

  it('a plugin declares its options with a schema: flags, help, validation and a family', async () => {
    const plugin = join(FIXTURES, 'keep-plugin.mjs');
    const help = await lineage(['compress', '--plugin', plugin, '--method', 'keep', '--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/--keep <value>\s+fraction to keep/);
    expect(help.stdout).toMatch(/--alloc-mode <value>/);
    expectOneLineError(
      await lineage([
        'compress',
        '--plugin',
        plugin,
        '--method',
        'keep',
        '--keep',
        '2',
        '--out',
        join(tmp, 'k'),
      ]),
      /^lineage: keep: --keep Too big/,
    );
    const out = join(tmp, 'keep');
    const j = expectJson(
      await lineage([
        'family',
        '--plugin',
        plugin,
        '--method',
        'keep',
        '--alloc-mode',
        'energy',
        '--schedule',
        '0.5',
        '--eval-data',
        TRAIN,
        '--eval-limit',
        '4',
        '--backend',
        'js',
        '--out',
        out,
        '--json',
      ]),
    );
    expect(j.members[0].provenance).toMatchObject({ method: 'svd', allocation: 'energy', fraction: 0.5 });
  }, 300_000);
});

/** Spawns the CLI; `onLine` sees every stderr line (and may interrupt it). */
function spawnLineage(args: string[], onLine: (line: string, child: ReturnType<typeof spawn>) => void) {
  return new Promise<Run>((resolve) => {
    const child = spawn('node', [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let pending = '';
    child.stdout!.on('data', (d) => {
      stdout += d;
    });
    child.stderr!.on('data', (d) => {
      stderr += d;
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const l of lines) onLine(l, child);
    });
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

describe('lineage family: Ctrl-C during a recovery, then --resume', () => {
  it('gives the same members as an uninterrupted run (bitwise on js); finished members are not recomputed', async () => {
    const args = (out: string) => [
      'family',
      MODEL,
      '--schedule',
      '0.8,0.5',
      '--recover-tokens',
      '3k',
      '--data',
      TRAIN,
      '--batch-size',
      '2',
      '--seq-len',
      '32',
      '--lr',
      '2e-3',
      '--eval-limit',
      '8',
      '--backend',
      'js',
      '--out',
      out,
      '--json',
    ];
    const whole = join(tmp, 'whole');
    const a = expectJson(await lineage(args(whole)));
    const cut = join(tmp, 'cut');
    // interrupt once the second member's recovery has taken its first step
    let second = false;
    let sent = false;
    const r = await spawnLineage(args(cut), (line, child) => {
      if (/PLRD step 2\/2/.test(line)) second = true;
      if (second && !sent && /^step \d+\/\d+/.test(line)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/interrupted: .*--resume/);
    expect(existsSync(cut)).toBe(false);
    const run = `${cut}.run`;
    expect(readdirSync(join(run, 'members')).sort()).toEqual(['1', '1.json']);
    expect(existsSync(join(run, 'member-2', 'recover-1'))).toBe(true);
    // resuming with other settings is refused in one line, and leaves the run as it was
    expectOneLineError(
      await lineage([...args(cut).map((x) => (x === '2e-3' ? '3e-3' : x)), '--resume']),
      /holds a family run started with other settings \(recovery: /,
    );
    const resumed = await lineage([...args(cut), '--resume']);
    const b = expectJson(resumed);
    expect(resumed.stderr).toMatch(/member 1: finished before the interruption/);
    expect(resumed.stderr).not.toMatch(/PLRD step 1\/2/);
    expect(resumed.stderr).toMatch(/resuming at step [1-9]/);
    for (const [i, m] of a.members.entries()) {
      expect(b.members[i].dir).toBe(m.dir);
      expect(b.members[i].perplexity).toBe(m.perplexity);
      expect(b.members[i].tokens).toBe(m.tokens);
      expectSameWeights(
        (await loadModel(join(whole, m.dir))).model,
        (await loadModel(join(cut, m.dir))).model,
      );
    }
    expect(existsSync(run)).toBe(false);
  }, 600_000);

  it('compress: Ctrl-C during a recovery, then --resume, gives the members of an uninterrupted run', async () => {
    const args = (out: string) => [
      'compress',
      MODEL,
      '--method',
      'plrd',
      '--schedule',
      '0.8,0.5',
      '--recover-tokens',
      '3k',
      '--data',
      TRAIN,
      '--batch-size',
      '2',
      '--seq-len',
      '32',
      '--lr',
      '2e-3',
      '--backend',
      'js',
      '--out',
      out,
      '--json',
    ];
    const nothing = join(tmp, 'compress-nothing');
    expectOneLineError(await lineage([...args(nothing), '--resume']), /nothing to resume/);
    const whole = join(tmp, 'compress-whole');
    const a = expectJson(await lineage(args(whole)));
    const cut = join(tmp, 'compress-cut');
    let second = false;
    let sent = false;
    const r = await spawnLineage(args(cut), (line, child) => {
      if (/PLRD step 2\/2/.test(line)) second = true;
      if (second && !sent && /^step \d+\/\d+/.test(line)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/interrupted: .*--resume/);
    const b = expectJson(await lineage([...args(cut), '--resume']));
    for (const [i, m] of a.members.entries()) {
      expect(b.members[i].dir).toBe(m.dir);
      expectSameWeights(
        (await loadModel(join(whole, m.dir))).model,
        (await loadModel(join(cut, m.dir))).model,
      );
    }
  }, 600_000);
});
