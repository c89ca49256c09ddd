/** A tokenizer as models and evaluation use it. Implementations: llama2.c `tokenizer.bin`, HF `tokenizer.json`. */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  /** The file it was loaded from (for error messages). */
  readonly source: string;
  /** Token ids for `text`, with BOS prepended when `bos` is true (default false). */
  encode(text: string, options?: { bos?: boolean; eos?: boolean }): number[];
  decode(ids: readonly number[]): string;
}

/** Ids past the wanted prefix that must also be there before a prefix's encoding is trusted (see `encodePrefix`). */
const PREFIX_MARGIN = 64;

/**
 * The first `maxTokens` ids of `tok.encode(text, options)` without encoding all of `text` (a 5 MB line scored
 * with `--limit 4` needs 2048 tokens, not a minute of BPE): the encoding of a prefix cut at whitespace, the
 * prefix doubled until its encoding runs `PREFIX_MARGIN` ids past what is kept. A cut can change only the
 * tokens of the word it falls in (no vocabulary piece spans whitespace), which the margin discards; the
 * tests compare it with the whole encoding on the real tokenizers.
 */
export function encodePrefix(
  tok: Tokenizer,
  text: string,
  maxTokens: number,
  options?: { bos?: boolean },
): number[] {
  // most pieces are a few characters; byte fallback spends up to four ids on one character
  for (let chars = Math.max(4096, 8 * (maxTokens + PREFIX_MARGIN)); ; chars *= 2) {
    if (chars >= text.length) return tok.encode(text, options).slice(0, maxTokens);
    const ids = tok.encode(text.slice(0, cutAtWhitespace(text, chars)), options);
    if (ids.length >= maxTokens + PREFIX_MARGIN) return ids.slice(0, maxTokens);
  }
}

/** The last whitespace position at or before `end` (in its second half), else `end` off a surrogate pair. */
function cutAtWhitespace(text: string, end: number): number {
  for (let i = end; i > end / 2; i--) if (/\s/.test(text[i]!)) return i;
  const code = text.charCodeAt(end - 1);
  return code >= 0xd800 && code <= 0xdbff ? end - 1 : end;
}
