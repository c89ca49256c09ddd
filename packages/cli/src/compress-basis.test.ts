import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, sharedPath } from '@lineage/core';
import '@lineage/svd'; // registers the low_rank layer kind for loading the output here
import { describe, expect, it } from 'vitest';
import { DEV, expectJson, expectOneLineError, lineage, MODEL, SEP, tempDir } from './test-support.js';

const tmp = tempDir('lineage-basis-cli-');
const WIKI = sharedPath('data', 'wikitext2', 'wiki.test.noblank.txt');

function basis(...extra: string[]) {
  return lineage(['compress', MODEL, '--method', 'basis', ...extra]);
}

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

describe('lineage compress --method basis', () => {
  it('relearns on the target text and writes an ordinary low_rank model; convert --dense computes the same', async () => {
    const out = join(tmp, 'basis');
    const r = await basis(
      ...[
        '--params',
        '0.5',
        '--data',
        WIKI,
        '--tokens',
        '512',
        '--tokens-per-round',
        '128',
        '--rounds',
        '2',
        '--new-rank',
        '2',
      ],
      ...['--batch-size', '2', '--seq-len', '32', '--out', out, '--backend', 'js', '--json'],
    );
    const j = expectJson(r);
    expect(j.params.after).toBeLessThan(j.params.before * 0.75);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(cfg.lineage.method).toBe('basis');
    expect(cfg.lineage.basesPerRound).toHaveLength(2);
    const { model } = await loadModel(out);
    expect(new Set(model.linearLayers().map(([, l]) => l.kind))).toEqual(new Set(['low_rank']));
    let stored = 0;
    for (const t of model.stateDict().values()) stored += t.size;
    expect(model.stats().params).toBe(stored);
    expect(stored).toBe(j.params.after);
    const bin = join(tmp, 'dense.bin');
    const c = await lineage(['convert', out, '--to', 'llama2c', '--dense', '--out', bin]);
    expect(c.code, c.stderr).toBe(0);
    const a = await evalFirst10(out);
    const b = await evalFirst10(bin);
    expect(a.code, a.stderr).toBe(0);
    expect(Math.abs(JSON.parse(a.stdout).ppl / JSON.parse(b.stdout).ppl - 1)).toBeLessThan(1e-4);
  }, 300_000);

  it('bad input: short target text, fraction outside (0, 1), new bases that save nothing; nothing written', async () => {
    const out = join(tmp, 'never');
    const short = join(tmp, 'short.txt');
    writeFileSync(short, 'A short text .\n');
    expectOneLineError(
      await basis('--params', '0.5', '--data', short, '--tokens', '100000', '--out', out, '--backend', 'js'),
      /short\.txt has \d+ tokens, fewer than one sequence/,
    );
    expectOneLineError(
      await basis('--params', '1', '--data', WIKI, '--tokens', '1000', '--out', out),
      /basis: --params must be in \(0, 1\), got 1/,
    );
    expectOneLineError(
      await basis('--params', '0.5', '--new-rank', '20', '--data', WIKI, '--tokens', '1000', '--out', out),
      /basis: --new-rank 20: saves nothing: at --params 0.5 the new bases leave no room/,
    );
    expect(existsSync(out)).toBe(false);
  }, 120_000);
});
