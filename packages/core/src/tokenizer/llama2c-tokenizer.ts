// Hand-written: @huggingface/tokenizers cannot read llama2.c's tokenizer.bin, nor run its greedy-merge encode.
import { readRegularFileSync } from '../io/fs-util.js';
import { LineageError } from '../util/errors.js';
import type { Tokenizer } from './tokenizer.js';

/** llama2.c's special ids (hard-coded in run.c). */
export const LLAMA2C_UNK_ID = 0;
export const LLAMA2C_BOS_ID = 1;
export const LLAMA2C_EOS_ID = 2;
/** A byte with no token of its own encodes as id `byte + 3` (run.c). */
export const LLAMA2C_BYTE_OFFSET = 3;
/** run.c starts its best-score search at -1e10 with a strict `>`: a token scored at or below it never merges. */
export const LLAMA2C_NO_MERGE_SCORE = -1e10;

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** One byte per char (latin1): concatenating keys concatenates byte strings, exactly like run.c's sprintf. */
function bytesKey(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

const utf8 = new TextEncoder();
const utf8Decode = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * A llama2.c `tokenizer.bin` tokenizer. `encode` reproduces run.c's `encode` exactly (BOS, dummy-prefix
 * space, per-codepoint lookup with byte fallback to id byte+3, then repeatedly merging the adjacent pair
 * whose concatenation is the best-scored token, ties to the leftmost pair), using a priority queue over
 * a linked list of symbols instead of run.c's quadratic rescans. `decode` follows run.c's `decode`.
 */
