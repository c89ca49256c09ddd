import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { Tokenizer as HFLibTokenizer } from '@huggingface/tokenizers';
import { readRegularFileSync } from '../io/fs-util.js';
import { findDuplicateKey, jsonSyntaxReason } from '../io/json-keys.js';
import { LineageError } from '../util/errors.js';
import type { Tokenizer } from './tokenizer.js';

type Json = Record<string, unknown>;

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

const isObject = (x: unknown): x is Json => typeof x === 'object' && x !== null && !Array.isArray(x);

/** A token named in tokenizer_config.json: a string or an AddedToken-like `{content}` object. */
function tokenName(x: unknown): string | undefined {
  if (typeof x === 'string') return x;
  if (isObject(x) && typeof x.content === 'string') return x.content;
  return undefined;
}

const LONE_SURROGATE = /\p{Cs}/u;
const LONE_SURROGATE_ALL = /\p{Cs}/gu;

const BOS_NAMES = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>'];
const EOS_NAMES = ['</s>', '<|end_of_text|>', '<eos>', '<|endoftext|>'];

/**
 * A Hugging Face `tokenizer.json` tokenizer, run by @huggingface/tokenizers. BOS/EOS are added only
 * through `encode`'s options (the library's post-processor is not used), and special tokens written
 * literally in the text (`<s>`, `</s>`, ...) are encoded as ordinary text, as SentencePiece and
 * llama.cpp's default do. `decode` drops special tokens and follows the tokenizer.json decoder.
 */
