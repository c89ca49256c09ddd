import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../testing/temp-dir.js';
import { LineageError } from '../util/errors.js';
import { llama2cToTokenizerJson, tokenizerJsonToLlama2c } from './convert-tokenizer.js';
import { type HFTokenizer, loadHFTokenizer } from './hf-tokenizer.js';
import { type Llama2cTokenizer, loadLlama2cTokenizer, parseLlama2cTokenizer } from './llama2c-tokenizer.js';
import { devStories, edgeCases, llama2TokPath, tok512Path, wikiLines } from './test-data.js';

// biome-ignore lint/suspicious/noExplicitAny: tests poke into parsed tokenizer.json freely
type Json = Record<string, any>;

/** Writes the converted tokenizer as an HF directory and loads it back through loadHFTokenizer. */
function convertAndLoad(tok: Llama2cTokenizer): { hf: HFTokenizer; json: Json } {
  const { tokenizerJson, tokenizerConfig } = llama2cToTokenizerJson(tok);
  const dir = tempDir('lineage-hf-');
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2));
  return {
    hf: loadHFTokenizer(dir),
    json: JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as Json,
  };
}

function expectSameIds(tok: Llama2cTokenizer, hf: HFTokenizer, texts: string[]): void {
  for (const s of texts) {
    const a = tok.encode(s, { bos: true });
    const b = hf.encode(s, { bos: true });
    if (a.length !== b.length || a.some((v, i) => v !== b[i])) expect({ s, ids: b }).toEqual({ s, ids: a });
  }
}

for (const [name, path] of [
  ['tok512', tok512Path],
  ['Llama 2 (32000)', llama2TokPath],
] as const) {
  describe(`llama2.c -> tokenizer.json -> llama2.c: ${name}`, () => {
    const tok = loadLlama2cTokenizer(path());
    const { hf, json } = convertAndLoad(tok);

    it('writes a Llama-style tokenizer.json that @huggingface/tokenizers loads', () => {
      expect(hf.vocabSize).toBe(tok.vocabSize);
      expect(hf.bosId).toBe(1);
      expect(hf.eosId).toBe(2);
      expect(hf.addsBos).toBe(true);
      expect(json.model.type).toBe('BPE');
      expect(json.model.byte_fallback).toBe(true);
      expect(json.model.vocab['<0x0A>']).toBe(13);
      expect(json.model.vocab['<s>']).toBe(1);
      expect(json.added_tokens.map((t: Json) => [t.id, t.content])).toEqual([
        [0, '<unk>'],
        [1, '<s>'],
        [2, '</s>'],
      ]);
      expect(json.model.merges[0]).toEqual(['▁', 't']); // the best-scored piece, '▁t', in both
      expect(hf.tokenToId('▁t')).toBe(name === 'tok512' ? 259 : 260);
    });

    it('encodes every dev story exactly like the llama2.c tokenizer (BOS included)', () => {
      expectSameIds(tok, hf, devStories());
    });

    it('encodes every WikiText-2 test line exactly like the llama2.c tokenizer', () => {
      expectSameIds(tok, hf, wikiLines());
    });

    it('encodes edge cases (spaces, newlines, accents, emoji, CJK, runs of 1-40 spaces) exactly alike', () => {
      expectSameIds(tok, hf, [
        ...edgeCases(),
        'lone \ud800 surrogate',
        'literal <s> and </s> and <unk> are text',
      ]);
    });

    it("differs only on a literal '▁' (U+2581) in the text, which the normalizer cannot tell from a space", () => {
      // llama2.c stores '▁' as ' ', so a typed U+2581 is not a piece there and falls back to its 3 bytes;
      // in tokenizer.json '▁' is the space, so HF reads it as one. Both sides are right by their format.
      expect(tok.encode('a\u2581b')).not.toEqual(hf.encode('a\u2581b'));
      expect(hf.encode('a\u2581b')).toEqual(hf.encode('a b'));
    });

    it('decodes back to the text', () => {
      for (const s of devStories().slice(0, 200)) expect(hf.decode(hf.encode(s, { bos: true }))).toBe(s);
      for (const s of wikiLines().slice(0, 200)) expect(hf.decode(hf.encode(s, { bos: true }))).toBe(s);
    });

    it('converts back to a byte-identical tokenizer.bin (scores kept in model.llama2c)', () => {
      const { bytes } = tokenizerJsonToLlama2c(json, 'tokenizer.json');
      expect(Buffer.from(bytes).equals(readFileSync(path()))).toBe(true);
    });

    it('without the stored scores, derived scores (-merge rank) still tokenize identically', () => {
      const plain = structuredClone(json);
      delete plain.model.llama2c;
      plain.model.merges = plain.model.merges.map((m: string[]) => m.join(' ')); // legacy "a b" merges
      const back = parseLlama2cTokenizer(tokenizerJsonToLlama2c(plain).bytes, 'back.bin');
      expect(back.vocabSize).toBe(tok.vocabSize);
      expect(back.pieces).toEqual(tok.pieces);
      for (const s of [...devStories().slice(0, 300), ...wikiLines().slice(0, 500), ...edgeCases()]) {
        expect(back.encode(s, { bos: true })).toEqual(tok.encode(s, { bos: true }));
      }
    });
  });
}

describe('tokenizerJsonToLlama2c refuses what llama2.c cannot hold', () => {
  const base = () => llama2cToTokenizerJson(loadLlama2cTokenizer(tok512Path())).tokenizerJson as Json;
  const expectRefused = (json: unknown, pattern: RegExp) => {
    let err: unknown;
    try {
      tokenizerJsonToLlama2c(json, '/x/tokenizer.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LineageError);
    expect((err as Error).message).toMatch(/^\/x\/tokenizer\.json: /);
    expect((err as Error).message).toMatch(pattern);
  };

  it('non-BPE, byte-level and malformed files', () => {
    expectRefused(42, /not a JSON object/);
    expectRefused({ model: { type: 'Unigram', vocab: [] } }, /only BPE/);
    const byteLevel = base();
    byteLevel.normalizer = null;
    byteLevel.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: false };
    expectRefused(byteLevel, /SentencePiece-style/);
    const gap = base();
    delete gap.model.vocab.e;
    expectRefused(gap, /ids are not contiguous: no token has id \d+/);
    const bytes = base();
    bytes.model.vocab['<0x00>'] = 300;
    bytes.model.vocab[
      Object.keys(bytes.model.vocab).find((k) => bytes.model.vocab[k] === 300 && k !== '<0x00>')!
    ] = 3;
    expectRefused(bytes, /byte token <0x00> at id 3/);
  });
});