export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId = LLAMA2C_BOS_ID;
  readonly eosId = LLAMA2C_EOS_ID;
  /** Pieces as llama2.c stores them (' ' for SentencePiece's '▁', BOS as "\n<s>\n", bytes as "<0x0A>"). */
  readonly pieces: readonly string[];
  /** The raw bytes of each piece. */
  readonly pieceBytes: readonly Uint8Array[];
  /** Merge scores (float32 values). */
  readonly scores: readonly number[];
  readonly maxTokenLength: number;

  private readonly keys: string[];
  private readonly lookup = new Map<string, number>();
  private readonly decodeBytes: Uint8Array[];
  private readonly spaceId: number;
  private readonly asciiIds = new Int32Array(128).fill(-2);
  private readonly codepointIds = new Map<number, number>();
  private pairCache = new Map<number, number>();

  constructor(
    pieceBytes: readonly Uint8Array[],
    scores: readonly number[],
    maxTokenLength: number,
    readonly source: string,
  ) {
    if (pieceBytes.length !== scores.length)
      throw new LineageError('pieces and scores differ in length', source);
    this.vocabSize = pieceBytes.length;
    this.pieceBytes = pieceBytes;
    this.scores = scores;
    this.maxTokenLength = maxTokenLength;
    this.keys = pieceBytes.map(bytesKey);
    // run.c bsearches a sorted copy; with unique pieces (both shipped files) any lookup finds the one id.
    // Should a file repeat a piece, the lowest id wins here.
    this.keys.forEach((k, id) => {
      if (!this.lookup.has(k)) this.lookup.set(k, id);
    });
    this.pieces = pieceBytes.map((b) => utf8Decode.decode(b));
    this.decodeBytes = pieceBytes.map((b, id) => {
      const m = BYTE_PIECE.exec(this.keys[id]!);
      return m ? Uint8Array.of(Number.parseInt(m[1]!, 16)) : b;
    });
    // run.c looks up " " for the dummy prefix (and would push -1 if absent); fall back to the byte token then.
    this.spaceId = this.lookup.get(' ') ?? 0x20 + LLAMA2C_BYTE_OFFSET;
  }

  encode(text: string, options: { bos?: boolean; eos?: boolean } = {}): number[] {
    // As in run.c, BOS sits in the list while merging (no real vocabulary merges it); EOS comes after.
    const symbols = text.length > 0 ? this.initialSymbols(text) : [];
    if (options.bos) symbols.unshift(this.bosId);
    const merged = this.mergeAll(symbols);
    const out: number[] = new Array(merged.length);
    for (let i = 0; i < merged.length; i++) out[i] = merged[i]!;
    if (options.eos) out.push(this.eosId);
    return out;
  }

  /** run.c before merging: the dummy-prefix space, then each codepoint's token or its UTF-8 bytes as id byte+3. */
  private initialSymbols(text: string): number[] {
    const ids: number[] = [this.spaceId];
    for (const ch of text) {
      const cp = ch.codePointAt(0)!;
      let id = cp < 128 ? this.asciiIds[cp]! : (this.codepointIds.get(cp) ?? -2);
      if (id === -2) {
        id = this.lookup.get(bytesKey(utf8.encode(ch))) ?? -1;
        if (cp < 128) this.asciiIds[cp] = id;
        else this.codepointIds.set(cp, id);
      }
      if (id >= 0) ids.push(id);
      else {
        // Lone surrogates encode as U+FFFD's bytes (TextEncoder), as UTF-8 text would hold them.
        for (const b of utf8.encode(ch)) {
          const bid = b + LLAMA2C_BYTE_OFFSET;
          if (bid >= this.vocabSize) {
            throw new LineageError(
              `byte 0x${b.toString(16)} has no byte-fallback token (id ${bid})`,
              this.source,
            );
          }
          ids.push(bid);
        }
      }
    }
    return ids;
  }

  /** The token that merging ids a and b would give (score > -1e10), else -1. */
  private mergeOf(a: number, b: number): number {
    const key = a * this.vocabSize + b;
    const hit = this.pairCache.get(key);
    if (hit !== undefined) return hit;
    const ka = this.keys[a]!;
    const kb = this.keys[b]!;
    let id = -1;
    if (ka.length + kb.length <= this.maxTokenLength) {
      const found = this.lookup.get(ka + kb);
      if (found !== undefined && this.scores[found]! > LLAMA2C_NO_MERGE_SCORE) id = found;
    }
    if (this.pairCache.size >= 1 << 22) this.pairCache = new Map();
    this.pairCache.set(key, id);
    return id;
  }

  /**
   * Greedy merging equivalent to run.c's loop: always the pair with the highest score, and among equal
   * scores the leftmost. Symbols form a linked list over their original positions (a merged symbol keeps
   * its left part's position, so position order is left-to-right order); candidate pairs sit in a binary
   * max-heap keyed (score, -position), and entries made stale by earlier merges are skipped on pop.
   */
  private mergeAll(initial: number[]): Int32Array {
    const n = initial.length;
    if (n < 2) return Int32Array.from(initial);
    const ids = Int32Array.from(initial);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const version = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Heap entries in parallel arrays; at most n-1 initial pairs plus 2 per merge (< n merges).
    const cap = 3 * n + 1;
    const eScore = new Float64Array(cap);
    const eLeft = new Int32Array(cap);
    const eRight = new Int32Array(cap);
    const eVerL = new Int32Array(cap);
    const eVerR = new Int32Array(cap);
    const eMerged = new Int32Array(cap);
    const heap = new Int32Array(cap);
    let heapSize = 0;
    let entries = 0;
    const scores = this.scores;

    // a goes before b: higher score, then smaller (more leftward) position.
    const before = (a: number, b: number): boolean =>
      eScore[a]! > eScore[b]! || (eScore[a] === eScore[b] && eLeft[a]! < eLeft[b]!);

    const push = (left: number, right: number): void => {
      const m = this.mergeOf(ids[left]!, ids[right]!);
      if (m < 0) return;
      const e = entries++;
      eScore[e] = scores[m]!;
      eLeft[e] = left;
      eRight[e] = right;
      eVerL[e] = version[left]!;
      eVerR[e] = version[right]!;
      eMerged[e] = m;
      let i = heapSize++;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        const p = heap[parent]!;
        if (!before(e, p)) break;
        heap[i] = p;
        i = parent;
      }
      heap[i] = e;
    };

    const pop = (): number => {
      const top = heap[0]!;
      const last = heap[--heapSize]!;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= heapSize) break;
        const r = l + 1;
        let c = l;
        if (r < heapSize && before(heap[r]!, heap[l]!)) c = r;
        if (!before(heap[c]!, last)) break;
        heap[i] = heap[c]!;
        i = c;
      }
      heap[i] = last;
      return top;
    };

    for (let i = 0; i + 1 < n; i++) push(i, i + 1);
    let count = n;
    while (heapSize > 0) {
      const e = pop();
      const left = eLeft[e]!;
      const right = eRight[e]!;
      if (!alive[left] || !alive[right] || next[left] !== right) continue;
      if (version[left] !== eVerL[e] || version[right] !== eVerR[e]) continue;
      ids[left] = eMerged[e]!;
      version[left]!++;
      alive[right] = 0;
      const after = next[right]!;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      count--;
      if (prev[left]! >= 0) push(prev[left]!, left);
      if (after >= 0) push(left, after);
    }
    const out = new Int32Array(count);
    for (let i = 0, k = 0; i >= 0 && i < n; i = next[i]!) out[k++] = ids[i]!;
    return out;
  }

  /**
   * run.c's decode: BOS/EOS print nothing, a piece right after BOS loses one leading space, `<0xXX>`
   * pieces are that raw byte; bytes are joined and decoded as UTF-8 at the end (so characters split
   * over byte tokens come back whole; invalid sequences become U+FFFD).
   */
  decode(ids: readonly number[]): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    let prev = -1;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new LineageError(
          `token id ${id} is outside the vocabulary (${this.vocabSize} tokens)`,
          this.source,
        );
      }
      if (id !== this.bosId && id !== this.eosId) {
        let piece = this.decodeBytes[id]!;
        if (prev === this.bosId && piece.length > 0 && piece[0] === 0x20 && piece === this.pieceBytes[id]) {
          piece = piece.subarray(1);
        }
        parts.push(piece);
        total += piece.length;
      }
      prev = id;
    }
    const all = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    return utf8Decode.decode(all);
  }

  /** The llama2.c `tokenizer.bin` bytes for this tokenizer. */
  toBytes(): Uint8Array {
    return serializeLlama2cTokenizer(this.pieceBytes, this.scores, this.maxTokenLength);
  }
}

