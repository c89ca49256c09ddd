import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LineageError, TextDataset, type Tokenizer } from '@lineage/core';
import { afterAll, describe, expect, it } from 'vitest';
import { holdOut, loadSources, tokenizeSources, tokensHash, WindowSampler } from './data.js';

const tmp = mkdtempSync(join(tmpdir(), 'lineage-distill-data-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** One token per character (BOS = 1), enough to check what the data layer does with documents. */
const charTokenizer: Tokenizer = {
  vocabSize: 256,
  bosId: 1,
  eosId: 2,
  source: '<chars>',
  encode: (text, o) => [...(o?.bos ? [1] : []), ...[...text].map((c) => c.charCodeAt(0) % 256)],
  decode: (ids) => ids.map((i) => String.fromCharCode(i)).join(''),
};

describe('text sources', () => {
  it('splits documents, takes ranges, holds out the last documents, and tokenizes each with BOS', async () => {
    const file = join(tmp, 'docs.txt');
    writeFileSync(file, 'ab\n<|sep|>\ncd\n<|sep|>\nef\n<|sep|>\ngh\n');
    const all = await loadSources({ path: file, separator: '<|sep|>' });
    expect(all[0]!.documents).toEqual(['ab', 'cd', 'ef', 'gh']);
    const some = await loadSources({ path: file, separator: '<|sep|>', documents: [1, 3] });
    expect(some[0]!.documents).toEqual(['cd', 'ef']);
    expect(some[0]!.name).toBe(`${file}[1:3]`);
    const h = holdOut(await loadSources([{ text: 'xyz' }, { path: file, separator: '<|sep|>' }]), 1);
    expect(h.heldOut).toEqual(['gh']);
    expect(h.train[1]!.documents).toEqual(['ab', 'cd', 'ef']);
    expect(h.train[0]!.documents).toEqual(['xyz']);
    const ids = tokenizeSources(h.train, charTokenizer);
    expect([...ids]).toEqual([1, 120, 121, 122, 1, 97, 98, 1, 99, 100, 1, 101, 102]);
    expect(tokensHash(ids)).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('refuses bad ranges, missing files and impossible holdouts with one-line errors', async () => {
    const file = join(tmp, 'docs2.txt');
    writeFileSync(file, 'ab\n<|sep|>\ncd\n');
    await expect(loadSources({ path: file, separator: '<|sep|>', documents: [1, 5] })).rejects.toThrow(
      /document range \[1, 5\) is not within the 2 documents/,
    );
    await expect(loadSources({ path: file, documents: [0, 1] })).rejects.toThrow(
      /needs a document separator/,
    );
    await expect(loadSources(join(tmp, 'missing.txt'))).rejects.toThrow(LineageError);
    expect(() => holdOut([{ name: 'x', documents: ['a'], separator: 's' }], 1)).toThrow(/has only 1/);
    expect(() => holdOut([{ name: 'x', documents: ['a', 'b'] }], 1)).toThrow(/needs data with documents/);
  });
});

describe('text sources on core datasets', () => {
  it('tokenize once per tokenizer: a second load of the same data (the next recovery) reuses the tokens', async () => {
    const file = join(tmp, 'memo.txt');
    writeFileSync(file, 'one\n<|sep|>\ntwo\n<|sep|>\nthree\n');
    let calls = 0;
    const counting: Tokenizer = {
      ...charTokenizer,
      encode: (t, o) => {
        calls++;
        return charTokenizer.encode(t, o);
      },
    };
    const a = tokenizeSources(
      holdOut(await loadSources({ path: file, separator: '<|sep|>' }), 1).train,
      counting,
    );
    expect(calls).toBe(2);
    const b = tokenizeSources(
      holdOut(await loadSources({ path: file, separator: '<|sep|>' }), 1).train,
      counting,
    );
    expect(calls).toBe(2);
    expect(b).toBe(a);
    expect([...a]).toEqual([1, 111, 110, 101, 1, 116, 119, 111]);
    // other documents are tokenized anew
    tokenizeSources(await loadSources({ path: file, separator: '<|sep|>' }), counting);
    expect(calls).toBe(5);
  });

  it('reads JSONL records and directories as documents, and takes datasets as they are', async () => {
    const jsonl = join(tmp, 'recs.jsonl');
    writeFileSync(jsonl, '{"text": "ab"}\n{"text": "cd"}\n{"text": "ef"}\n');
    const [src] = await loadSources(jsonl);
    expect(src!.documents).toEqual(['ab', 'cd', 'ef']);
    const h = holdOut([src!], 1);
    expect(h.heldOut).toEqual(['ef']);
    expect(h.train[0]!.documents).toEqual(['ab', 'cd']);
    const ds = (await TextDataset.open(jsonl)).slice(1);
    const [fromDs] = await loadSources([ds]);
    expect(fromDs!.documents).toEqual(['cd', 'ef']);
    expect(fromDs!.name).toBe(`${jsonl}[1:3]`);
  });
});

describe('WindowSampler', () => {
  const tokens = Int32Array.from({ length: 103 }, (_, i) => i);

  it('draws windows of seqLen+1 consecutive tokens, reproducibly from its seed', () => {
    const a = new WindowSampler(tokens, 10, 7);
    const b = new WindowSampler(tokens, 10, 7);
    const c = new WindowSampler(tokens, 10, 8);
    const xa = a.next(4);
    expect(xa.length).toBe(44);
    for (let r = 0; r < 4; r++)
      for (let t = 1; t < 11; t++) expect(xa[r * 11 + t]).toBe(xa[r * 11 + t - 1]! + 1);
    expect([...b.next(4)]).toEqual([...xa]);
    expect([...c.next(4)]).not.toEqual([...xa]);
  });

  it('visits every window of an epoch once, reshuffles the next, and resumes exactly from its state', () => {
    const s = new WindowSampler(tokens, 10, 3);
    const perEpoch = s.windowsPerEpoch;
    expect(perEpoch).toBe(10);
    const epoch0 = s.next(9);
    const starts = new Set<number>();
    for (let r = 0; r < 9; r++) starts.add(epoch0[r * 11]!);
    expect(starts.size).toBe(9);
    for (const v of starts) expect(Math.abs(v - [...starts][0]!) % 10).toBe(0); // one offset per epoch
    const state = s.state();
    const rest = s.next(25); // crosses into epochs 1 and 2
    const t = new WindowSampler(tokens, 10, 3);
    t.load(JSON.parse(JSON.stringify(state)));
    expect([...t.next(25)]).toEqual([...rest]);
    expect(s.state().epoch).toBeGreaterThanOrEqual(2);
  });

  it('refuses data shorter than one sequence', () => {
    expect(() => new WindowSampler(Int32Array.from([1, 2, 3]), 8, 0, 'tiny.txt')).toThrow(
      /tiny.txt has 3 tokens, fewer than one sequence of 9/,
    );
  });
});
