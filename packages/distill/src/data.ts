import { createHash } from 'node:crypto';
import {
  DEFAULT_DOCUMENT_SEPARATOR,
  LineageError,
  Random,
  type TextData,
  TextDataset,
  type Tokenizer,
} from '@lineage/core';

/**
 * Text to train or evaluate on: a file or directory (`path`: text, JSONL records in `field`, or a directory
 * of them, as core's `TextDataset` reads them) or literal `text` (core's `TextData` is one). With a
 * `separator` the text holds documents (e.g. `<|endoftext|>` lines): each is tokenized alone with BOS, and
 * `documents` may pick a range of them. Without one, the whole text is one stream (BOS first).
 */
export interface TextSource {
  path?: string;
  text?: string;
  separator?: string;
  /** JSONL: the field holding each record's text (default 'text'). */
  field?: string;
  /** Documents [start, end) of this source (end exclusive, default: all); needs `separator` or JSONL. */
  documents?: [number, number?];
}

/** A file path, a source, a dataset, or several of them (concatenated in order). */
export type DataInput =
  | string
  | TextSource
  | TextData
  | TextDataset
  | readonly (string | TextSource | TextData | TextDataset)[];

/** Resolved text of one source, split into documents (one document when it is a stream). */
export interface LoadedSource {
  /** Where it came from, for messages (`path` or '<text>'), with the document range when one was taken. */
  name: string;
  path?: string;
  documents: string[];
  separator?: string;
}

function loaded(ds: TextDataset, path: string | undefined): LoadedSource {
  // JSONL records get the default separator, which keeps them apart where documents are joined into text
  const separator = ds.separator ?? (ds.hasJsonl ? DEFAULT_DOCUMENT_SEPARATOR : undefined);
  return {
    name: ds.name,
    ...(path !== undefined ? { path } : {}),
    documents: ds.documents(),
    ...(separator ? { separator } : {}),
  };
}

async function open(s: string | TextSource | TextDataset, what: string): Promise<LoadedSource> {
  if (s instanceof TextDataset) return loaded(s, s.path === '<text>' ? undefined : s.path);
  const src = typeof s === 'string' ? { path: s } : s;
  if (src.text === undefined && src.path === undefined)
    throw new LineageError(`a ${what} source needs a path or a text`);
  const sep = src.separator ? { separator: src.separator } : {};
  let ds =
    src.text !== undefined
      ? TextDataset.fromText(src.text, { ...sep, ...(src.path ? { path: src.path } : {}) })
      : await TextDataset.open(src.path!, { ...sep, ...(src.field ? { field: src.field } : {}) });
  if (src.documents) {
    if (!ds.hasDocuments) throw new LineageError(`a document range needs a document separator`, src.path);
    ds = ds.slice(src.documents[0], src.documents[1]);
  }
  return loaded(ds, src.path);
}

/**
 * Reads every source through core's `TextDataset` (missing, empty and non-UTF-8 files are refused; `.jsonl`
 * files and directories are read as datasets).
 */
export async function loadSources(data: DataInput, what = 'data'): Promise<LoadedSource[]> {
  const list = (Array.isArray(data) ? data : [data]) as (string | TextSource | TextDataset)[];
  if (!list.length) throw new LineageError(`no ${what} given`);
  const out: LoadedSource[] = [];
  for (const s of list) out.push(await open(s, what));
  return out;
}

/**
 * Splits off the last `n` documents of the last source that has documents, for held-out evaluation
 * (core's `TextDataset.split`). Returns the training sources (that source shortened) and the held-out
 * documents.
 */
export function holdOut(
  sources: LoadedSource[],
  n: number,
): { train: LoadedSource[]; heldOut: string[]; separator: string; from: string } {
  if (!Number.isInteger(n) || n < 1) throw new LineageError(`holdout must be a positive integer, got ${n}`);
  let idx = -1;
  for (let i = sources.length - 1; i >= 0; i--)
    if (sources[i]!.separator) {
      idx = i;
      break;
    }
  if (idx < 0) {
    const last = sources[sources.length - 1];
    throw new LineageError(
      'holdout needs data with documents (a document separator, or JSONL); this is one stream',
      last?.path ?? last?.name,
    );
  }
  const src = sources[idx]!;
  const ds = TextDataset.fromDocuments(src.documents, {
    separator: src.separator!,
    path: src.path ?? src.name,
  });
  const split = ds.split({ holdout: n });
  const keep = split.train.length;
  const train = sources.slice();
  train[idx] = { ...src, name: `${src.name}[0:${keep}]`, documents: split.train.documents() };
  return {
    train,
    heldOut: split.heldOut.documents(),
    separator: src.separator!,
    from: `${src.name}[${keep}:]`,
  };
}

