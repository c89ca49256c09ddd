import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../testing/temp-dir.js';
import { LineageError } from '../util/errors.js';
import { llama2cToTokenizerJson } from './convert-tokenizer.js';
import { hfTokenizerFromJson, loadHFTokenizer } from './hf-tokenizer.js';
import { loadLlama2cTokenizer } from './llama2c-tokenizer.js';
import { readReference, tok512Path } from './test-data.js';

// biome-ignore lint/suspicious/noExplicitAny: tests poke into parsed tokenizer.json freely
type Json = Record<string, any>;

const llama = loadLlama2cTokenizer(tok512Path());
const converted = () =>
  structuredClone(llama2cToTokenizerJson(llama)) as { tokenizerJson: Json; tokenizerConfig: Json };

function expectLineageError(fn: () => unknown, file: string, pattern: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(LineageError);
  const msg = (err as Error).message;
  expect(msg.startsWith(`${file}: `)).toBe(true);
  expect(msg).not.toContain('\n');
  expect(msg).toMatch(pattern);
}

describe('HF tokenizer.json tokenizer', () => {
  it('adds BOS only when asked, once, although the post-processor would add it too', () => {
    const { tokenizerJson, tokenizerConfig } = converted();
    const hf = hfTokenizerFromJson(tokenizerJson, tokenizerConfig);
    const ref = readReference();
    expect(hf.encode(ref.text, { bos: true })).toEqual(ref.tokens);
    expect(hf.encode(ref.text)).toEqual(ref.tokens.slice(1));
    expect(hf.encode(ref.text, { eos: true }).at(-1)).toBe(2);
    expect(hf.encode('')).toEqual([]);
    expect(hf.encode('', { bos: true })).toEqual([1]);
  });

  it('encodes special-token text such as "<s>" as plain text, like llama2.c', () => {
    const { tokenizerJson, tokenizerConfig } = converted();
    const hf = hfTokenizerFromJson(tokenizerJson, tokenizerConfig);
    for (const s of ['<s>', 'a </s> b', '<unk>']) {
      expect(hf.encode(s)).toEqual(llama.encode(s));
      expect(hf.encode(s)).not.toContain(1);
    }
  });

  it('decode drops special tokens and follows the tokenizer.json decoder', () => {
    const { tokenizerJson, tokenizerConfig } = converted();
    const hf = hfTokenizerFromJson(tokenizerJson, tokenizerConfig);
    const ids = hf.encode('Hello\nworld, café 你好', { bos: true, eos: true });
    expect(hf.decode(ids)).toBe('Hello\nworld, café 你好');
    expect(hf.decode([1, 2])).toBe('');
    expect(hf.decode([])).toBe('');
    expectLineageError(
      () => hf.decode([512]),
      'tokenizer.json',
      /token id 512 is outside the vocabulary \(512 tokens\)/,
    );
  });

  it('counts added tokens in vocabSize and takes bos/eos from tokenizer_config.json', () => {
    const { tokenizerJson } = converted();
    tokenizerJson.added_tokens.push(
      { id: 512, content: '<pad>', special: true, normalized: false },
      { id: 513, content: '<|eot|>', special: true },
    );
    const hf = hfTokenizerFromJson(tokenizerJson, {
      bos_token: { content: '<s>' },
      eos_token: '<|eot|>',
      add_bos_token: false,
    });
    expect(hf.vocabSize).toBe(514);
    expect(hf.bosId).toBe(1);
    expect(hf.eosId).toBe(513);
    expect(hf.addsBos).toBe(false);
    expect(hf.decode([1, 5, 512, 513])).toBe(hf.decode([5]));
    expect(hf.encode('<pad>')).toEqual(llama.encode('<pad>'));
  });

  it('without tokenizer_config.json, finds BOS from the post-processor template and EOS by name', () => {
    const { tokenizerJson } = converted();
    const hf = hfTokenizerFromJson(tokenizerJson);
    expect(hf.bosId).toBe(1);
    expect(hf.eosId).toBe(2);
    expect(hf.addsBos).toBe(true);
  });

  it('loads from a directory or a tokenizer.json path; source is the tokenizer.json', () => {
    const dir = tempDir('lineage-hf-');
    const { tokenizerJson, tokenizerConfig } = converted();
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
    const a = loadHFTokenizer(dir);
    const b = loadHFTokenizer(join(dir, 'tokenizer.json'));
    expect(a.source).toBe(join(dir, 'tokenizer.json'));
    expect(b.source).toBe(a.source);
    expect(a.encode('Once upon a time', { bos: true })).toEqual(
      llama.encode('Once upon a time', { bos: true }),
    );
  });

  it('garbage, unsupported and missing files give one-line LineageErrors naming the file', () => {
    const dir = tempDir('lineage-hf-bad-');
    const write = (name: string, text: string) => {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    const garbage = write('garbage.json', '{"model": {"type": "BPE", "vocab": {');
    expectLineageError(() => loadHFTokenizer(garbage), garbage, /invalid JSON in garbage\.json/);
    const notObject = write('array.json', '[1, 2, 3]');
    expectLineageError(
      () => loadHFTokenizer(notObject),
      notObject,
      /unsupported tokenizer\.json: not a JSON object/,
    );
    const noModel = write('nomodel.json', '{"added_tokens": []}');
    expectLineageError(() => loadHFTokenizer(noModel), noModel, /no "model" object/);
    const { tokenizerJson } = converted();
    tokenizerJson.normalizer = { type: 'FancyNormalizer' };
    const unknown = write('unknown.json', JSON.stringify(tokenizerJson));
    expectLineageError(
      () => loadHFTokenizer(unknown),
      unknown,
      /unsupported tokenizer\.json: Unknown Normalizer type: FancyNormalizer/,
    );
    const weirdModel = write(
      'weird.json',
      JSON.stringify({ model: { type: 'Mystery', vocab: { a: 0 } }, added_tokens: [] }),
    );
    expectLineageError(
      () => loadHFTokenizer(weirdModel),
      weirdModel,
      /unsupported tokenizer\.json: model type "Mystery"/,
    );
    const cfgDir = join(dir, 'badcfg');
    mkdirSync(cfgDir);
    writeFileSync(join(cfgDir, 'tokenizer.json'), JSON.stringify(converted().tokenizerJson));
    writeFileSync(join(cfgDir, 'tokenizer_config.json'), 'not json');
    expectLineageError(
      () => loadHFTokenizer(cfgDir),
      join(cfgDir, 'tokenizer_config.json'),
      /invalid JSON in tokenizer_config\.json/,
    );
    const empty = join(dir, 'empty-dir');
    mkdirSync(empty);
    expectLineageError(() => loadHFTokenizer(empty), empty, /no tokenizer\.json in this directory/);
    expectLineageError(
      () => loadHFTokenizer(join(dir, 'missing.json')),
      join(dir, 'missing.json'),
      /no such file/,
    );
    const badName = converted();
    expectLineageError(
      () => hfTokenizerFromJson(badName.tokenizerJson, { bos_token: '<nope>' }, 'cfg'),
      'cfg',
      /names token "<nope>", which is not in the vocabulary/,
    );
  });

  it('a vocabulary giving two pieces one id is refused, naming both', () => {
    const { tokenizerJson } = converted();
    const vocab = tokenizerJson.model.vocab as Record<string, number>;
    const [first, second] = Object.keys(vocab).slice(10, 12);
    vocab[second!] = vocab[first!]!;
    expectLineageError(
      () => hfTokenizerFromJson(tokenizerJson, {}, 'tok.json'),
      'tok.json',
      new RegExp(`vocab entries .* have the same id ${vocab[first!]}`),
    );
  });
});

describe('tokenizer.json merges and tokenizer_config.json, as the reference library checks them', () => {
  it('refuses merges that are not a list, not "a b" or [a, b], or name pieces not in the vocabulary', () => {
    const withMerges = (merges: unknown) => {
      const { tokenizerJson, tokenizerConfig } = converted();
      return () =>
        hfTokenizerFromJson({ ...tokenizerJson, model: { ...tokenizerJson.model, merges } }, tokenizerConfig);
    };
    expect(() => withMerges(converted().tokenizerJson.model.merges)()).not.toThrow();
    expectLineageError(withMerges('a b'), 'tokenizer.json', /"merges" must be a list/);
    expectLineageError(withMerges([1]), 'tokenizer.json', /merge 0 is neither "a b" nor \["a", "b"\]/);
    expectLineageError(
      withMerges(['zzq yyq']),
      'tokenizer.json',
      /merge 0 .* needs "zzq", which is not in the vocabulary/,
    );
  });
  it('refuses a tokenizer_config.json that is not an object', () => {
    const { tokenizerJson } = converted();
    expectLineageError(
      () => hfTokenizerFromJson(tokenizerJson, [1]),
      'tokenizer.json',
      /tokenizer_config\.json is not a JSON object/,
    );
  });
});
