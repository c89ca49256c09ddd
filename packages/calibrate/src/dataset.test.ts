import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evalSequences, type LlamaModel, loadModel, readTextFile } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultProtocol, loadDataset, sampleSequences } from './dataset.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const SEP = '<|endoftext|>';

let tmp: string;
let model: LlamaModel;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'lineage-dataset-'));
  model = (await loadModel(MODEL)).model;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function file(name: string, content: string | Uint8Array): string {
  const p = join(tmp, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, content);
  return p;
}

describe('datasets', () => {
  it('a text file with a separator gives eval’s documents; each sample is a document with BOS, truncated', async () => {
    const data = await loadDataset(DEV, { separator: SEP });
    expect(defaultProtocol(data)).toBe('documents');
    const text = await readTextFile(DEV);
    const docs = evalSequences(model, text, { protocol: 'documents', separator: SEP, seqLen: 100 });
    expect(data.documents()).toHaveLength(docs.length);
    const s = sampleSequences(data, model.tokenizer!, { samples: 20, seqLen: 100, seed: 3 });
    expect(s.protocol).toBe('documents');
    expect(s.available).toBe(800);
    for (const seq of s.sequences) {
      expect(seq[0]).toBe(1);
      expect(seq.length).toBeLessThanOrEqual(100);
      expect(docs.some((d) => d.length === seq.length && d.every((v, i) => v === seq[i]))).toBe(true);
    }
    expect(s.tokens).toBe(s.sequences.reduce((a, x) => a + x.length, 0));
  });

  it('sampling is seeded: same seed same sequences, a larger draw starts with the smaller one', async () => {
    const data = await loadDataset(DEV, { separator: SEP });
    const tok = model.tokenizer!;
    const a = sampleSequences(data, tok, { samples: 10, seqLen: 64, seed: 11 });
    const b = sampleSequences(data, tok, { samples: 10, seqLen: 64, seed: 11 });
    const c = sampleSequences(data, tok, { samples: 12, seqLen: 64, seed: 11 });
    const d = sampleSequences(data, tok, { samples: 10, seqLen: 64, seed: 12 });
    expect(a.hash).toBe(b.hash);
    expect(a.sequences).toEqual(b.sequences);
    expect(c.sequences.slice(0, 10)).toEqual(a.sequences);
    expect(d.hash).not.toBe(a.hash);
  });

  it('JSONL: one document per record from the chosen field; blank lines skipped', async () => {
    const p = file(
      'd.jsonl',
      '{"text": "Once upon a time."}\n\n{"text": "  The end.  ", "x": 1}\n{"body": "b", "text": "A cat."}\n',
    );
    const data = await loadDataset(p);
    expect(data.documents()).toEqual(['Once upon a time.', 'The end.', 'A cat.']);
    expect(defaultProtocol(data)).toBe('documents');
    const q = file('e.jsonl', '{"body": "Hello there."}\n');
    expect((await loadDataset(q, { field: 'body' })).documents()).toEqual(['Hello there.']);
    await expect(loadDataset(q)).rejects.toThrow(/e\.jsonl: line 1 has no string field 'text'/);
    await expect(loadDataset(file('bad.jsonl', '{"text": "a"}\n{oops\n'))).rejects.toThrow(
      /bad\.jsonl: line 2 is not valid JSON/,
    );
  });

  it('a directory: text and JSONL files recursively in name order, hidden files skipped; the hash tracks content', async () => {
    const dir = join(tmp, 'corpus');
    file('corpus/b.txt', 'Second file.');
    file('corpus/a/x.jsonl', '{"text": "First record."}\n{"text": "Second record."}\n');
    file('corpus/.hidden.txt', 'never');
    file('corpus/notes.csv', 'ignored');
    const data = await loadDataset(dir);
    expect(data.files.map((f) => f.name)).toEqual(['a/x.jsonl', 'b.txt']);
    expect(data.documents()).toEqual(['First record.', 'Second record.', 'Second file.']);
    expect(data.stream()).toBe('First record.\n\nSecond record.\n\nSecond file.');
    const again = await loadDataset(dir);
    expect(again.hash).toBe(data.hash);
    file('corpus/b.txt', 'Second file, changed.');
    expect((await loadDataset(dir)).hash).not.toBe(data.hash);
  });

  it('empty data, empty directories and too many samples are one-line errors saying what is available', async () => {
    await expect(loadDataset(file('empty.txt', ''))).rejects.toThrow(/empty\.txt: file is empty/);
    mkdirSync(join(tmp, 'nothing'));
    await expect(loadDataset(join(tmp, 'nothing'))).rejects.toThrow(/holds no data files/);
    await expect(loadDataset(file('blank.jsonl', '{"text": "  "}\n'))).rejects.toThrow(
      /no record has a non-empty 'text'/,
    );
    await expect(loadDataset(file('seps.txt', `${SEP}\n${SEP}\n`), { separator: SEP })).rejects.toThrow(
      /no document/,
    );
    await expect(loadDataset(join(tmp, 'missing.txt'))).rejects.toThrow(/no such file/);
    const tok = model.tokenizer!;
    const docs = await loadDataset(DEV, { separator: SEP });
    expect(() => sampleSequences(docs, tok, { samples: 801, seqLen: 64 })).toThrow(
      /asked for 801 samples, but the data holds only 800 documents/,
    );
    const stream = await loadDataset(file('short.txt', 'Once upon a time there was a cat. '.repeat(40)));
    let msg = '';
    try {
      sampleSequences(stream, tok, { samples: 50, seqLen: 64 });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(
      /asked for 50 samples of 64 tokens, but the data supplies only \d+ \(\d+ tokens, stream protocol\)/,
    );
    expect(msg.split('\n')).toHaveLength(1);
    const n = Number(/supplies only (\d+)/.exec(msg)![1]);
    expect(sampleSequences(stream, tok, { samples: n, seqLen: 64 }).sequences).toHaveLength(n);
  });
});