export class HFTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  /** Whether the tokenizer's own setup adds BOS (tokenizer_config.json `add_bos_token`, else its post-processor). */
  readonly addsBos: boolean;
  private readonly lib: HFLibTokenizer;
  private readonly specialIds: Set<number>;
  private readonly cleanUpSpaces: boolean;
  private readonly ids = new Map<string, number>();

  constructor(
    tokenizerJson: unknown,
    tokenizerConfig: unknown,
    readonly source: string,
  ) {
    if (!isObject(tokenizerJson))
      throw new LineageError('unsupported tokenizer.json: not a JSON object', source);
    if (tokenizerConfig !== undefined && tokenizerConfig !== null && !isObject(tokenizerConfig))
      throw new LineageError('tokenizer_config.json is not a JSON object', source);
    const config = isObject(tokenizerConfig) ? tokenizerConfig : {};
    const model = tokenizerJson.model;
    if (!isObject(model)) throw new LineageError('unsupported tokenizer.json: no "model" object', source);
    const modelType =
      model.type ??
      (Array.isArray(model.vocab)
        ? 'Unigram'
        : 'merges' in model
          ? 'BPE'
          : 'continuing_subword_prefix' in model
            ? 'WordPiece'
            : undefined);
    if (modelType !== 'BPE' && modelType !== 'WordPiece' && modelType !== 'Unigram') {
      throw new LineageError(
        `unsupported tokenizer.json: model type ${JSON.stringify(modelType ?? null)} (BPE, WordPiece or Unigram expected)`,
        source,
      );
    }
    const added = tokenizerJson.added_tokens ?? [];
    if (
      !Array.isArray(added) ||
      !added.every((t) => isObject(t) && typeof t.content === 'string' && Number.isInteger(t.id))
    ) {
      throw new LineageError(
        'unsupported tokenizer.json: "added_tokens" must be a list of {id, content}',
        source,
      );
    }
    const addedTokens = added as AddedTokenJson[];

    // Our own id table (model vocab + added tokens) for vocabSize and BOS/EOS lookups.
    const ids = this.ids;
    const vocab = model.vocab;
    if (isObject(vocab)) {
      // Two pieces with one id would decode that id as either: the vocabulary is broken, not ambiguous to us.
      const pieceOf = new Map<number, string>();
      for (const [piece, id] of Object.entries(vocab)) {
        if (!Number.isInteger(id) || (id as number) < 0) {
          throw new LineageError(
            `unsupported tokenizer.json: vocab entry ${JSON.stringify(piece)} has id ${String(id)}`,
            source,
          );
        }
        const other = pieceOf.get(id as number);
        if (other !== undefined) {
          throw new LineageError(
            `tokenizer.json: vocab entries ${JSON.stringify(other)} and ${JSON.stringify(piece)} have the same id ${id}`,
            source,
          );
        }
        pieceOf.set(id as number, piece);
        ids.set(piece, id as number);
      }
    } else if (Array.isArray(vocab)) {
      // Unigram: [[piece, score], ...], ids by position.
      vocab.forEach((entry, id) => {
        if (Array.isArray(entry) && typeof entry[0] === 'string') ids.set(entry[0], id);
      });
    } else {
      throw new LineageError('unsupported tokenizer.json: the model has no vocab', source);
    }
    if (modelType === 'BPE' && isObject(vocab)) checkMerges(model, vocab, source);
    for (const t of addedTokens) ids.set(t.content, t.id);
    let maxId = -1;
    for (const id of ids.values()) maxId = Math.max(maxId, id);
    if (maxId < 0) throw new LineageError('unsupported tokenizer.json: empty vocabulary', source);
    this.vocabSize = maxId + 1;
    this.specialIds = new Set(addedTokens.filter((t) => t.special).map((t) => t.id));

    // The library splits added tokens out of the raw text before normalizing. Give it only the
    // non-special ones, so text is text: BOS/EOS come from our options, never from a literal "<s>".
    const forLib = { ...tokenizerJson, added_tokens: addedTokens.filter((t) => !t.special) };
    for (const key of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const) {
      if (!(key in forLib)) (forLib as Json)[key] = null;
    }
    try {
      this.lib = new HFLibTokenizer(forLib, config);
      this.lib.encode('Hello, world', { add_special_tokens: false });
    } catch (e) {
      throw new LineageError(`unsupported tokenizer.json: ${(e as Error).message.split('\n')[0]}`, source);
    }

    const template = firstTemplateSpecial(tokenizerJson.post_processor);
    const find = (configured: unknown, names: string[], fromTemplate?: string): number | undefined => {
      if (configured === null) return undefined;
      const name = tokenName(configured);
      if (name !== undefined) {
        const id = ids.get(name);
        if (id === undefined)
          throw new LineageError(
            `tokenizer_config.json names token ${JSON.stringify(name)}, which is not in the vocabulary`,
            source,
          );
        return id;
      }
      if (fromTemplate !== undefined && ids.has(fromTemplate)) return ids.get(fromTemplate);
      for (const n of names) if (ids.has(n)) return ids.get(n);
      return undefined;
    };
    this.bosId = find(config.bos_token, BOS_NAMES, template.first);
    this.eosId = find(config.eos_token, EOS_NAMES, template.last);
    this.addsBos =
      typeof config.add_bos_token === 'boolean' ? config.add_bos_token : template.first !== undefined;
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
  }

  encode(text: string, options: { bos?: boolean; eos?: boolean } = {}): number[] {
    const out: number[] = [];
    if (options.bos) {
      if (this.bosId === undefined) throw new LineageError('this tokenizer has no BOS token', this.source);
      out.push(this.bosId);
    }
    if (text.length > 0) {
      // Lone surrogates become U+FFFD first, as UTF-8 text (and the llama2.c encoder) would hold them.
      const wellFormed = LONE_SURROGATE.test(text) ? text.replace(LONE_SURROGATE_ALL, '\uFFFD') : text;
      const { ids, tokens } = this.lib.encode(wellFormed, { add_special_tokens: false });
      ids.forEach((id, i) => {
        if (id === undefined)
          throw new LineageError(
            `no id for piece ${JSON.stringify(tokens[i])} (and no unk token)`,
            this.source,
          );
        out.push(id);
      });
    }
    if (options.eos) {
      if (this.eosId === undefined) throw new LineageError('this tokenizer has no EOS token', this.source);
      out.push(this.eosId);
    }
    return out;
  }

  decode(ids: readonly number[]): string {
    const kept: number[] = [];
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new LineageError(
          `token id ${id} is outside the vocabulary (${this.vocabSize} tokens)`,
          this.source,
        );
      }
      if (!this.specialIds.has(id)) kept.push(id);
    }
    if (kept.length === 0) return '';
    return this.lib.decode(kept, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
  }

  /** The id of a token string (model vocabulary or added token), if any. */
  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }
}

