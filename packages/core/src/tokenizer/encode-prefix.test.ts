import { describe, expect, it } from 'vitest';
import { llama2cToTokenizerJson } from './convert-tokenizer.js';
import { hfTokenizerFromJson } from './hf-tokenizer.js';
import { loadLlama2cTokenizer } from './llama2c-tokenizer.js';
import { llama2TokPath, readValidDev, tok512Path, wikiLines } from './test-data.js';
import { encodePrefix, type Tokenizer } from './tokenizer.js';

const tok512 = loadLlama2cTokenizer(tok512Path());
const { tokenizerJson, tokenizerConfig } = llama2cToTokenizerJson(tok512);
const tokenizers: [string, () => Tokenizer][] = [
  ['llama2.c tok512', () => tok512],
  ['the same as tokenizer.json', () => hfTokenizerFromJson(tokenizerJson, tokenizerConfig, 'tokenizer.json')],
  ['llama2 (32000 pieces)', () => loadLlama2cTokenizer(llama2TokPath())],
];
// TinyStories as one stream, WikiText-2 (numbers, punctuation, byte fallback), a line with no whitespace at all
const texts: [string, string][] = [
  ['TinyStories', readValidDev().slice(0, 120_000)],
  ['WikiText-2', wikiLines().slice(0, 400).join('\n')],
  ['no whitespace', 'abcé😀,.xyz'.repeat(4000)],
];

describe.each(tokenizers)('encodePrefix with %s', (_, make) => {
  const tok = make();
  it.each(texts)('is the head of the whole encoding: %s', (_, text) => {
    const whole = tok.encode(text, { bos: true });
    for (const n of [1, 100, 511, 2048, 5000, whole.length, whole.length + 10]) {
      expect(encodePrefix(tok, text, n, { bos: true })).toEqual(whole.slice(0, n));
    }
    expect(encodePrefix(tok, text, 300)).toEqual(tok.encode(text).slice(0, 300));
  });
});
