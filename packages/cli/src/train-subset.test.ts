import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, namedParameters } from '@lineage/core';
import { describe, expect, it } from 'vitest';
import { lineage, MODEL, TRAIN, tempDir } from './test-support.js';

const tmp = tempDir('lineage-train-subset-');
// the whole budget and the loss as KL + L1 (the defaults add early stopping and, at the same width, the
// hidden-state loss)
const SMALL = [
  '--data',
  TRAIN,
  '--tokens',
  '512',
  '--seq-len',
  '32',
  '--batch-size',
  '4',
  '--backend',
  'js',
  '--no-early-stop',
];

describe('lineage train/distill --train <globs> --l1 <weight>', () => {
  it("trains only layer 2's MLP with an L1 penalty; every other saved weight equals the original", async () => {
    const out = join(tmp, 'subset');
    const r = await lineage([
      'distill',
      '--teacher',
      MODEL,
      '--student',
      MODEL,
      ...SMALL,
      '--lr',
      '3e-3',
      '--train',
      'layers.2.mlp.*',
      '--l1',
      '1e-4',
      '--hidden-weight',
      '0',
      '--log-every',
      '1',
      '--out',
      out,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ steps: 4, trainable: ['layers.2.mlp.*'], l1: 1e-4 });
    expect(r.stderr).toMatch(/step 1\/4 .*loss [\d.]+ \(kl [\d.]+ ce [\d.]+ l1 [\d.]+\)/);
    const before = namedParameters((await loadModel(MODEL)).model);
    const after = namedParameters((await loadModel(out)).model);
    for (const [name, p] of before) {
      const a = p.value.toF32();
      const b = after.get(name)!.value.toF32();
      const same = a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
      expect(same, name).toBe(!name.startsWith('model.layers.2.mlp.'));
    }
  }, 120_000);

  it('a glob that matches no parameter is a one-line error; nothing is written', async () => {
    const out = join(tmp, 'typo');
    const r = await lineage(['train', MODEL, ...SMALL, '--train', 'layers.2.mlp.*,layers.9.*', '--out', out]);
    expect(r.code).toBe(1);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('lineage:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(
      /^lineage: --train layers\.2\.mlp\.\*,layers\.9\.\*: 'layers\.9\.\*' matches no parameter \(names look like 'model\.layers\.0\.[\w.]+'\) \(run with --help for usage\)$/,
    );
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.run`)).toBe(false);
    const empty = await lineage(['train', MODEL, ...SMALL, '--train', 'a,,b', '--out', out]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/--train.*comma-separated parameter-name globs/);
  }, 60_000);
});
