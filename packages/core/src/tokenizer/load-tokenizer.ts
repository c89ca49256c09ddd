import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { LineageError } from '../util/errors.js';
import { loadHFTokenizer } from './hf-tokenizer.js';
import { loadLlama2cTokenizer } from './llama2c-tokenizer.js';
import type { Tokenizer } from './tokenizer.js';

const SENTENCEPIECE_HINT =
  'SentencePiece .model files are not supported yet; give the tokenizer.json of the same tokenizer ' +
  '(transformers writes one when saving the tokenizer) or a llama2.c tokenizer.bin';

/**
 * Loads a tokenizer by what `path` is: a `.bin` is a llama2.c tokenizer, a `.json` file (tokenizer.json)
 * or a directory holding tokenizer.json is a Hugging Face tokenizer. A SentencePiece `.model` is
 * refused with a hint. Failures are one-line LineageErrors naming the file.
 */
export function loadTokenizer(path: string): Tokenizer {
  if (!existsSync(path)) throw new LineageError('no such file or directory', path);
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, 'tokenizer.json'))) return loadHFTokenizer(path);
    if (existsSync(join(path, 'tokenizer.model')))
      throw new LineageError(`${SENTENCEPIECE_HINT} (found only tokenizer.model)`, path);
    throw new LineageError('no tokenizer.json in this directory', path);
  }
  const name = basename(path).toLowerCase();
  if (name.endsWith('.bin')) return loadLlama2cTokenizer(path);
  if (name.endsWith('.json')) return loadHFTokenizer(path);
  if (name.endsWith('.model')) throw new LineageError(SENTENCEPIECE_HINT, path);
  throw new LineageError(
    'unknown tokenizer format: expected a llama2.c .bin, a tokenizer.json or a directory holding one',
    path,
  );
}

/**
 * The llama2.c tokenizer beside a llama2.c model file: `tok*.bin` or `tokenizer.bin` in its directory.
 * With several, the one whose vocabulary has `vocabSize` tokens when exactly one does; otherwise a
 * LineageError listing them. Undefined when there is none.
 */
export function findTokenizerFor(modelPath: string, vocabSize?: number): string | undefined {
  const dir = dirname(resolve(modelPath));
  const self = basename(modelPath);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return undefined;
  }
  const candidates = names
    .filter((n) => n !== self && /^tok.*\.bin$/i.test(n))
    .filter((n) => statSync(join(dir, n)).isFile())
    .sort();
  if (candidates.length === 0) return undefined;
  if (candidates.length === 1) return join(dir, candidates[0]!);
  if (vocabSize !== undefined) {
    const matching = candidates.filter((n) => {
      try {
        return loadLlama2cTokenizer(join(dir, n)).vocabSize === vocabSize;
      } catch {
        return false;
      }
    });
    if (matching.length === 1) return join(dir, matching[0]!);
    throw new LineageError(
      `${matching.length === 0 ? 'none' : 'several'} of the tokenizers beside the model (${candidates.join(', ')}) ` +
        `${matching.length === 0 ? 'has' : 'have'} ${vocabSize} tokens; pass --tokenizer <file>`,
      modelPath,
    );
  }
  throw new LineageError(
    `several tokenizers beside the model (${candidates.join(', ')}); pass --tokenizer <file>`,
    modelPath,
  );
}

/** Throws "tokenizer has N tokens but the model's vocabulary has M" when they differ (see assertTokenizerFits). */
export function assertTokenizerMatches(tok: Tokenizer, modelVocabSize: number, file?: string): void {
  if (tok.vocabSize !== modelVocabSize) {
    throw new LineageError(
      `tokenizer has ${tok.vocabSize} tokens but the model's vocabulary has ${modelVocabSize}` +
        (file === tok.source ? '' : ` (tokenizer: ${tok.source})`),
      file,
    );
  }
}

/**
 * A tokenizer fits a model when every id it can produce has an embedding row: it may have fewer tokens
 * than the vocabulary (Qwen2, Llama-3 derivatives and many fine-tunes pad vocab_size to a multiple of 64
 * or 128; the rows past the tokenizer are padding, never looked up, and never generated), never more.
 * A larger one is a one-line error naming the tokenizer and `modelFile` (where the vocabulary size is).
 */
export function assertTokenizerFits(tok: Tokenizer, modelVocabSize: number, modelFile: string): void {
  if (tok.vocabSize > modelVocabSize) {
    throw new LineageError(
      `tokenizer has ${tok.vocabSize} tokens, more than the ${modelVocabSize} of the model's vocabulary (${modelFile}): ids ${modelVocabSize}..${tok.vocabSize - 1} have no embedding row`,
      tok.source,
    );
  }
}

/** Vocabulary rows past the tokenizer (padding: never generated, kept in the softmax as transformers keeps them). */
export function paddingRows(tok: Tokenizer | undefined, modelVocabSize: number): number {
  return tok ? Math.max(0, modelVocabSize - tok.vocabSize) : 0;
}
