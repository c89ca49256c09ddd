import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../testing/temp-dir.js';
import { LineageError } from '../util/errors.js';
import {
  loadLlama2cTokenizer,
  parseLlama2cTokenizer,
  serializeLlama2cTokenizer,
} from './llama2c-tokenizer.js';
import {
  devStories,
  edgeCases,
  llama2TokPath,
  naiveEncode,
  readReference,
  readValidDev,
  tok512Path,
  wikiLines,
} from './test-data.js';

describe('llama2.c tokenizer: tok512 (stories260K)', () => {
  const tok = loadLlama2cTokenizer(tok512Path());
  const ref = readReference();

  it('reads the file: 512 tokens, special ids, pieces and scores', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
    expect(tok.maxTokenLength).toBe(7);
    expect(tok.pieces.slice(0, 4)).toEqual(['<unk>', '\n<s>\n', '\n</s>\n', '<0x00>']);
    expect(tok.pieces[259]).toBe(' t');
    expect(tok.scores[260]).toBe(-1);
    expect(loadLlama2cTokenizer(tok512Path(), 512).vocabSize).toBe(512);
  });

  it('tokenizes the fixture story to exactly the reference tokens (BOS included)', () => {
    expect(tok.encode(ref.text, { bos: true })).toEqual(ref.tokens);
    expect(tok.encode(ref.text)).toEqual(ref.tokens.slice(1));
    expect(tok.encode(ref.text, { bos: true, eos: true })).toEqual([...ref.tokens, 2]);
  });

  it("the fixture text is valid-dev.txt's first story, trimmed (the file has it followed by '\\n<|endoftext|>\\n')", () => {
    // Documents are the text between `<|endoftext|>` lines with surrounding whitespace trimmed: the
    // first story in the file is `ref.text + '\n'` (every later one also starts with '\n'), so the
    // reference tokens are those of the trimmed story, with no leading or trailing newline token.
    const raw = readValidDev();
    expect(raw.split('<|endoftext|>')[0]).toBe(`${ref.text}\n`);
    expect(raw.startsWith(`${ref.text}\n<|endoftext|>\n`)).toBe(true);
    const stories = devStories();
    expect(stories).toHaveLength(800);
    expect(stories[0]).toBe(ref.text);
    // Not trimming would add a newline byte token (0x0A + 3 = 13) at the end.
    expect(tok.encode(`${ref.text}\n`, { bos: true })).toEqual([...ref.tokens, 13]);
  });

  it('decodes the reference greedy continuation to text, and decode(encode(x)) == x for every dev story', () => {
    const text = tok.decode([...ref.greedy_prompt_tokens, ...ref.greedy_continuation_tokens]);
    expect(text.startsWith('Spot. Spot')).toBe(true);
    expect(tok.encode(text, { bos: true }).slice(0, ref.greedy_prompt_tokens.length)).toEqual(
      ref.greedy_prompt_tokens,
    );
    expect(tok.decode(ref.tokens)).toBe(ref.text);
    for (const s of devStories()) expect(tok.decode(tok.encode(s, { bos: true }))).toBe(s);
  });

  it('the fast encoder equals the naive run.c transcription on every dev story, wiki line and edge case', () => {
    let n = 0;
    for (const s of [...devStories(), ...wikiLines(), ...edgeCases()]) {
      for (const bos of [true, false]) {
        const fast = tok.encode(s, { bos });
        const naive = naiveEncode(tok, s, bos);
        if (fast.length !== naive.length || fast.some((v, i) => v !== naive[i]))
          expect({ s, fast }).toEqual({ s, fast: naive });
        n++;
      }
    }
    expect(n).toBeGreaterThan(7000);
  });

  it('byte-falls back as id byte+3 and reassembles split characters on decode', () => {
    const ids = tok.encode('é你😀');
    expect(ids[0]).toBe(410); // the dummy-prefix ' '
    // 'é' is a piece of tok512; 你 and 😀 are not: 3 + 4 byte tokens.
    expect(ids.slice(1)).toEqual([
      tok.pieces.indexOf('é'),
      ...[...new TextEncoder().encode('你😀')].map((b) => b + 3),
    ]);
    expect(tok.decode([1, ...ids])).toBe('é你😀');
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('', { bos: true })).toEqual([1]);
    for (const s of edgeCases()) expect(tok.decode(tok.encode(s, { bos: true }))).toBe(s);
  });

  it('decode strips the leading space only right after BOS, like run.c', () => {
    const ids = tok.encode('Once upon a time');
    expect(tok.decode([1, ...ids])).toBe('Once upon a time');
    expect(tok.decode(ids)).toBe(' Once upon a time');
    expect(tok.decode([...ids, 2])).toBe(' Once upon a time');
    expect(() => tok.decode([512])).toThrow(/token id 512 is outside the vocabulary/);
  });

  it('writes back byte-identical bytes', () => {
    expect(Buffer.from(tok.toBytes()).equals(readFileSync(tok512Path()))).toBe(true);
  });

  // Speed is measured in benches, not asserted here: this checks the whole-file path and the per-story path
  // agree on a large input (the fast encoder is compared with the naive one story by story elsewhere).
  it('tokenizes all of valid-dev.txt, whole and story by story', () => {
    const raw = readValidDev();
    const ids = tok.encode(raw, { bos: true });
    expect(ids[0]).toBe(1);
    expect(ids.length).toBeGreaterThan(290_000);
    let n = 0;
    for (const s of devStories()) n += tok.encode(s, { bos: true }).length;
    // documents are tokenized separately (each with BOS and a dummy prefix), so counts differ only slightly
    expect(Math.abs(n - ids.length) / ids.length).toBeLessThan(0.05);
  });
});

