import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sharedPath } from '@lineage/core';
import '@lineage/svd'; // registers the low_rank layer kind for loading the output here
import { describe, expect, it } from 'vitest';
import {
  compressJson,
  convertDense,
  expectOneLineError,
  expectStoredParams,
  lineage,
  MODEL,
  pplFirst10,
  readConfig,
  tempDir,
} from './test-support.js';

const tmp = tempDir('lineage-basis-cli-');
const WIKI = sharedPath('data', 'wikitext2', 'wiki.test.noblank.txt');

function basis(...extra: string[]) {
  return lineage(['compress', MODEL, '--method', 'basis', ...extra]);
}

describe('lineage compress --method basis', () => {
  it('relearns on the target text and writes an ordinary low_rank model; convert --dense computes the same', async () => {
    const out = join(tmp, 'basis');
    const j = await compressJson(
      out,
      ...['--method', 'basis', '--params', '0.5', '--data', WIKI, '--tokens', '512'],
      ...[
        '--tokens-per-round',
        '128',
        '--rounds',
        '2',
        '--new-rank',
        '2',
        '--batch-size',
        '2',
        '--seq-len',
        '32',
      ],
    );
    expect(j.params.after).toBeLessThan(j.params.before * 0.75);
    const cfg = readConfig(out);
    expect(cfg.lineage.method).toBe('basis');
    expect(cfg.lineage.basesPerRound).toHaveLength(2);
    const model = await expectStoredParams(out, j.params.after);
    expect(new Set(model.linearLayers().map(([, l]) => l.kind))).toEqual(new Set(['low_rank']));
    const bin = await convertDense(out, 'llama2c', join(tmp, 'dense.bin'));
    expect(Math.abs((await pplFirst10(out)) / (await pplFirst10(bin)) - 1)).toBeLessThan(1e-4);
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