/** The special tokens a TemplateProcessing post-processor puts before and after a single sequence. */
function firstTemplateSpecial(pp: unknown): { first?: string; last?: string } {
  const processors =
    isObject(pp) && pp.type === 'Sequence' && Array.isArray(pp.processors) ? pp.processors : [pp];
  for (const p of processors) {
    if (!isObject(p) || p.type !== 'TemplateProcessing' || !Array.isArray(p.single)) continue;
    const single = p.single as unknown[];
    const special = (x: unknown): string | undefined =>
      isObject(x) && isObject(x.SpecialToken) && typeof x.SpecialToken.id === 'string'
        ? x.SpecialToken.id
        : undefined;
    const first = special(single[0]);
    const last = single.length > 1 ? special(single[single.length - 1]) : undefined;
    return { ...(first !== undefined ? { first } : {}), ...(last !== undefined ? { last } : {}) };
  }
  return {};
}

function readJson(path: string, what: string): unknown {
  // A regular file of bounded size, checked before opening: a FIFO or device must not hang the load.
  const text = readRegularFileSync(path).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LineageError(`invalid JSON in ${what}: ${jsonSyntaxReason(text, e)}`, path);
  }
  // JSON.parse keeps the last of two equal keys (a vocabulary piece listed twice): not ours to guess
  const dup = findDuplicateKey(text);
  if (dup) throw new LineageError(`the key '${dup.join('.')}' appears twice in ${what}`, path);
  return json;
}

/** An HF tokenizer from already-parsed tokenizer.json (and tokenizer_config.json) contents. */
export function hfTokenizerFromJson(
  tokenizerJson: unknown,
  tokenizerConfig?: unknown,
  source = 'tokenizer.json',
): HFTokenizer {
  return new HFTokenizer(tokenizerJson, tokenizerConfig ?? {}, source);
}

/**
 * Loads an HF tokenizer from a directory holding tokenizer.json, or from a tokenizer.json path; a
 * tokenizer_config.json beside it supplies bos/eos tokens and add_bos_token. `source` is the
 * tokenizer.json path.
 */
export function loadHFTokenizer(path: string): HFTokenizer {
  let file = resolve(path);
  if (existsSync(file) && statSync(file).isDirectory()) {
    file = join(file, 'tokenizer.json');
    if (!existsSync(file)) throw new LineageError('no tokenizer.json in this directory', path);
  }
  const json = readJson(file, basename(file));
  const configPath = join(dirname(file), 'tokenizer_config.json');
  const config = existsSync(configPath) ? readJson(configPath, 'tokenizer_config.json') : {};
  return new HFTokenizer(json, config, file);
}

/**
 * BPE merges as the reference tokenizers library checks them when it loads a file: a list of "a b" strings
 * or ["a", "b"] pairs whose parts and result are all in the vocabulary (else a merge could never apply, or
 * would make a token the model has no row for).
 */
function checkMerges(model: Record<string, unknown>, vocab: Record<string, unknown>, source: string): void {
  const merges = model.merges ?? [];
  if (!Array.isArray(merges))
    throw new LineageError('unsupported tokenizer.json: "merges" must be a list', source);
  const prefix = model.continuing_subword_prefix;
  const skip = typeof prefix === 'string' ? prefix.length : 0;
  const has = (t: string) => Object.hasOwn(vocab, t);
  merges.forEach((m, i) => {
    let pair: [string, string] | undefined;
    if (typeof m === 'string') {
      const at = m.indexOf(' ');
      if (at > 0 && at < m.length - 1) pair = [m.slice(0, at), m.slice(at + 1)];
    } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string')
      pair = [m[0], m[1]];
    if (!pair)
      throw new LineageError(
        `unsupported tokenizer.json: merge ${i} is neither "a b" nor ["a", "b"] (${JSON.stringify(m)?.slice(0, 60)})`,
        source,
      );
    const [a, b] = pair;
    for (const t of [a, b, a + b.slice(skip)])
      if (!has(t))
        throw new LineageError(
          `tokenizer.json: merge ${i} (${JSON.stringify(m).slice(0, 60)}) needs ${JSON.stringify(t).slice(0, 40)}, which is not in the vocabulary`,
          source,
        );
  });
}