/** Writes the llama2.c tokenizer.bin layout: int32 max_token_length, then per token f32 score, int32 length, bytes. */
export function serializeLlama2cTokenizer(
  pieceBytes: readonly Uint8Array[],
  scores: readonly number[],
  maxTokenLength?: number,
): Uint8Array {
  let size = 4;
  let maxLen = 0;
  for (const b of pieceBytes) {
    size += 8 + b.length;
    maxLen = Math.max(maxLen, b.length);
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setInt32(0, maxTokenLength ?? maxLen, true);
  let off = 4;
  pieceBytes.forEach((b, i) => {
    view.setFloat32(off, scores[i]!, true);
    view.setInt32(off + 4, b.length, true);
    out.set(b, off + 8);
    off += 8 + b.length;
  });
  return out;
}

/**
 * Parses llama2.c tokenizer.bin bytes. Reads `vocabSize` tokens when given (then nothing may follow),
 * else tokens until the end of the data. Malformed data throws a one-line LineageError naming `source`.
 */
export function parseLlama2cTokenizer(
  bytes: Uint8Array,
  source: string,
  vocabSize?: number,
): Llama2cTokenizer {
  const what = 'llama2.c tokenizer';
  if (bytes.length < 4) throw new LineageError(`too short (${bytes.length} bytes) to be a ${what}`, source);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const maxLen = view.getInt32(0, true);
  if (maxLen <= 0) throw new LineageError(`not a ${what}: max_token_length is ${maxLen}`, source);
  const pieces: Uint8Array[] = [];
  const scores: number[] = [];
  let off = 4;
  const total = bytes.length;
  while (vocabSize === undefined ? off < total : pieces.length < vocabSize) {
    const i = pieces.length;
    if (off + 8 > total) {
      throw new LineageError(
        vocabSize !== undefined && off === total
          ? `truncated: holds ${i} tokens, expected ${vocabSize}`
          : `truncated or trailing garbage: ${total - off} byte(s) at offset ${off} do not form token ${i}'s record`,
        source,
      );
    }
    const score = view.getFloat32(off, true);
    const len = view.getInt32(off + 4, true);
    // NaN compares false with everything: the merge order (run.c's best-score search) would be arbitrary
    if (Number.isNaN(score))
      throw new LineageError(`not a ${what}: token ${i}'s score is NaN (offset ${off})`, source);
    if (len < 0)
      throw new LineageError(
        `not a ${what}: token ${i} has negative length ${len} (offset ${off + 4})`,
        source,
      );
    if (len > maxLen) {
      throw new LineageError(
        `not a ${what}: token ${i} has length ${len}, more than max_token_length ${maxLen} (offset ${off + 4})`,
        source,
      );
    }
    if (off + 8 + len > total) {
      throw new LineageError(
        `truncated: token ${i} needs ${len} bytes at offset ${off + 8}, ${total - off - 8} remain`,
        source,
      );
    }
    scores.push(score);
    pieces.push(bytes.slice(off + 8, off + 8 + len));
    off += 8 + len;
  }
  if (off < total) {
    throw new LineageError(
      `${total - off} byte(s) of trailing data after the ${pieces.length} tokens expected`,
      source,
    );
  }
  if (pieces.length === 0) throw new LineageError(`${what} holds no tokens`, source);
  return new Llama2cTokenizer(pieces, scores, maxLen, source);
}

/** Loads a llama2.c `tokenizer.bin` (see {@link parseLlama2cTokenizer}). */
export function loadLlama2cTokenizer(path: string, vocabSize?: number): Llama2cTokenizer {
  const bytes = readRegularFileSync(path);
  return parseLlama2cTokenizer(bytes, path, vocabSize);
}
