import type { Tokenizer } from '../tokenizer/tokenizer.js';

// Tokenizations by tokenizer object, then by a key naming the text and how it is tokenized; a few per
// tokenizer, least recently used dropped, so successive recoveries, calibrations and evaluations of one
// pipeline tokenize their text once. A tokenizer no longer referenced takes its entries with it.
const ENTRIES = 8;
const memo = new WeakMap<Tokenizer, Map<string, unknown>>();

/** `make()`'s result for this tokenizer and key, made once and shared: callers must not modify it. */
export function memoised<T>(tokenizer: Tokenizer, key: string, make: () => T): T {
  let m = memo.get(tokenizer);
  if (!m) {
    m = new Map();
    memo.set(tokenizer, m);
  }
  if (m.has(key)) {
    const hit = m.get(key) as T;
    m.delete(key);
    m.set(key, hit);
    return hit;
  }
  const v = make();
  m.set(key, v);
  if (m.size > ENTRIES) m.delete(m.keys().next().value!);
  return v;
}
