import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lineage, MODEL, TRAIN, tempDir } from './test-support.js';

const tmp = tempDir('lineage-defaults-');
const SMALL = ['--data', TRAIN, '--tokens', '1k', '--seq-len', '32', '--batch-size', '4', '--backend', 'js'];

describe('recovery defaults of lineage distill', () => {
  it('early-stops on a validation tail split off the data, with the width lr and the hidden-state loss, all logged', async () => {
    const out = join(tmp, 'default');
    const r = await lineage([
      'distill',
      '--teacher',
      MODEL,
      '--student',
      MODEL,
      ...SMALL,
      '--out',
      out,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    // stories260K is 64 wide: the width rule's small anchor, 2e-3
    expect(r.stderr).toMatch(/distill: 7 steps of 4×32 tokens .* lr 0\.002 cosine/);
    expect(r.stderr).toMatch(/hidden-state loss on \(same width 64, uniform layer map, weight 1/);
    expect(r.stderr).toMatch(/early stopping on .*train-head\.txt.*: evaluated every 1 steps, patience 3/);
    const s = JSON.parse(r.stdout);
    expect(s.evals.length).toBeGreaterThanOrEqual(2);
    expect(['budget', 'early-stop']).toContain(s.stopped);
  }, 60_000);

  it('--no-early-stop keeps all the data and evaluates nothing; --hidden-weight 0 is KL only', async () => {
    const out = join(tmp, 'plain');
    const r = await lineage([
      'distill',
      '--teacher',
      MODEL,
      '--student',
      MODEL,
      ...SMALL,
      '--no-early-stop',
      '--hidden-weight',
      '0',
      '--lr',
      '1e-4',
      '--out',
      out,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/lr 0\.0001 cosine/);
    expect(r.stderr).not.toMatch(/early stopping on|hidden-state loss on/);
    expect(r.stderr).toMatch(/step 1\/7 .*loss [\d.]+ \(kl [\d.]+ ce [\d.]+\)/);
    expect(JSON.parse(r.stdout)).toMatchObject({ stopped: 'budget', steps: 7, evals: [] });
  }, 60_000);
});
