import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEV, expectJson, expectOneLineError, lineage, MODEL, SEP, TRAIN, tempDir } from './test-support.js';

const tmp = tempDir('lineage-caldera-cli-');

const evalFirst10 = (model: string) =>
  lineage([
    'eval',
    model,
    '--data',
    DEV,
    '--doc-separator',
    SEP,
    '--limit',
    '10',
    '--backend',
    'js',
    '--json',
  ]);

describe('lineage compress --method caldera', () => {
  it('writes qlr layers from the schema flags (--no-hadamard included), which convert --dense materialises', async () => {
    const out = join(tmp, 'caldera');
    const r = await lineage([
      'compress',
      MODEL,
      '--method',
      'caldera',
      '--q-bits',
      '2',
      '--lr-bits',
      '4',
      '--rank',
      '4',
      '--outer-iters',
      '2',
      '--lplr-iters',
      '1',
      '--no-hadamard',
      '--data',
      TRAIN,
      '--calib-samples',
      '8',
      '--out',
      out,
      '--backend',
      'js',
      '--json',
    ]);
    expectJson(r);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    const layers = Object.values(cfg.lineage.layers) as {
      kind: string;
      meta: { hadamard: boolean; rank: number };
    }[];
    expect(layers).toHaveLength(35);
    expect(layers.every((l) => l.kind === 'qlr' && l.meta.hadamard === false && l.meta.rank === 4)).toBe(
      true,
    );
    expect(cfg.lineage.method).toBe('caldera');
    expect(cfg.lineage.hadamard).toBe(false);
    expect(cfg.lineage.bitsPerParam).toBeLessThan(2.5);
    const dense = join(tmp, 'caldera-dense');
    expect((await lineage(['convert', out, '--to', 'hf', '--dense', '--out', dense])).code).toBe(0);
    const a = expectJson(await evalFirst10(out));
    const b = expectJson(await evalFirst10(dense));
    expect(Math.abs(a.ppl - b.ppl) / a.ppl).toBeLessThan(1e-5);
  });

  it('bits outside the supported set are one line naming the flag', async () => {
    const r = await lineage([
      'compress',
      MODEL,
      '--method',
      'caldera',
      '--q-bits',
      '5',
      '--out',
      join(tmp, 'bad'),
    ]);
    expectOneLineError(r, /caldera: --q-bits must be one of 2, 3, 4, 8, got 5/);
  });

  it('--sequential (shared with ldlq) walks the model block by block on the --data sample, recorded in the config', async () => {
    const out = join(tmp, 'ldlq-sequential');
    const r = await lineage([
      'compress',
      MODEL,
      '--method',
      'ldlq',
      '--bits',
      '2',
      '--sequential',
      '--data',
      TRAIN,
      '--calib-samples',
      '8',
      '--out',
      out,
      '--backend',
      'js',
      '--json',
    ]);
    expectJson(r);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(cfg.lineage.method).toBe('ldlq');
    expect(cfg.lineage.sequential).toBe(true);
    expect(
      Object.values(cfg.lineage.layers as Record<string, { kind: string }>).every(
        (l) => l.kind === 'quantized',
      ),
    ).toBe(true);
  });
});