/**
 * One token stream: every document encoded with BOS, concatenated (documents of all sources in order).
 * Memoised per tokenizer object and documents (core's `TextDataset.tokenize`): successive recoveries on the
 * same data tokenize it once. The result may be shared: do not modify it.
 */
export function tokenizeSources(sources: LoadedSource[], tokenizer: Tokenizer): Int32Array {
  const parts = sources.map(
    (s) =>
      TextDataset.fromDocuments(s.documents, {
        ...(s.separator ? { separator: s.separator } : {}),
        path: s.name,
      }).tokenize(tokenizer).tokens,
  );
  if (parts.length === 1) return parts[0]!;
  const out = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** sha256 of a token stream: checkpoints record it so that a run resumes only on the same data. */
export function tokensHash(tokens: Int32Array): string {
  return `sha256:${createHash('sha256')
    .update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength))
    .digest('hex')}`;
}

/** Position of a sampler in its stream: the epoch and the next window of that epoch's order. */
export interface SamplerState {
  epoch: number;
  cursor: number;
}

/**
 * Seeded batches of windows from a token stream. Each window holds `seqLen + 1` tokens (inputs and the
 * next-token targets); windows start every `seqLen` tokens from an offset. Each epoch draws its own offset
 * and a permutation of its windows from a generator seeded by (seed, epoch), so the state is two
 * integers: a run resumes exactly from `state()` without storing generator internals.
 */
export class WindowSampler {
  readonly windowLength: number;
  private starts: Int32Array = new Int32Array(0);
  private epoch = -1;
  private cursor = 0;

  constructor(
    readonly tokens: Int32Array,
    readonly seqLen: number,
    readonly seed: number,
    /** Names the data in errors. */
    what = 'the data',
  ) {
    this.windowLength = seqLen + 1;
    if (tokens.length < this.windowLength) {
      throw new LineageError(
        `${what} has ${tokens.length} tokens, fewer than one sequence of ${this.windowLength} (seq-len ${seqLen} + 1 target)`,
      );
    }
    this.load({ epoch: 0, cursor: 0 });
  }

  /** Windows per epoch (at least; the exact count depends on the epoch's offset). */
  get windowsPerEpoch(): number {
    return Math.floor((this.tokens.length - this.windowLength) / this.seqLen) + 1;
  }

  private startEpoch(epoch: number): void {
    const r = new Random((Math.imul(this.seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca77)) >>> 0);
    const N = this.tokens.length;
    const L = this.windowLength;
    const offset = r.int(Math.min(this.seqLen, N - L) + 1);
    const count = Math.floor((N - offset - L) / this.seqLen) + 1;
    const starts = new Int32Array(count);
    for (let k = 0; k < count; k++) starts[k] = offset + k * this.seqLen;
    for (let i = count - 1; i > 0; i--) {
      const j = r.int(i + 1);
      const t = starts[i]!;
      starts[i] = starts[j]!;
      starts[j] = t;
    }
    this.starts = starts;
    this.epoch = epoch;
  }

  /** `batch` windows, row-major [batch, seqLen + 1]. */
  next(batch: number): Int32Array {
    const L = this.windowLength;
    const out = new Int32Array(batch * L);
    for (let b = 0; b < batch; b++) {
      if (this.cursor >= this.starts.length) {
        this.startEpoch(this.epoch + 1);
        this.cursor = 0;
      }
      const s = this.starts[this.cursor++]!;
      out.set(this.tokens.subarray(s, s + L), b * L);
    }
    return out;
  }

  state(): SamplerState {
    return { epoch: this.epoch, cursor: this.cursor };
  }

  load(s: SamplerState): void {
    if (!(Number.isInteger(s.epoch) && s.epoch >= 0 && Number.isInteger(s.cursor) && s.cursor >= 0))
      throw new LineageError(`invalid sampler state ${JSON.stringify(s)}`);
    this.startEpoch(s.epoch);
    if (s.cursor > this.starts.length)
      throw new LineageError(`sampler state ${JSON.stringify(s)} is past the end of its epoch`);
    this.cursor = s.cursor;
  }
}