describe('llama2.c tokenizer: the 32000-token Llama 2 tokenizer.bin', () => {
  const tok = loadLlama2cTokenizer(llama2TokPath());

  it('reads 32000 tokens and encodes known Llama 2 ids', () => {
    expect(tok.vocabSize).toBe(32000);
    expect(tok.maxTokenLength).toBe(27);
    expect(tok.encode('Hello world', { bos: true })).toEqual([1, 15043, 3186]);
    // '▁c' + 'afé'; 你 and 好 are pieces; the emoji falls back to its 4 bytes.
    expect(tok.encode('café 😀 你好')).toEqual([274, 28059, 29871, 243, 162, 155, 131, 29871, 30919, 31076]);
    expect(tok.pieces[30143]).toBe('\ufeff');
    expect(Buffer.from(tok.toBytes()).equals(readFileSync(llama2TokPath()))).toBe(true);
  });

  it('the fast encoder equals the naive run.c transcription on every dev story, wiki line and edge case', () => {
    for (const s of [...devStories(), ...wikiLines(), ...edgeCases()]) {
      const fast = tok.encode(s, { bos: true });
      const naive = naiveEncode(tok, s, true);
      if (fast.length !== naive.length || fast.some((v, i) => v !== naive[i]))
        expect({ s, fast }).toEqual({ s, fast: naive });
    }
  });

  it('decode(encode(x)) == x on dev stories, wiki lines and edge cases', () => {
    for (const s of [...devStories(), ...wikiLines(), ...edgeCases()])
      expect(tok.decode(tok.encode(s, { bos: true }))).toBe(s);
  });
});

describe('llama2.c tokenizer: bad files give one-line LineageErrors naming the file', () => {
  const dir = tempDir('lineage-tok-');
  const good = new Uint8Array(readFileSync(tok512Path()));
  const write = (name: string, bytes: Uint8Array) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };
  const expectError = (path: string, pattern: RegExp, vocabSize?: number) => {
    let err: unknown;
    try {
      loadLlama2cTokenizer(path, vocabSize);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LineageError);
    const msg = (err as LineageError).message;
    expect(msg.startsWith(`${path}: `)).toBe(true);
    expect(msg).not.toContain('\n');
    expect(msg).toMatch(pattern);
  };

  it('truncated in a record, or missing tokens', () => {
    expectError(write('cut.bin', good.slice(0, good.length - 3)), /truncated: token 511 needs/);
    expectError(write('cut2.bin', good.slice(0, 10)), /truncated or trailing garbage/);
    expectError(tok512Path(), /truncated: holds 512 tokens, expected 600/, 600);
  });

  it('trailing garbage', () => {
    expectError(
      write('tail.bin', new Uint8Array([...good, 1, 2, 3])),
      /trailing garbage: 3 byte\(s\) at offset/,
    );
    expectError(tok512Path(), /\d+ byte\(s\) of trailing data after the 500 tokens/, 500);
  });

  it('negative or too long lengths, bad header, empty and missing files', () => {
    const neg = good.slice();
    new DataView(neg.buffer).setInt32(8, -5, true);
    expectError(write('neg.bin', neg), /token 0 has negative length -5/);
    const long = good.slice();
    new DataView(long.buffer).setInt32(8, 100, true);
    expectError(write('long.bin', long), /token 0 has length 100, more than max_token_length 7/);
    expectError(write('hdr.bin', new Uint8Array([0, 0, 0, 0, 1, 2, 3, 4])), /max_token_length is 0/);
    expectError(write('empty.bin', new Uint8Array()), /too short \(0 bytes\)/);
    expectError(write('only-header.bin', new Uint8Array([7, 0, 0, 0])), /holds no tokens/);
    expectError(join(dir, 'missing.bin'), /no such file/);
    expectError(dir, /is a directory/);
  });

  it('a NaN score (merge order undefined) is refused; infinite scores are ordered and kept', () => {
    const nan = good.slice();
    new DataView(nan.buffer).setFloat32(4, Number.NaN, true);
    expectError(write('nan.bin', nan), /token 0's score is NaN \(offset 4\)/);
    const inf = good.slice();
    new DataView(inf.buffer).setFloat32(4, Number.NEGATIVE_INFINITY, true);
    expect(loadLlama2cTokenizer(write('inf.bin', inf)).scores[0]).toBe(Number.NEGATIVE_INFINITY);
  });

  it('a model checkpoint passed as a tokenizer is refused', () => {
    expect(() =>
      parseLlama2cTokenizer(
        new Uint8Array(readFileSync(tok512Path().replace('tok512.bin', 'stories260K.bin'))),
        'm.bin',
      ),
    ).toThrow(LineageError);
  });

  it('serializes what it parses', () => {
    const pieces = [[60, 117, 110, 107, 62], [1], [2], [32], [97], [32, 97]].map((a) => Uint8Array.from(a));
    const bytes = serializeLlama2cTokenizer(pieces, [0, 0, 0, -3, -2, -1]);
    const t = parseLlama2cTokenizer(bytes, 'tiny.bin');
    expect(t.vocabSize).toBe(6);
    expect(t.maxTokenLength).toBe(5);
    expect(t.encode('a')).toEqual([5]);
  });
});
