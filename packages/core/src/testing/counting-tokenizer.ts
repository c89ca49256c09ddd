import type { Tokenizer } from '../tokenizer/tokenizer.js';

/** `t` with its encode calls counted: tests of memoised tokenization (datasets, evaluation, recoveries). */
export function countingTokenizer(t: Tokenizer): { tokenizer: Tokenizer; calls: () => number } {
  let n = 0;
  return {
    tokenizer: {
      vocabSize: t.vocabSize,
      bosId: t.bosId,
      eosId: t.eosId,
      source: t.source,
      encode: (text, o) => {
        n++;
        return t.encode(text, o);
      },
      decode: (ids) => t.decode(ids),
    },
    calls: () => n,
  };
}
