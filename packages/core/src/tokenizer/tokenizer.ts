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
