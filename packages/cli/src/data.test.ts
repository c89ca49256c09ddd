import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readTextFile, splitDocuments } from '@lineage/core';
import { describe, expect, it } from 'vitest';
import { DEV, expectJson, expectOneLineError, lineage, MODEL, SEP, TRAIN, tempDir } from './test-support.js';

const tmp = tempDir('lineage-cli-data-');

describe('data through core’s TextDataset', () => {
  it('eval on a JSONL file scores the same documents as the text file they came from', async () => {
    const docs = splitDocuments(await readTextFile(DEV), SEP).slice(0, 6);
    const text = join(tmp, 'six.txt');
    writeFileSync(text, docs.join(`\n${SEP}\n`));
    const jsonl = join(tmp, 'six.jsonl');
    writeFileSync(jsonl, docs.map((d) => JSON.stringify({ story: d })).join('\n'));
    const common = ['--json', '--backend', 'js', '--seq-len', '64'];
    const a = expectJson(await lineage(['eval', MODEL, '--data', text, '--doc-separator', SEP, ...common]));
    const b = expectJson(await lineage(['eval', MODEL, '--data', jsonl, '--field', 'story', ...common]));
    expect(b.protocol).toBe('documents');
    expect(b.sequences).toBe(6);
    expect(b.nll).toBe(a.nll);
    expect(a.dataHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b.dataHash).not.toBe(a.dataHash);
  }, 120_000);

  it('a held-out split of stream data is one line naming the file', async () => {
    const r = await lineage([
      'train',
      MODEL,
      '--data',
      TRAIN,
      '--doc-separator',
      SEP,
      '--holdout',
      '5',
      '--tokens',
      '4k',
      '--out',
      join(tmp, 'out'),
    ]);
    expectOneLineError(r, /--holdout 5: needs data with documents .*train-head\.txt is one stream/);
  }, 120_000);
});
