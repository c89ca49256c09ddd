import { describe, expect, it } from 'vitest';
import { loadModel } from '../checkpoint/load-model.js';
import { countingTokenizer } from '../testing/counting-tokenizer.js';
import { sharedPath } from '../util/shared-data.js';
import { readTextFile } from '../util/text-file.js';
import { splitDocuments } from './documents.js';
import { evalSequences } from './perplexity.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const SEP = '<|endoftext|>';

describe('evalSequences', () => {
  it('tokenizes a text once per tokenizer and options: evaluations during training re-use it', async () => {
    const { model } = await loadModel(MODEL);
    const tok = model.tokenizer!;
    const { tokenizer, calls } = countingTokenizer(tok);
    model.tokenizer = tokenizer;
    const text = await readTextFile(DEV);
    const opts = { protocol: 'documents' as const, separator: SEP, seqLen: 64, limit: 30 };
    const a = evalSequences(model, text, opts);
    expect(calls()).toBe(30);
    const docs = splitDocuments(text, SEP);
    expect(a[7]).toEqual(tok.encode(docs[7]!, { bos: true }).slice(0, 64));
    a[0]![0] = -1; // a caller's changes do not reach the next caller
    const b = evalSequences(model, text, opts);
    expect(calls()).toBe(30);
    expect(b[0]![0]).toBe(tok.bosId);
    expect(b.slice(1)).toEqual(a.slice(1));
    // other options or text: tokenized anew
    evalSequences(model, text, { ...opts, seqLen: 32 });
    expect(calls()).toBe(60);
    evalSequences(model, text.replace('Spot', 'Spots'), opts);
    expect(calls()).toBe(90);
  });

  it('with a limit, tokenizes only the head of a long stream or document', async () => {
    const { model } = await loadModel(MODEL);
    const tok = model.tokenizer!;
    const { tokenizer, chars } = countingTokenizer(tok);
    model.tokenizer = tokenizer;
    const line = 'the cat sat on the mat. '.repeat(200_000); // 4.8 MB on one line
    const stream = evalSequences(model, line, { protocol: 'stream', seqLen: 512, limit: 4 });
    expect(stream.map((s) => s.length)).toEqual([512, 512, 512, 512]);
    const head = tok.encode(line.slice(0, 100_000).trim(), { bos: true });
    expect(stream.flat()).toEqual(head.slice(0, 2048));
    const docs = evalSequences(model, `short story\n${SEP}\n${line}`, {
      protocol: 'documents',
      separator: SEP,
      seqLen: 256,
      limit: 2,
    });
    expect(docs[1]).toEqual(head.slice(0, 256));
    expect(chars()).toBeLessThan(200_000);
  });
});
