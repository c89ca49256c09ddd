import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitDocuments } from '../eval/documents.js';
import { countingTokenizer } from '../testing/counting-tokenizer.js';
import { loadTokenizer } from '../tokenizer/load-tokenizer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LineageError } from '../util/errors.js';
import { sharedPath } from '../util/shared-data.js';
import { readTextFile } from '../util/text-file.js';
import { DEFAULT_DOCUMENT_SEPARATOR, TextDataset } from './text-dataset.js';

const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const TRAIN_HEAD = sharedPath('data', 'tinystories', 'train-head.txt');
const TOKENIZER = sharedPath('models', 'stories260K', 'tok512.bin');
const SEP = '<|endoftext|>';

let tmp: string;
let tok: Tokenizer;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'lineage-text-dataset-'));
  tok = loadTokenizer(TOKENIZER);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function file(name: string, content: string | Uint8Array): string {
  const p = join(tmp, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, content);
  return p;
}

describe('TextDataset', () => {
  it('a text file with <|endoftext|> lines: eval’s documents, ranges and the held-out split', async () => {
    const ds = await TextDataset.open(DEV, { separator: SEP });
    const docs = splitDocuments(await readTextFile(DEV), SEP);
    expect(docs.length).toBeGreaterThan(700);
    expect(ds.length).toBe(docs.length);
    expect(ds.documents()).toEqual(docs);
    expect(ds.hasDocuments).toBe(true);
    expect(ds.files).toEqual([{ name: '', path: DEV, format: 'text' }]);
    expect(ds.hash).toMatch(/^sha256:[0-9a-f]{64}$/);

    const r = ds.slice(10, 20);
    expect(r.documents()).toEqual(docs.slice(10, 20));
    expect(r.name).toBe(`${DEV}[10:20]`);
    expect(r.stream()).toBe(docs.slice(10, 20).join('\n\n'));
    // a range of a range is relative to it
    expect(r.slice(2, 4).documents()).toEqual(docs.slice(12, 14));
    expect(r.slice(2, 4).range).toEqual([12, 14]);

    const { train, heldOut } = ds.split({ holdout: 50 });
    expect(train.length + heldOut.length).toBe(docs.length);
    expect(heldOut.documents()).toEqual(docs.slice(-50));
    expect(train.documents()).toEqual(docs.slice(0, -50));
    expect(heldOut.name).toBe(`${DEV}[${docs.length - 50}:${docs.length}]`);
    // the split of a range splits the range
    const inner = r.split({ holdout: 3 });
    expect(inner.heldOut.documents()).toEqual(docs.slice(17, 20));
    expect(inner.train.documents()).toEqual(docs.slice(10, 17));
    // a fraction of documents: round(n·f), at least one
    const tenth = ds.split({ fraction: 0.1 });
    expect(tenth.heldOut.length).toBe(Math.round(ds.length * 0.1));
    expect(tenth.train.length + tenth.heldOut.length).toBe(ds.length);
    expect(ds.slice(0, 3).split({ fraction: 0.01 }).heldOut.length).toBe(1);
  });

  it('hashes identify content, split and range: stable across opens, distinct across ranges', async () => {
    const a = await TextDataset.open(DEV, { separator: SEP });
    const b = await TextDataset.open(DEV, { separator: SEP });
    expect(b.hash).toBe(a.hash);
    expect(b.slice(0, 5).hash).toBe(a.slice(0, 5).hash);
    expect(a.slice(0, 5).hash).not.toBe(a.slice(0, 6).hash);
    expect(a.slice(0, 5).hash).not.toBe(a.hash);
    // the same bytes as literal text hash the same; a different separator splits a range differently
    expect(TextDataset.fromText(await readTextFile(DEV)).hash).toBe(a.hash);
    const other = TextDataset.fromText(await readTextFile(DEV), { separator: 'Once' });
    expect(other.slice(0, 5).hash).not.toBe(a.slice(0, 5).hash);
  });

  it('a text file of blank-line paragraphs without a separator is one stream: one document, no held-out split', async () => {
    const ds = await TextDataset.open(TRAIN_HEAD);
    const text = await readTextFile(TRAIN_HEAD);
    expect(ds.hasDocuments).toBe(false);
    expect(ds.length).toBe(1);
    expect(ds.stream()).toBe(text.trim());
    expect(ds.documents()).toEqual([text.trim()]);
    expect(() => ds.split({ holdout: 1 })).toThrow(
      /train-head\.txt: cannot hold out 1 document: the data is one stream without documents/,
    );
    // a stream splits by fraction only: its text cut at a line boundary, nothing lost or repeated
    const { train, heldOut } = ds.split({ fraction: 0.1 });
    expect(train.hasDocuments).toBe(false);
    // (the blank lines at the cut are trimmed, as every stream's ends are)
    expect(text.trim().startsWith(train.stream())).toBe(true);
    expect(text.trim().endsWith(heldOut.stream())).toBe(true);
    expect(train.stream().length + heldOut.stream().length).toBeGreaterThanOrEqual(text.trim().length - 3);
    const share = heldOut.stream().length / text.trim().length;
    expect(share).toBeGreaterThan(0.09);
    expect(share).toBeLessThan(0.11);
    expect(() => ds.split({ fraction: 1 })).toThrow(/holdout fraction must be in \(0, 1\), got 1/);
    // with the option, a separator the file never holds leaves it a stream; one it holds is kept
    expect((await TextDataset.open(TRAIN_HEAD, { separator: SEP, separatorIfFound: true })).separator).toBe(
      undefined,
    );
    expect((await TextDataset.open(DEV, { separator: SEP, separatorIfFound: true })).separator).toBe(SEP);
  });

  it('JSONL records are documents; a directory holds text and JSONL files in name order', async () => {
    const j = file(
      'recs.jsonl',
      '{"text": " First. "}\n\n{"text": "Second."}\n{"body": "x", "text": "Third."}\n',
    );
    const ds = await TextDataset.open(j);
    expect(ds.documents()).toEqual(['First.', 'Second.', 'Third.']);
    expect(ds.hasJsonl && ds.hasDocuments).toBe(true);
    expect(ds.split({ holdout: 1 }).heldOut.documents()).toEqual(['Third.']);
    const b = file('body.jsonl', '{"body": "Hello."}\n');
    expect((await TextDataset.open(b, { field: 'body' })).documents()).toEqual(['Hello.']);

    const dir = join(tmp, 'dir');
    file('dir/b.txt', `Story one.\n${SEP}\nStory two.\n`);
    file('dir/a/x.jsonl', '{"text": "Record."}\n');
    file('dir/.hidden.txt', 'skipped');
    file('dir/notes.csv', 'skipped');
    const d = await TextDataset.open(dir, { separator: SEP });
    expect(d.files.map((f) => f.name)).toEqual(['a/x.jsonl', 'b.txt']);
    expect(d.documents()).toEqual(['Record.', 'Story one.', 'Story two.']);
    expect(d.split({ holdout: 2 }).train.documents()).toEqual(['Record.']);
    const again = await TextDataset.open(dir, { separator: SEP });
    expect(again.hash).toBe(d.hash);
    file('dir/b.txt', `Story one.\n${SEP}\nStory 2.\n`);
    expect((await TextDataset.open(dir, { separator: SEP })).hash).not.toBe(d.hash);
  });

  it('tokenizes once per tokenizer and range, however often and from however many opens it is asked', async () => {
    const { tokenizer, calls } = countingTokenizer(tok);
    const ds = (await TextDataset.open(DEV, { separator: SEP })).slice(0, 40);
    const a = ds.tokenize(tokenizer);
    expect(calls()).toBe(40); // one encode per document
    const again = (await TextDataset.open(DEV, { separator: SEP })).slice(0, 40).tokenize(tokenizer);
    expect(again).toBe(a);
    expect(calls()).toBe(40);
    // each document with BOS, at its offset
    const docs = ds.documents();
    expect(a.offsets).toHaveLength(41);
    for (const i of [0, 17, 39]) {
      const ids = [...a.tokens.subarray(a.offsets[i]!, a.offsets[i + 1]!)];
      expect(ids).toEqual(tok.encode(docs[i]!, { bos: true }));
    }
    expect(a.tokens.length).toBe(a.offsets[40]);
    // another range, another tokenizer object: tokenized anew
    ds.slice(0, 10).tokenize(tokenizer);
    expect(calls()).toBe(50);
    const other = countingTokenizer(tok);
    expect([...ds.tokenize(other.tokenizer).tokens]).toEqual([...a.tokens]);
    expect(other.calls()).toBe(40);
    // the stream: one encode, memoised as well
    const s1 = ds.tokenizeStream(tokenizer);
    const s2 = ds.tokenizeStream(tokenizer);
    expect(s2).toBe(s1);
    expect(calls()).toBe(51);
    expect(s1[0]).toBe(tok.bosId);
  });

  it('hands eval its text: documents joined by separator lines (JSONL by the default one), or the stream', async () => {
    const ds = (await TextDataset.open(DEV, { separator: SEP })).slice(3, 8);
    const e = ds.evalText();
    expect(e.protocol).toBe('documents');
    expect(e.separator).toBe(SEP);
    expect(splitDocuments(e.text, SEP)).toEqual(ds.documents());
    const j = await TextDataset.open(file('eval.jsonl', '{"text": "A."}\n{"text": "B."}\n'));
    expect(j.evalText()).toEqual({
      text: `A.\n${DEFAULT_DOCUMENT_SEPARATOR}\nB.`,
      protocol: 'documents',
      separator: DEFAULT_DOCUMENT_SEPARATOR,
    });
    const s = await TextDataset.open(TRAIN_HEAD);
    expect(s.evalText()).toEqual({ text: s.stream(), protocol: 'stream' });
  });

  it('given documents are kept exactly; their hash tells apart documents that join to the same text', () => {
    const a = TextDataset.fromDocuments(['one', 'two'], { separator: SEP });
    expect(a.documents()).toEqual(['one', 'two']);
    expect(a.stream()).toBe(`one\n${SEP}\ntwo`);
    expect(TextDataset.fromDocuments(['one', 'two'], { separator: SEP }).hash).toBe(a.hash);
    expect(TextDataset.fromDocuments(['one\n\ntwo']).hash).not.toBe(
      TextDataset.fromDocuments(['one', 'two']).hash,
    );
    expect(() => TextDataset.fromDocuments([])).toThrow('<text>: holds no text');
  });

  it('refuses bad input with one-line errors naming the file', async () => {
    const missing = join(tmp, 'missing.txt');
    await expect(TextDataset.open(missing)).rejects.toThrow(`${missing}: no such file or directory`);
    await expect(TextDataset.open(file('empty.txt', ''))).rejects.toThrow(/empty\.txt: file is empty/);
    await expect(TextDataset.open(file('bad.jsonl', '{"text": "a"}\n{oops\n'))).rejects.toThrow(
      /bad\.jsonl: line 2 is not valid JSON/,
    );
    await expect(TextDataset.open(file('nofield.jsonl', '{"body": "a"}\n'))).rejects.toThrow(
      /nofield\.jsonl: line 1 has no string field 'text'/,
    );
    await expect(TextDataset.open(file('seps.txt', `${SEP}\n${SEP}\n`), { separator: SEP })).rejects.toThrow(
      /seps\.txt: no document \(only separators\)/,
    );
    // unsplit, a file of nothing but the usual separator is no text either
    await expect(TextDataset.open(file('only-seps.txt', `${SEP}\n`.repeat(50)))).rejects.toThrow(
      /only-seps\.txt: no document \(only separators\)/,
    );
    // a record naming its field twice: JSON.parse would silently keep the last
    await expect(
      TextDataset.open(file('dup.jsonl', '{"text": "a"}\n{"text": "story", "text": "x"}\n')),
    ).rejects.toThrow(/dup\.jsonl: line 2 names the key 'text' twice/);
    mkdirSync(join(tmp, 'nothing'));
    await expect(TextDataset.open(join(tmp, 'nothing'))).rejects.toThrow(/holds no data files/);
    expect(() => TextDataset.fromText('  \n')).toThrow('<text>: holds no text');

    const ds = await TextDataset.open(DEV, { separator: SEP });
    const n = ds.length;
    for (const [s, e] of [
      [0, n + 1],
      [5, 5],
      [-1, 3],
      [1.5, 3],
    ] as const)
      expect(() => ds.slice(s, e)).toThrow(
        `${DEV}: document range [${s}, ${e}) is not within the ${n} documents`,
      );
    expect(() => ds.slice(0, 3).split({ holdout: 3 })).toThrow(
      /cannot hold out 3 documents: .*\[0:3\] has only 3/,
    );
    expect(() => ds.split({ holdout: 0 })).toThrow(/holdout must be a positive integer, got 0/);
    try {
      ds.slice(0, n + 1);
    } catch (e) {
      expect(e).toBeInstanceOf(LineageError);
      expect((e as LineageError).file).toBe(DEV);
      expect((e as Error).message).not.toContain('\n');
    }
  });
});

