import { readFileSync } from 'node:fs';
import { splitDocuments } from '../eval/documents.js';
import { sharedPath } from '../testing/shared.js';
import type { Llama2cTokenizer } from './llama2c-tokenizer.js';

export const tok512Path = () => sharedPath('models', 'stories260K', 'tok512.bin');
export const llama2TokPath = () => sharedPath('models', 'llama2-tokenizer', 'tokenizer.bin');

export interface Reference {
  text: string;
  tokens: number[];
  greedy_prompt_tokens: number[];
  greedy_continuation_tokens: number[];
}

export const readReference = (): Reference =>
  JSON.parse(readFileSync(sharedPath('fixtures', 'stories260K-reference.json'), 'utf8')) as Reference;

export const readValidDev = (): string =>
  readFileSync(sharedPath('data', 'tinystories', 'valid-dev.txt'), 'utf8');

/** The 800 dev stories as evaluation splits them: on `<|endoftext|>` lines, each trimmed. */
export const devStories = (): string[] => splitDocuments(readValidDev(), '<|endoftext|>');

/** WikiText-2 test lines (the file has no blank lines), untrimmed: they start with a space. */
export const wikiLines = (): string[] =>
  readFileSync(sharedPath('data', 'wikitext2', 'wiki.test.noblank.txt'), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0);

/** Edge cases for encoders: spaces, newlines, accents, emoji and CJK (byte fallback), runs of spaces. */
export function edgeCases(): string[] {
  const cases = [
    '',
    ' ',
    'a',
    ' a',
    'a ',
    '  leading two',
    'trailing two  ',
    'multiple   spaces    here',
    '\n',
    'line one\nline two\n\nline four\n',
    '\r\n windows\r\n',
    '\ttab\t',
    'café',
    'naïve résumé, Ångström',
    'emoji 😀 and family 👨‍👩‍👧 and flag 🇫🇷',
    '你好，世界',
    '日本語のテキスト',
    'Ελληνικά и русский',
    '\u00a0non-breaking\u00a0space',
    '\ufeffbom at start',
    'zero\u200bwidth',
    'x'.repeat(300),
    'The quick brown fox jumps over the lazy dog. '.repeat(20),
    '<0x0A> written out, and <unk>',
    'null \0 char',
  ];
  for (let k = 1; k <= 40; k++) {
    cases.push(
      ' '.repeat(k),
      `x${' '.repeat(k)}y`,
      `${' '.repeat(k)}y`,
      `y${' '.repeat(k)}`,
      `\n${' '.repeat(k)}\n`,
    );
  }
  return cases;
}

/**
 * run.c's `encode`, transcribed as directly as possible (byte-wise UTF-8 walk, lookup, byte fallback,
 * then the argmax-rescan merge loop with strict `>` from -1e10, so ties go to the leftmost pair). The
 * only liberty: each adjacent pair's lookup is kept in an array and redone only next to a merge.
 */
const keyOf = (b: Uint8Array | number[]) => String.fromCharCode(...b);
const tables = new WeakMap<Llama2cTokenizer, { lookup: Map<string, number>; keys: string[] }>();

export function naiveEncode(tok: Llama2cTokenizer, text: string, bos: boolean): number[] {
  let table = tables.get(tok);
  if (!table) {
    const lookup = new Map<string, number>();
    tok.pieceBytes.forEach((b, id) => {
      const k = keyOf(b);
      if (!lookup.has(k)) lookup.set(k, id);
    });
    table = { lookup, keys: tok.pieceBytes.map(keyOf) };
    tables.set(tok, table);
  }
  const { lookup, keys } = table;
  const bytes = new TextEncoder().encode(text);
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (bytes.length > 0) tokens.push(lookup.get(' ')!);
  let buf: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if ((c & 0xc0) !== 0x80) buf = [];
    buf.push(c);
    const nextIsCont = i + 1 < bytes.length && (bytes[i + 1]! & 0xc0) === 0x80;
    if (nextIsCont && buf.length < 4) continue;
    const id = lookup.get(keyOf(buf));
    if (id !== undefined) tokens.push(id);
    else for (const b of buf) tokens.push(b + 3);
    buf = [];
  }
  const pairId = (i: number): number => lookup.get(keys[tokens[i]!]! + keys[tokens[i + 1]!]!) ?? -1;
  const pairs: number[] = [];
  for (let i = 0; i + 1 < tokens.length; i++) pairs.push(pairId(i));
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < pairs.length; i++) {
      const id = pairs[i]!;
      if (id !== -1 && tok.scores[id]! > bestScore) {
        bestScore = tok.scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens[bestIdx] = bestId;
    tokens.splice(bestIdx + 1, 1);
    pairs.splice(bestIdx, 1);
    if (bestIdx > 0) pairs[bestIdx - 1] = pairId(bestIdx - 1);
    if (bestIdx < pairs.length) pairs[bestIdx] = pairId(bestIdx);
  }
  return tokens;
}
