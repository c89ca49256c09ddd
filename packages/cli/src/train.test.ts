import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, lineage } from './test-support.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'lineage-train-cli-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Small settings: 8 steps of 4 × 32 tokens on the js backend. */
// --no-early-stop: these runs test budgets, resume and Ctrl-C, not early stopping (on by default)
const SMALL = [
  '--data',
  TRAIN,
  '--tokens',
  '1k',
  '--seq-len',
  '32',
  '--batch-size',
  '4',
  '--backend',
  'js',
  '--no-early-stop',
];

describe('lineage init / train / distill', () => {
  it('init --like makes a random model of a chosen shape with the parent tokenizer; train lowers its loss', async () => {
    const init = join(tmp, 'init');
    const r = await lineage([
      'init',
      '--like',
      MODEL,
      '--dim',
      '32',
      '--layers',
      '2',
      '--heads',
      '4',
      '--kv-heads',
      '2',
      '--hidden',
      '64',
      '--seed',
      '3',
      '--out',
      init,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ dim: 32, layers: 2, heads: 4, kvHeads: 2, hidden: 64, vocab: 512 });
    expect(existsSync(join(init, 'tokenizer.json'))).toBe(true);
    const trained = join(tmp, 'trained');
    const t = await lineage(['train', init, ...SMALL, '--lr', '1e-2', '--out', trained, '--json']);
    expect(t.code, t.stderr).toBe(0);
    const s = JSON.parse(t.stdout);
    expect(s).toMatchObject({ stopped: 'budget', steps: 7, totalSteps: 7, tokens: 896, out: trained });
    expect(t.stderr).toMatch(
      /step 7\/7 +tokens 896 +loss [\d.]+ \(ce [\d.]+\) +lr [\d.e-]+ +\d+ tok\/s +ETA/,
    );
    const log = readFileSync(join(`${trained}.run`, 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const steps = log.filter((x) => x.type === 'step');
    expect(steps.length).toBe(7);
    expect(steps[6].ce).toBeLessThan(steps[0].ce);
    expect(existsSync(join(`${trained}.run`, 'checkpoint'))).toBe(false); // removed after success
    const e = await lineage([
      'eval',
      trained,
      '--data',
      DEV,
      '--doc-separator',
      '<|endoftext|>',
      '--limit',
      '3',
      '--json',
    ]);
    expect(e.code, e.stderr).toBe(0);
  }, 120_000);

  it('distill stopped after a checkpoint and resumed writes the same weights as an uninterrupted run', async () => {
    const common = [
      '--teacher',
      MODEL,
      '--student',
      MODEL,
      ...SMALL,
      '--lr',
      '3e-3',
      '--checkpoint-every',
      '2',
    ];
    const full = join(tmp, 'full');
    const a = await lineage(['distill', ...common, '--out', full]);
    expect(a.code, a.stderr).toBe(0);
    const part = join(tmp, 'part');
    const b = await lineage(['distill', ...common, '--out', part, '--stop-after', '3', '--json']);
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout)).toMatchObject({ stopped: 'stop-after', steps: 3, out: null });
    expect(existsSync(part)).toBe(false);
    // not resuming an existing checkpoint is refused
    const refuse = await lineage(['distill', ...common, '--out', part]);
    expect(refuse.code).toBe(1);
    expect(refuse.stderr).toMatch(
      /holds a checkpoint of an earlier run: resume it \(--resume\) or start over/,
    );
    // a checkpoint from another model is refused, nothing written
    const noisy = join(tmp, 'other');
    expect((await lineage(['init', '--like', MODEL, '--out', noisy])).code).toBe(0);
    const other = await lineage([
      'distill',
      '--teacher',
      MODEL,
      '--student',
      noisy,
      ...SMALL,
      '--lr',
      '3e-3',
      '--checkpoint-every',
      '2',
      '--out',
      part,
      '--resume',
    ]);
    expect(other.code).toBe(1);
    const errors = other.stderr.split('\n').filter((l) => l.startsWith('lineage:'));
    expect(errors.length).toBe(1);
    expect(errors[0]).toMatch(/checkpoint: was made from a different student \(fingerprint sha256:/);
    const c = await lineage(['distill', ...common, '--out', part, '--resume', '--json']);
    expect(c.code, c.stderr).toBe(0);
    expect(JSON.parse(c.stdout)).toMatchObject({ stopped: 'budget', steps: 7, resumedFrom: 3 });
    const wa = readFileSync(join(full, 'model.safetensors'));
    const wc = readFileSync(join(part, 'model.safetensors'));
    expect(wc.equals(wa)).toBe(true);
  }, 180_000);

  it('bad input: a zero budget and data shorter than one sequence are one-line errors; nothing is written', async () => {
    const out = join(tmp, 'bad');
    const zero = await lineage([
      'distill',
      '--teacher',
      MODEL,
      '--student',
      MODEL,
      ...SMALL,
      '--tokens',
      '0',
      '--out',
      out,
    ]);
    expect(zero.code).toBe(1);
    expect(zero.stderr).toMatch(
      /^lineage: --tokens 0: less than one training step \(4 sequences of 32 tokens = 128 tokens\); give at least 128 \(run with --help for usage\)\n$/m,
    );
    const short = join(tmp, 'short.txt');
    writeFileSync(short, 'Once upon a time.\n');
    const s = await lineage([
      'train',
      MODEL,
      '--data',
      short,
      '--tokens',
      '1k',
      '--seq-len',
      '32',
      '--out',
      out,
    ]);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/short.txt has \d+ tokens, fewer than one sequence of 33/);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.run`)).toBe(false);
  }, 60_000);

  it('Ctrl-C stops after the current step with a checkpoint and exit code 130', async () => {
    const out = join(tmp, 'sigint');
    const child = spawn('node', [
      BIN,
      'train',
      MODEL,
      ...SMALL,
      '--tokens',
      '100k',
      '--log-every',
      '1',
      '--out',
      out,
    ]);
    let stderr = '';
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on('data', (d) => {
        stderr += String(d);
        if (/step 2\/\d+/.test(stderr) && !child.killed) child.kill('SIGINT');
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/interrupt: stopping after this step/);
    const state = JSON.parse(readFileSync(join(`${out}.run`, 'checkpoint', 'state.json'), 'utf8'));
    expect(state.step).toBeGreaterThanOrEqual(2);
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});
