// Hand-written: the library reads tokenizer.json but has no llama2.c format, so both directions are done here.
import { LineageError } from '../util/errors.js';
import {
  LLAMA2C_BOS_ID,
  LLAMA2C_BYTE_OFFSET,
  LLAMA2C_EOS_ID,
  LLAMA2C_NO_MERGE_SCORE,
  LLAMA2C_UNK_ID,
  type Llama2cTokenizer,
  serializeLlama2cTokenizer,
} from './llama2c-tokenizer.js';

/** SentencePiece's visible space. llama2.c's export wrote it as ' '. */
const SP_SPACE = '\u2581';

type Json = Record<string, unknown>;
const isObject = (x: unknown): x is Json => typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * Extra field in the BPE model of the tokenizer.json we write (ignored by @huggingface/tokenizers and by
 * the Rust `tokenizers` BPE deserializer, which skip unknown model keys): what a llama2.c tokenizer.bin
 * holds that tokenizer.json cannot, so {@link tokenizerJsonToLlama2c} can write the original file back
 * byte for byte. Scores are float32 little-endian in base64, since JSON loses -0 (tok512's ' t' is -0).
 */
export interface Llama2cExtra {
  max_token_length: number;
  scores_f32le_base64: string;
  /** Pieces whose llama2.c bytes are not their tokenizer.json string with '▁' as ' ' (BOS "\n<s>\n", EOS). */
  pieces: Record<string, string>;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A piece's tokenizer.json string: '▁' for ' ', and BOS/EOS without llama2.c's "\n...\n" wrapping. */
function hfPiece(id: number, bytes: Uint8Array, source: string): string {
  let s: string;
  try {
    s = strictUtf8.decode(bytes);
  } catch {
    throw new LineageError(`piece ${id} is not valid UTF-8 and cannot be written to tokenizer.json`, source);
  }
  if (
    (id === LLAMA2C_BOS_ID || id === LLAMA2C_EOS_ID) &&
    s.length > 2 &&
    s.startsWith('\n') &&
    s.endsWith('\n')
  ) {
    return s.slice(1, -1);
  }
  return s.replaceAll(' ', SP_SPACE);
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

/**
 * A Llama / SentencePiece-style tokenizer.json (and tokenizer_config.json) equivalent to a llama2.c
 * tokenizer: BPE with byte fallback over the same ids, normalizer Prepend('▁') + Replace(' ', '▁'),
 * and merges derived from the scores like transformers' SentencePiece converter: every split of a piece
 * into two pieces is a merge, ordered by the merged piece's score, descending. Where several merges
 * share a score (Llama 2's whitespace runs, all at -1e9), the one giving the longer piece comes first,
 * then by piece, left and right id: with that order HF's BPE (strict ranks, leftmost only within one
 * merge) makes the same choices as run.c's leftmost-among-equal-scores for runs of spaces.
 * Pieces scored at or below -1e10 get no merge (run.c never merges them).
 */
export function llama2cToTokenizerJson(tok: Llama2cTokenizer): {
  tokenizerJson: Json;
  tokenizerConfig: Json;
} {
  const source = tok.source;
  const n = tok.vocabSize;
  if (n <= LLAMA2C_EOS_ID)
    throw new LineageError(
      `a llama2.c tokenizer needs ids 0-2 for <unk>, BOS, EOS; it has ${n} tokens`,
      source,
    );
  const hf = tok.pieceBytes.map((b, id) => hfPiece(id, b, source));
  const vocab: Record<string, number> = {};
  const extraPieces: Record<string, string> = {};
  hf.forEach((piece, id) => {
    if (Object.hasOwn(vocab, piece)) {
      throw new LineageError(
        `pieces ${vocab[piece]} and ${id} are both ${JSON.stringify(piece)} in tokenizer.json form`,
        source,
      );
    }
    vocab[piece] = id;
    if (piece.replaceAll(SP_SPACE, ' ') !== tok.pieces[id]) extraPieces[String(id)] = tok.pieces[id]!;
  });

  // Merges: every split of a piece (in llama2.c bytes, as run.c concatenates) into two pieces.
  const keys = tok.pieceBytes.map(latin1);
  const byKey = new Map<string, number>();
  keys.forEach((k, id) => {
    if (!byKey.has(k)) byKey.set(k, id);
  });
  const merges: { piece: number; left: number; right: number; score: number; len: number }[] = [];
  keys.forEach((k, piece) => {
    const score = tok.scores[piece]!;
    if (!(score > LLAMA2C_NO_MERGE_SCORE)) return;
    for (let cut = 1; cut < k.length; cut++) {
      const left = byKey.get(k.slice(0, cut));
      const right = byKey.get(k.slice(cut));
      if (left === undefined || right === undefined) continue;
      // Only BOS/EOS strings differ between the two forms; a merge through them cannot be expressed.
      if (hf[left]! + hf[right]! !== hf[piece]) continue;
      merges.push({ piece, left, right, score, len: [...hf[piece]!].length });
    }
  });
  merges.sort(
    (a, b) => b.score - a.score || b.len - a.len || a.piece - b.piece || a.left - b.left || a.right - b.right,
  );

  const scores = new Float32Array(tok.scores);
  const extra: Llama2cExtra = {
    max_token_length: tok.maxTokenLength,
    scores_f32le_base64: Buffer.from(scores.buffer, scores.byteOffset, scores.byteLength).toString('base64'),
    pieces: extraPieces,
  };
  const unk = hf[LLAMA2C_UNK_ID]!;
  const bos = hf[LLAMA2C_BOS_ID]!;
  const eos = hf[LLAMA2C_EOS_ID]!;
  const special = (id: number) => ({
    id,
    content: hf[id]!,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const tokenizerJson: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(LLAMA2C_UNK_ID), special(LLAMA2C_BOS_ID), special(LLAMA2C_EOS_ID)],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SP_SPACE },
        { type: 'Replace', pattern: { String: ' ' }, content: SP_SPACE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: bos, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [bos]: { id: bos, ids: [LLAMA2C_BOS_ID], tokens: [bos] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SP_SPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: merges.map((m) => [hf[m.left]!, hf[m.right]!]),
      llama2c: extra,
    },
  };
  const tokenizerConfig: Json = {
    tokenizer_class: 'LlamaTokenizer',
    add_bos_token: true,
    add_eos_token: false,
    bos_token: bos,
    eos_token: eos,
    unk_token: unk,
    pad_token: null,
    clean_up_tokenization_spaces: false,
    legacy: true,
  };
  return { tokenizerJson, tokenizerConfig };
}

function parseMerge(m: unknown, i: number, source: string): [string, string] {
  if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string')
    return [m[0], m[1]];
  if (typeof m === 'string') {
    const sp = m.indexOf(' ');
    if (sp > 0) return [m.slice(0, sp), m.slice(sp + 1)];
  }
  throw new LineageError(`merge ${i} is neither "a b" nor ["a", "b"]`, source);
}

function isSentencePieceStyle(json: Json): boolean {
  const parts: unknown[] = [];
  const collect = (x: unknown) => {
    if (!isObject(x)) return;
    parts.push(x);
    for (const key of ['normalizers', 'pretokenizers']) {
      const sub = x[key];
      if (Array.isArray(sub)) sub.forEach(collect);
    }
  };
  collect(json.normalizer);
  collect(json.pre_tokenizer);
  const byteLevel = parts.some((p) => isObject(p) && p.type === 'ByteLevel');
  const spaceToMeta = parts.some(
    (p) =>
      isObject(p) &&
      ((p.type === 'Replace' && isObject(p.pattern) && p.pattern.String === ' ' && p.content === SP_SPACE) ||
        (p.type === 'Metaspace' && (p.replacement ?? SP_SPACE) === SP_SPACE)),
  );
  return spaceToMeta && !byteLevel;
}

/**
 * A llama2.c tokenizer.bin from a SentencePiece-style BPE tokenizer.json ('▁' for spaces, `<0xXX>`
 * byte tokens at ids 3-258). Pieces get '▁' back as ' ' and BOS/EOS the "\n<s>\n" wrapping of
 * llama2.c's export. Scores: the originals when the file came from {@link llama2cToTokenizerJson}
 * (then the bytes are the original file's), else minus the rank of the first merge that makes the
 * piece, and -1e10 (never merged by run.c) for pieces no merge makes. run.c merges every split of a
 * piece, so a tokenizer.json listing only some splits of a piece may tokenize differently.
 */
export function tokenizerJsonToLlama2c(json: unknown, source = 'tokenizer.json'): { bytes: Uint8Array } {
  if (!isObject(json)) throw new LineageError('tokenizer.json is not a JSON object', source);
  const model = json.model;
  if (
    !isObject(model) ||
    (model.type !== undefined && model.type !== 'BPE') ||
    !isObject(model.vocab) ||
    !Array.isArray(model.merges)
  ) {
    throw new LineageError(
      'only BPE tokenizer.json files (model.type "BPE" with vocab and merges) convert to llama2.c',
      source,
    );
  }
  if (!isSentencePieceStyle(json)) {
    throw new LineageError(
      "only SentencePiece-style tokenizer.json ('▁' for spaces, no ByteLevel) converts to llama2.c",
      source,
    );
  }
  const byId: (string | undefined)[] = [];
  const ids = new Map<string, number>();
  const put = (piece: string, id: unknown) => {
    if (!Number.isInteger(id) || (id as number) < 0)
      throw new LineageError(`token ${JSON.stringify(piece)} has id ${String(id)}`, source);
    const i = id as number;
    if (byId[i] !== undefined && byId[i] !== piece) {
      throw new LineageError(
        `id ${i} is both ${JSON.stringify(byId[i])} and ${JSON.stringify(piece)}`,
        source,
      );
    }
    byId[i] = piece;
    if (!ids.has(piece)) ids.set(piece, i);
  };
  for (const [piece, id] of Object.entries(model.vocab)) put(piece, id);
  const specials = new Set<number>();
  const added = Array.isArray(json.added_tokens) ? json.added_tokens : [];
  for (const t of added) {
    if (!isObject(t) || typeof t.content !== 'string')
      throw new LineageError('added_tokens holds an entry without content', source);
    put(t.content, t.id);
    if (t.special === true) specials.add(t.id as number);
  }
  const n = byId.length;
  for (let i = 0; i < n; i++) {
    if (byId[i] === undefined)
      throw new LineageError(
        `ids are not contiguous: no token has id ${i} (llama2.c needs 0..${n - 1})`,
        source,
      );
  }
  if (model.byte_fallback === true) {
    for (let b = 0; b < 256; b++) {
      const piece = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
      if (ids.get(piece) !== b + LLAMA2C_BYTE_OFFSET) {
        throw new LineageError(
          `llama2.c needs byte token ${piece} at id ${b + LLAMA2C_BYTE_OFFSET}, found ${ids.get(piece) ?? 'none'}`,
          source,
        );
      }
    }
  }

  const extra = isObject(model.llama2c) ? (model.llama2c as Partial<Llama2cExtra>) : undefined;
  let scores: number[] | undefined;
  if (extra && typeof extra.scores_f32le_base64 === 'string') {
    const raw = Buffer.from(extra.scores_f32le_base64, 'base64');
    if (raw.length === n * 4) {
      const f = new Float32Array(n);
      new Uint8Array(f.buffer).set(raw);
      scores = Array.from(f);
    }
  }
  if (!scores) {
    scores = new Array<number>(n).fill(LLAMA2C_NO_MERGE_SCORE);
    model.merges.forEach((m, rank) => {
      const [l, r] = parseMerge(m, rank, source);
      const piece = ids.get(l + r);
      if (piece !== undefined && scores![piece] === LLAMA2C_NO_MERGE_SCORE) scores![piece] = -rank;
    });
  }
  const extraPieces = extra && isObject(extra.pieces) ? (extra.pieces as Record<string, unknown>) : undefined;
  const enc = new TextEncoder();
  const pieceBytes = byId.map((piece, id) => {
    const original = extraPieces?.[String(id)];
    if (typeof original === 'string') return enc.encode(original);
    if (!extraPieces && specials.has(id) && (id === LLAMA2C_BOS_ID || id === LLAMA2C_EOS_ID))
      return enc.encode(`\n${piece}\n`);
    return enc.encode(piece!.replaceAll(SP_SPACE, ' '));
  });
  const maxLen = pieceBytes.reduce((m, b) => Math.max(m, b.length), 0);
  const storedMax = extra?.max_token_length;
  const maxTokenLength = typeof storedMax === 'number' && storedMax >= maxLen ? storedMax : maxLen;
  return { bytes: serializeLlama2cTokenizer(pieceBytes, scores, maxTokenLength) };
}
