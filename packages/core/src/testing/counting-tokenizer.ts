import type { Tokenizer } from '../tokenizer/tokenizer.js';

/**
 * `t` with its encode calls and the characters they were given counted: tests of memoised tokenization
 * (datasets, evaluation, recoveries) and of tokenizing only what is used.
 */
export function countingTokenizer(t: Tokenizer): {
  tokenizer: Tokenizer;
  calls: () => number;
  chars: () => number;
} {
  let n = 0;
  let chars = 0;
  return {
    tokenizer: {
      vocabSize: t.vocabSize,
      bosId: t.bosId,
      eosId: t.eosId,
      source: t.source,
      encode: (text, o) => {
        n++;
        chars += text.length;
        return t.encode(text, o);
      },
      decode: (ids) => t.decode(ids),
    },
    calls: () => n,
    chars: () => chars,
  };
}
