import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadStats } from '@lineage/calibrate';
import { loadModel } from '@lineage/core';
import { describe, expect, it } from 'vitest';
import { BIN, DEV, expectJson, lineage, MODEL, type Run, SEP, tempDir } from './test-support.js';

const tmp = tempDir('lineage-cli-calibrate-');

describe('lineage calibrate', () => {
  it('writes a statistics file for the model, with progress per layer and a JSON summary', async () => {
    const out = join(tmp, 'stats.safetensors');
    const r = await lineage([
      'calibrate',
      MODEL,
      '--data',
      DEV,
      '--doc-separator',
      SEP,
      '--samples',
      '16',
      '--seq-len',
      '128',
      '--seed',
      '3',
      '--backend',
      'js',
      '--out',
      out,
      '--json',
    ]);
    const j = expectJson(r);
    expect(j).toMatchObject({
      out,
      statistics: ['hessian', 'importance'],
      protocol: 'documents',
      samples: 16,
      seqLen: 128,
      seed: 3,
      backend: 'js',
    });
    expect(j.tokens).toBeGreaterThan(16 * 50);
    expect(j.tokensPerSecond).toBeGreaterThan(0);
    for (let k = 1; k <= 5; k++) expect(r.stderr).toContain(`layer ${k} of 5`);
    const { model } = await loadModel(MODEL);
    const stats = await loadStats(out, model);
    expect(stats.info.sampleHash).toBe(j.sampleHash);
    expect((await stats.hessian('model.layers.0.self_attn.k_proj')).length).toBe(64 * 64);
    expect((await stats.blockImportance()).length).toBe(5);
    await stats.close();
    expect(readdirSync(tmp).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('JSONL data, one statistic', async () => {
    const data = join(tmp, 'd.jsonl');
    writeFileSync(
      data,
      `${['Once upon a time there was a cat.', 'The dog ran to the park.', 'Lily liked red apples.']
        .map((t) => JSON.stringify({ text: t }))
        .join('\n')}\n`,
    );
    const out = join(tmp, 'imp.safetensors');
    const r = await lineage([
      'calibrate',
      MODEL,
      '--data',
      data,
      '--samples',
      '3',
      '--seq-len',
      '64',
      '--stats',
      'importance',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote .*imp\.safetensors .*: importance over 3 documents/);
  });
});

describe('lineage calibrate: bad input is one line, exit 1, and no output file', () => {
  const expectOneLine = (r: Run, pattern: RegExp, out: string) => {
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines[lines.length - 1]).toMatch(pattern);
    expect(lines.filter((l) => l.startsWith('lineage:'))).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dirname(out)).filter((f) => f.includes('spool') || f.includes('.tmp'))).toEqual([]);
  };
  const base = (out: string, extra: string[]) => ['calibrate', MODEL, '--out', out, ...extra];

  it('an empty dataset', async () => {
    const empty = join(tmp, 'empty.txt');
    writeFileSync(empty, '');
    const out = join(tmp, 'e.safetensors');
    const r = await lineage(base(out, ['--data', empty, '--samples', '4', '--seq-len', '64']));
    expectOneLine(r, /^lineage: .*empty\.txt: file is empty$/, out);
  });

  it('--samples larger than the data can supply says how many it can', async () => {
    const out = join(tmp, 's.safetensors');
    let r = await lineage(
      base(out, ['--data', DEV, '--doc-separator', SEP, '--samples', '900', '--seq-len', '64']),
    );
    expectOneLine(r, /asked for 900 samples, but the data holds only 800 documents.*--samples 800/, out);
    r = await lineage(base(out, ['--data', DEV, '--samples', '5000', '--seq-len', '256']));
    expectOneLine(
      r,
      /asked for 5000 samples of 256 tokens, but the data supplies only \d+ \(\d+ tokens, stream protocol\)/,
      out,
    );
  });

  it('an unknown statistic name', async () => {
    const out = join(tmp, 'u.safetensors');
    const r = await lineage(
      base(out, ['--data', DEV, '--samples', '4', '--seq-len', '64', '--stats', 'hessian,fisher']),
    );
    expectOneLine(
      r,
      /^lineage: --stats "hessian,fisher": unknown statistic 'fisher' \(known: hessian, importance\) \(run with --help for usage\)$/,
      out,
    );
  });

  it('a sequence length beyond the context, and --out naming a directory', async () => {
    const out = join(tmp, 'c.safetensors');
    let r = await lineage(base(out, ['--data', DEV, '--samples', '4', '--seq-len', '1024']));
    expectOneLine(r, /^lineage: --seq-len 1024: more than the model's context of 512 tokens/, out);
    r = await lineage(['calibrate', MODEL, '--data', DEV, '--samples', '4', '--seq-len', '64', '--out', tmp]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is a directory; --out names the statistics file to write/);
  });
});

describe('lineage calibrate: Ctrl-C', () => {
  it('exits 130 leaving no spool or temporary beside the output, and no output', async () => {
    const dir = join(tmp, 'interrupted');
    mkdirSync(dir);
    const out = join(dir, 'stats.safetensors');
    const args = [
      'calibrate',
      MODEL,
      '--data',
      DEV,
      '--samples',
      '64',
      '--seq-len',
      '256',
      '--backend',
      'js',
    ];
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn('node', [BIN, ...args, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d) => {
        stderr += d;
        // the spool exists once the first layer is done
        if (/layer 1 of \d+/.test(stderr) && !child.killed) child.kill('SIGINT');
      });
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(r.code, r.stderr).toBe(130);
    expect(readdirSync(dir)).toEqual([]);
  }, 120_000);
});
