import { createHash } from 'node:crypto';
import {
  type DataFormat,
  type DatasetFile,
  type EvalProtocol,
  encodePrefix,
  LineageError,
  Random,
  TextDataset,
  type TextDatasetOptions,
  type Tokenizer,
} from '@lineage/core';

export type { DataFormat, DatasetFile };

export type DatasetOptions = TextDatasetOptions;

/** Calibration text: core's one text dataset (a text file, JSONL, a directory of them, or a range). */
export type Dataset = TextDataset;

/**
 * Reads calibration data (core's `TextDataset.open`). Every file must be non-empty UTF-8 (one-line errors
 * name the file); a directory must hold at least one data file.
 */
export function loadDataset(path: string, options: DatasetOptions = {}): Promise<Dataset> {
  return TextDataset.open(path, options);
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
  /**
   * The command's flags for the sample count and length, named in the hint of a too-short-data error
   * (default `--samples`, `--seq-len`); leave `seqLen` out where the command has no such flag.
   */
  flags?: { samples: string; seqLen?: string };
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
  const flags = options.flags ?? { samples: '--samples', seqLen: '--seq-len' };
  const rng = new Random(seed);
  let sequences: Int32Array[];
  let available: number;
  if (protocol === 'documents') {
    const docs = dataset.documents();
    available = docs.length;
    if (samples > available) {
      throw new LineageError(
        `asked for ${samples} samples, but the data holds only ${available} document${available === 1 ? '' : 's'} (documents protocol); use ${flags.samples} ${available} or more data`,
        dataset.path,
      );
    }
    sequences = choose(available, samples, rng).map((i) =>
      Int32Array.from(encodePrefix(tokenizer, docs[i]!, seqLen, { bos: true })),
    );
  } else {
    // memoised per tokenizer: a pipeline calibrating member after member tokenizes the stream once
    const ids = dataset.tokenizeStream(tokenizer);
    available = Math.floor(ids.length / seqLen);
    if (samples > available) {
      const shorter = flags.seqLen ? `a shorter ${flags.seqLen}` : 'more data';
      const hint = available === 0 ? `use ${shorter}` : `use ${flags.samples} ${available} or ${shorter}`;
      throw new LineageError(
        `asked for ${samples} samples of ${seqLen} tokens, but the data supplies only ${available} (${ids.length} tokens, stream protocol); ${hint}`,
        dataset.path,
      );
    }
    sequences = choose(available, samples, rng).map((w) => ids.slice(w * seqLen, (w + 1) * seqLen));
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
