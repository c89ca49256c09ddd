import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sharedPath } from '../testing/shared.js';
import { tempDir } from '../testing/temp-dir.js';
import { LineageError } from '../util/errors.js';
import { llama2cToTokenizerJson } from './convert-tokenizer.js';
import { HFTokenizer } from './hf-tokenizer.js';
import { Llama2cTokenizer, loadLlama2cTokenizer } from './llama2c-tokenizer.js';
import {
  assertTokenizerFits,
  assertTokenizerMatches,
  findTokenizerFor,
  loadTokenizer,
  paddingRows,
} from './load-tokenizer.js';
import { llama2TokPath, tok512Path } from './test-data.js';

function errorOf(fn: () => unknown): LineageError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LineageError);
    expect((e as Error).message).not.toContain('\n');
    return e as LineageError;
  }
  throw new Error('expected a LineageError');
}

describe('loadTokenizer dispatches on the path', () => {
  const dir = tempDir('lineage-load-');
  const { tokenizerJson, tokenizerConfig } = llama2cToTokenizerJson(loadLlama2cTokenizer(tok512Path()));
  const hfDir = join(dir, 'hf');
  mkdirSync(hfDir);
  writeFileSync(join(hfDir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  writeFileSync(join(hfDir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));

  it('.bin is llama2.c; tokenizer.json or its directory is HF', () => {
    expect(loadTokenizer(tok512Path())).toBeInstanceOf(Llama2cTokenizer);
    const a = loadTokenizer(hfDir);
    const b = loadTokenizer(join(hfDir, 'tokenizer.json'));
    expect(a).toBeInstanceOf(HFTokenizer);
    expect(b).toBeInstanceOf(HFTokenizer);
    expect(a.vocabSize).toBe(512);
    expect(a.encode('Lily and Tim', { bos: true })).toEqual(
      loadTokenizer(tok512Path()).encode('Lily and Tim', { bos: true }),
    );
  });

  it('a SentencePiece .model is refused with a hint', () => {
    const model = sharedPath('models', 'llama2-tokenizer', 'tokenizer.model');
    const e = errorOf(() => loadTokenizer(model));
    expect(e.message).toMatch(
      /^.*tokenizer\.model: SentencePiece \.model files are not supported yet; give the tokenizer\.json/,
    );
    const spDir = join(dir, 'sp');
    mkdirSync(spDir);
    copyFileSync(model, join(spDir, 'tokenizer.model'));
    expect(errorOf(() => loadTokenizer(spDir)).message).toMatch(
      /not supported yet.*found only tokenizer\.model/,
    );
  });

  it('missing paths, empty directories and unknown formats are refused', () => {
    expect(errorOf(() => loadTokenizer(join(dir, 'nope.bin'))).message).toMatch(
      /nope\.bin: no such file or directory/,
    );
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    expect(errorOf(() => loadTokenizer(empty)).message).toMatch(/no tokenizer\.json in this directory/);
    writeFileSync(join(dir, 'vocab.txt'), 'a\nb\n');
    expect(errorOf(() => loadTokenizer(join(dir, 'vocab.txt'))).message).toMatch(
      /vocab\.txt: unknown tokenizer format/,
    );
  });
});

describe('findTokenizerFor a llama2.c model', () => {
  it('finds tok512.bin beside stories260K.bin', () => {
    const model = sharedPath('models', 'stories260K', 'stories260K.bin');
    expect(findTokenizerFor(model)).toBe(tok512Path());
    expect(findTokenizerFor(model, 512)).toBe(tok512Path());
  });

  it('returns undefined when there is none; picks by vocabulary size among several, else lists them', () => {
    const dir = tempDir('lineage-find-');
    const model = join(dir, 'model.bin');
    writeFileSync(model, new Uint8Array(16));
    expect(findTokenizerFor(model)).toBeUndefined();
    copyFileSync(tok512Path(), join(dir, 'tok512.bin'));
    expect(findTokenizerFor(model, 32000)).toBe(join(dir, 'tok512.bin')); // the only one: the size check is assertTokenizerMatches's job
    copyFileSync(llama2TokPath(), join(dir, 'tokenizer.bin'));
    expect(findTokenizerFor(model, 512)).toBe(join(dir, 'tok512.bin'));
    expect(findTokenizerFor(model, 32000)).toBe(join(dir, 'tokenizer.bin'));
    const e = errorOf(() => findTokenizerFor(model));
    expect(e.message).toBe(
      `${model}: several tokenizers beside the model (tok512.bin, tokenizer.bin); pass --tokenizer <file>`,
    );
    expect(errorOf(() => findTokenizerFor(model, 1000)).message).toMatch(
      /none of the tokenizers beside the model \(tok512\.bin, tokenizer\.bin\) has 1000 tokens/,
    );
  });
});

describe('assertTokenizerMatches', () => {
  it('refuses a tokenizer whose size differs from the model vocabulary', () => {
    const tok = loadLlama2cTokenizer(tok512Path());
    expect(() => assertTokenizerMatches(tok, 512, 'model.bin')).not.toThrow();
    const e = errorOf(() => assertTokenizerMatches(tok, 32000, 'model.bin'));
    expect(e.message).toBe(
      `model.bin: tokenizer has 512 tokens but the model's vocabulary has 32000 (tokenizer: ${tok512Path()})`,
    );
    expect(e.file).toBe('model.bin');
    expect(errorOf(() => assertTokenizerMatches(tok, 600, tok.source)).message).toBe(
      `${tok512Path()}: tokenizer has 512 tokens but the model's vocabulary has 600`,
    );
  });
});

describe('assertTokenizerFits', () => {
  it('accepts a padded vocabulary (fewer tokens than rows), refuses ids without a row, naming both files', () => {
    const tok = loadLlama2cTokenizer(tok512Path());
    expect(() => assertTokenizerFits(tok, 520, 'config.json')).not.toThrow();
    expect(paddingRows(tok, 520)).toBe(8);
    expect(paddingRows(tok, 512)).toBe(0);
    const e = errorOf(() => assertTokenizerFits(tok, 500, 'model/config.json'));
    expect(e.message).toBe(
      `${tok512Path()}: tokenizer has 512 tokens, more than the 500 of the model's vocabulary (model/config.json): ids 500..511 have no embedding row`,
    );
    expect(e.file).toBe(tok512Path());
  });
});
