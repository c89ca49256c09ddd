export { type Llama2cExtra, llama2cToTokenizerJson, tokenizerJsonToLlama2c } from './convert-tokenizer.js';
export { HFTokenizer, hfTokenizerFromJson, loadHFTokenizer } from './hf-tokenizer.js';
export {
  LLAMA2C_BOS_ID,
  LLAMA2C_BYTE_OFFSET,
  LLAMA2C_EOS_ID,
  LLAMA2C_NO_MERGE_SCORE,
  LLAMA2C_UNK_ID,
  Llama2cTokenizer,
  loadLlama2cTokenizer,
  parseLlama2cTokenizer,
  serializeLlama2cTokenizer,
} from './llama2c-tokenizer.js';
export {
  assertTokenizerFits,
  assertTokenizerMatches,
  findTokenizerFor,
  loadTokenizer,
  paddingRows,
} from './load-tokenizer.js';
export { encodePrefix, type Tokenizer } from './tokenizer.js';
