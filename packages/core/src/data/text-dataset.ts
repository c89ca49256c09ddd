import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { extname, join, relative } from 'node:path';
import {
  type EvalProtocol,
  LineageError,
  Random,
  readTextFile,
  splitDocuments,
  type Tokenizer,
} from '@lineage/core';

export type DataFormat = 'text' | 'jsonl';

export interface DatasetOptions {
  /** JSONL: the field holding each record's text (default 'text'). */
  field?: string;
  /** Text files: split into documents on lines equal to this (as eval's documents protocol does). */
  separator?: string;
}

export interface DatasetFile {
  /** Path relative to the dataset path ('' for a single file). */
  name: string;
  path: string;
  format: DataFormat;
}

/**
 * Calibration text: a plain text file, a JSONL file (one document per record, text in `field`), or a
 * directory of them (`.txt`/`.text`/`.md` and `.jsonl`/`.ndjson`, recursively, in name order; hidden entries
 * skipped). `hash` identifies the content (file names relative to the dataset and their bytes).
 */
export interface Dataset {
  readonly path: string;
  readonly files: readonly DatasetFile[];
  readonly field: string;
  readonly separator: string | undefined;
  /** `sha256:…` of the content. */
  readonly hash: string;
  /** Whether any file is JSONL (its records are documents). */
  readonly hasJsonl: boolean;
  /** Documents: text files split on the separator (a whole file is one document without one), JSONL records. */
  documents(): string[];
  /** The text as one stream: documents of JSONL files and whole text files, joined by blank lines. */
  stream(): string;
}

const TEXT_EXT = new Set(['.txt', '.text', '.md']);
const JSONL_EXT = new Set(['.jsonl', '.ndjson']);

function formatOf(path: string): DataFormat | undefined {
  const e = extname(path).toLowerCase();
  if (JSONL_EXT.has(e)) return 'jsonl';
  if (TEXT_EXT.has(e)) return 'text';
  return undefined;
}

async function listDir(root: string): Promise<DatasetFile[]> {
  const out: DatasetFile[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await fsp.readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const format = formatOf(e.name);
        if (format) out.push({ name: relative(root, p).split('\\').join('/'), path: p, format });
      }
    }
  };
  await walk(root);
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function parseJsonl(text: string, field: string, file: string): string[] {
  const docs: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      throw new LineageError(`line ${i + 1} is not valid JSON`, file);
    }
    const v =
      typeof rec === 'object' && rec !== null && !Array.isArray(rec)
        ? (rec as Record<string, unknown>)[field]
        : undefined;
    if (typeof v !== 'string')
      throw new LineageError(`line ${i + 1} has no string field '${field}' (choose one with --field)`, file);
    const d = v.trim();
    if (d) docs.push(d);
  }
  return docs;
}

/**
 * Reads calibration data. Every file must be non-empty UTF-8 (one-line errors name the file); a directory
 * must hold at least one data file.
 */
export async function loadDataset(path: string, options: DatasetOptions = {}): Promise<Dataset> {
  const field = options.field ?? 'text';
  const separator = options.separator || undefined;
  let st: Awaited<ReturnType<typeof fsp.stat>>;
  try {
    st = await fsp.stat(path);
  } catch {
    throw new LineageError('no such file or directory', path);
  }
  let files: DatasetFile[];
  if (st.isDirectory()) {
    files = await listDir(path);
    if (!files.length)
      throw new LineageError('directory holds no data files (.txt, .text, .md, .jsonl, .ndjson)', path);
  } else files = [{ name: '', path, format: formatOf(path) ?? 'text' }];

  const h = createHash('sha256');
  h.update('lineage-dataset-v1\0');
  const texts: { file: DatasetFile; text: string; docs: string[] }[] = [];
  for (const f of files) {
    const text = await readTextFile(f.path);
    const bytes = Buffer.from(text, 'utf8');
    h.update(`${f.name}\0${bytes.byteLength}\0`);
    h.update(bytes);
    const docs =
      f.format === 'jsonl'
        ? parseJsonl(text, field, f.path)
        : separator
          ? splitDocuments(text, separator)
          : [text.trim()].filter(Boolean);
    if (!docs.length) {
      throw new LineageError(
        f.format === 'jsonl' ? `no record has a non-empty '${field}'` : 'no document (only separators)',
        f.path,
      );
    }
    texts.push({ file: f, text, docs });
  }
  const hash = `sha256:${h.digest('hex')}`;
  return {
    path,
    files,
    field,
    separator,
    hash,
    hasJsonl: files.some((f) => f.format === 'jsonl'),
    documents: () => texts.flatMap((t) => t.docs),
    stream: () =>
      texts.map((t) => (t.file.format === 'jsonl' ? t.docs.join('\n\n') : t.text.trim())).join('\n\n'),
  };
}