describe('TextDataset directories: special files refused by name, symbolic links followed', () => {
  it('a FIFO inside a data directory is refused naming it (never opened), whatever its name', async () => {
    for (const name of ['b.txt', 'pipe']) {
      const dir = join(tmp, `with-fifo-${name}`);
      file(join(`with-fifo-${name}`, 'a.txt'), 'one document\n');
      execFileSync('mkfifo', [join(dir, name)]);
      await expect(TextDataset.open(dir)).rejects.toThrow(
        `${join(dir, name)}: is a FIFO (named pipe), not a regular file`,
      );
    }
  });
  it('a linked data file and a linked directory are read; a broken link with a data name is refused', async () => {
    const dir = join(tmp, 'links');
    file(join('links-target', 'b.txt'), 'second\n');
    file(join('links', 'a.txt'), 'first\n');
    symlinkSync(join(tmp, 'links-target', 'b.txt'), join(dir, 'b.txt'));
    symlinkSync(join(tmp, 'links-target'), join(dir, 'sub'));
    symlinkSync(dir, join(dir, 'loop'));
    const ds = await TextDataset.open(dir);
    expect(ds.files.map((f) => f.name)).toEqual(['a.txt', 'b.txt', 'sub/b.txt']);
    symlinkSync(join(tmp, 'nowhere.txt'), join(dir, 'c.txt'));
    await expect(TextDataset.open(dir)).rejects.toThrow(`${join(dir, 'c.txt')}: is a broken symbolic link`);
  });
});