export interface SampleOptions {
  /** Number of sequences. */
  samples: number;
  /** Tokens per sequence: the window (stream) or truncation (documents) length. */
  seqLen: number;
  /** Seed of the sampling (default 0). */
  seed?: number;
  /**
   * `stream` (default for plain text without a separator): the text tokenized as one stream (BOS first) and cut
   * into non-overlapping windows of seqLen, as eval does; full windows only. `documents` (default with a
   * separator or JSONL): each document alone with BOS, truncated to seqLen, as eval does.
   */
  protocol?: EvalProtocol;
}

export interface CalibrationSample {
  sequences: Int32Array[];
  /** Tokens in all sequences. */
  tokens: number;
  protocol: EvalProtocol;
  samples: number;
  seqLen: number;
  seed: number;
  /** How many sequences the data could supply. */
  available: number;
  /** `sha256:…` of the protocol, length, seed and token ids. */
  hash: string;
}

/** The protocol used when none is given: documents for JSONL or with a separator, else stream. */
export function defaultProtocol(dataset: Dataset): EvalProtocol {
  return dataset.hasJsonl || dataset.separator ? 'documents' : 'stream';
}

/** k distinct indices from [0, n), seeded (a partial Fisher–Yates shuffle: the draw for k is a prefix of k+1's). */
function choose(n: number, k: number, rng: Random): number[] {
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + rng.int(n - i);
    const t = idx[i]!;
    idx[i] = idx[j]!;
    idx[j] = t;
  }
  return idx.slice(0, k);
}

/**
 * Seeded sampling of `samples` sequences through the model's tokenizer, under eval's protocols. Asking for
 * more than the data supplies is a one-line error saying how many it can.
 */
export function sampleSequences(
  dataset: Dataset,
  tokenizer: Tokenizer,
  options: SampleOptions,
): CalibrationSample {
  const { samples, seqLen } = options;
  const seed = options.seed ?? 0;
  const protocol = options.protocol ?? defaultProtocol(dataset);
  if (!Number.isInteger(samples) || samples < 1)
    throw new LineageError(`samples must be an integer ≥ 1, got ${samples}`);
  if (!Number.isInteger(seqLen) || seqLen < 1)
    throw new LineageError(`sequence length must be an integer ≥ 1, got ${seqLen}`);
  const rng = new Random(seed);
  let sequences: Int32Array[];
  let available: number;
  if (protocol === 'documents') {
    const docs = dataset.documents();
    available = docs.length;
    if (samples > available) {
      throw new LineageError(
        `asked for ${samples} samples, but the data holds only ${available} document${available === 1 ? '' : 's'} (documents protocol); use --samples ${available} or more data`,
        dataset.path,
      );
    }
    sequences = choose(available, samples, rng).map((i) =>
      Int32Array.from(tokenizer.encode(docs[i]!, { bos: true }).slice(0, seqLen)),
    );
  } else {
    const ids = tokenizer.encode(dataset.stream().trim(), { bos: true });
    available = Math.floor(ids.length / seqLen);
    if (samples > available) {
      const hint =
        available === 0 ? 'use a shorter --seq-len' : `use --samples ${available} or a shorter --seq-len`;
      throw new LineageError(
        `asked for ${samples} samples of ${seqLen} tokens, but the data supplies only ${available} (${ids.length} tokens, stream protocol); ${hint}`,
        dataset.path,
      );
    }
    sequences = choose(available, samples, rng).map((w) =>
      Int32Array.from(ids.slice(w * seqLen, (w + 1) * seqLen)),
    );
  }
  return { ...describeSequences(sequences, protocol, seqLen, seed), available };
}

/** A CalibrationSample's bookkeeping for given sequences: token count and the hash of protocol, length, seed and ids. */
export function describeSequences(
  sequences: Int32Array[],
  protocol: EvalProtocol,
  seqLen: number,
  seed: number,
): Omit<CalibrationSample, 'available'> {
  const samples = sequences.length;
  const h = createHash('sha256');
  h.update(JSON.stringify({ protocol, seqLen, samples, seed }));
  let tokens = 0;
  for (const s of sequences) {
    tokens += s.length;
    h.update(`\0${s.length}\0`);
    h.update(new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
  }
  return { sequences, tokens, protocol, samples, seqLen, seed, hash: `sha256:${h.digest('hex')}` };
}
