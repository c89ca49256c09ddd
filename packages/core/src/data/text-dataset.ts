import { createHash } from 'node:crypto';
import { type Dirent, promises as fsp, type Stats } from 'node:fs';
import { extname, join, relative } from 'node:path';
import { splitDocuments } from '../eval/documents.js';
import type { EvalProtocol } from '../eval/perplexity.js';
import { fileKind } from '../io/fs-util.js';
import { findDuplicateKey } from '../io/json-keys.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LineageError } from '../util/errors.js';
import { getMaxDataBytes, readTextFile, STDIN_PATH } from '../util/text-file.js';
import { memoised } from './token-memo.js';

export type DataFormat = 'text' | 'jsonl';

/** Keeps documents without a separator of their own (JSONL records) apart where they are joined into text. */
export const DEFAULT_DOCUMENT_SEPARATOR = '<|endoftext|>';

export interface TextDatasetOptions {
  /** JSONL: the field holding each record's text (default 'text'). */
  field?: string;
  /** Text files: split into documents on lines equal to this (as eval's documents protocol does). */
  separator?: string;
  /**
   * Keep the separator only when some text file holds it; otherwise the data is a stream without documents
   * (how the CLI treats `--doc-separator` given for files that may or may not hold documents).
   */
  separatorIfFound?: boolean;
  /** Refuse data (all files together) larger than this many bytes (default: getMaxDataBytes()). */
  maxBytes?: number;
}

export interface DatasetFile {
  /** Path relative to the dataset path ('' for a single file). */
  name: string;
  path: string;
  format: DataFormat;
}

/** A dataset's documents, each encoded with BOS, concatenated. Shared by every caller: do not modify. */
export interface TokenizedText {
  readonly tokens: Int32Array;
  /** Document i is `tokens[offsets[i], offsets[i + 1])`. */
  readonly offsets: Int32Array;
}

/** One file (or the literal text): its raw text and its documents. */
interface Part {
  format: DataFormat;
  text: string;
  docs: string[];
}

/** What every range of one dataset shares. */
interface Source {
  path: string;
  files: readonly DatasetFile[];
  field: string;
  separator: string | undefined;
  hash: string;
  parts: readonly Part[];
  all?: string[];
}

const TEXT_EXT = new Set(['.txt', '.text', '.md']);
const JSONL_EXT = new Set(['.jsonl', '.ndjson']);

function formatOf(path: string): DataFormat | undefined {
  const e = extname(path).toLowerCase();
  if (JSONL_EXT.has(e)) return 'jsonl';
  if (TEXT_EXT.has(e)) return 'text';
  return undefined;
}

/**
 * The data files of a directory, recursively. Symbolic links are followed (a linked directory once); a
 * FIFO, socket or device inside is refused by name (reading one would block or never end), as is a link
 * to one or a broken link with a data file's name. Other files (README, .bin, …) are not data: skipped.
 */
async function listDir(root: string): Promise<DatasetFile[]> {
  const out: DatasetFile[] = [];
  const seen = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    const real = await fsp.realpath(dir);
    if (seen.has(real)) return;
    seen.add(real);
    const entries = await fsp.readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      let st: Stats | Dirent = e;
      if (e.isSymbolicLink()) {
        try {
          st = await fsp.stat(p);
        } catch {
          if (formatOf(e.name)) throw new LineageError('is a broken symbolic link', p);
          continue;
        }
      }
      if (st.isDirectory()) await walk(p);
      else if (st.isFile()) {
        const format = formatOf(e.name);
        if (format) out.push({ name: relative(root, p).split('\\').join('/'), path: p, format });
      } else
        throw new LineageError(
          `is ${fileKind(st)}, not a regular file (a data directory may hold only files and directories)`,
          p,
        );
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
    // JSON.parse keeps the last of two equal keys: which text was meant is not for us to guess
    const dup = findDuplicateKey(line);
    if (dup) throw new LineageError(`line ${i + 1} names the key '${dup.join('.')}' twice`, file);
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

function textDocs(text: string, separator: string | undefined): string[] {
  if (separator) return splitDocuments(text, separator);
  // a stream of nothing but the usual separator lines holds no text to read, split or not
  if (!text.split(DEFAULT_DOCUMENT_SEPARATOR).join('').trim()) return [];
  return [text.trim()].filter(Boolean);
}

/** Content hash of named texts: what the bytes are, not how they are split (that is in the range hash). */
function contentHash(named: readonly { name: string; text: string }[]): string {
  const h = createHash('sha256');
  h.update('lineage-dataset-v1\0');
  for (const { name, text } of named) {
    const bytes = Buffer.from(text, 'utf8');
    h.update(`${name}\0${bytes.byteLength}\0`);
    h.update(bytes);
  }
  return `sha256:${h.digest('hex')}`;
}

/**
 * The one text dataset: a plain text file, a JSONL file (one document per record, text in `field`), a
 * directory of them (`.txt`/`.text`/`.md` and `.jsonl`/`.ndjson`, recursively, in name order; hidden entries
 * skipped), or literal text — or a range of documents of any of these.
 *
 * Documents are the JSONL records and the text files split on the separator; a text file without a
 * separator is one document. The data *has documents* (`hasDocuments`) when it has a separator or JSONL;
 * otherwise it is a stream, which `split` refuses: holding out "the last n documents" of a stream has no
 * meaning, and cutting at a token count would depend on the tokenizer — give separate evaluation data.
 */
export class TextDataset {
  /** The file or directory (or the name given to literal text, '<text>' by default). */
  readonly path: string;
  readonly files: readonly DatasetFile[];
  readonly field: string;
  readonly separator: string | undefined;
  /** Whether any file is JSONL (its records are documents). */
  readonly hasJsonl: boolean;
  /** Documents [start, end) of the whole data, when this is a range of it. */
  readonly range: readonly [number, number] | undefined;
  /**
   * `sha256:…` of the content (file names relative to the dataset and their bytes); a range's also covers
   * the separator, the JSONL field and the range, which decide its documents.
   */
  readonly hash: string;

  private constructor(
    private readonly source: Source,
    range?: readonly [number, number],
  ) {
    this.path = source.path;
    this.files = source.files;
    this.field = source.field;
    this.separator = source.separator;
    this.hasJsonl = source.parts.some((p) => p.format === 'jsonl');
    this.range = range;
    this.hash = range
      ? `sha256:${createHash('sha256')
          .update(`lineage-dataset-range-v1\0${source.hash}\0${this.splitKey()}\0${range[0]}\0${range[1]}`)
          .digest('hex')}`
      : source.hash;
  }

  /**
   * Reads a text file, a JSONL file or a directory of them. Every file must be non-empty UTF-8 and hold a
   * document; a directory must hold at least one data file (one-line errors name the file).
   */
  static async open(path: string, options: TextDatasetOptions = {}): Promise<TextDataset> {
    const field = options.field ?? 'text';
    let separator = options.separator || undefined;
    const maxBytes = options.maxBytes ?? getMaxDataBytes();
    let files: DatasetFile[];
    if (path === STDIN_PATH) files = [{ name: '', path, format: 'text' }];
    else {
      let st: Awaited<ReturnType<typeof fsp.stat>>;
      try {
        st = await fsp.stat(path);
      } catch {
        throw new LineageError('no such file or directory', path);
      }
      if (st.isDirectory()) {
        files = await listDir(path);
        if (!files.length)
          throw new LineageError('directory holds no data files (.txt, .text, .md, .jsonl, .ndjson)', path);
        // The whole directory must fit, not only each file: its text is joined into one stream.
        let total = 0;
        for (const f of files) total += (await fsp.stat(f.path)).size;
        if (total > maxBytes)
          throw new LineageError(
            `data files hold ${total} bytes, over the limit of ${maxBytes} bytes (raise it with --max-data-bytes)`,
            path,
          );
      } else files = [{ name: '', path, format: formatOf(path) ?? 'text' }];
    }
    const texts: { file: DatasetFile; text: string }[] = [];
    for (const file of files) texts.push({ file, text: await readTextFile(file.path, { maxBytes }) });
    if (
      separator &&
      options.separatorIfFound &&
      !texts.some((t) => t.file.format === 'text' && t.text.includes(separator!))
    )
      separator = undefined;
    const parts: Part[] = texts.map(({ file, text }) => {
      const docs = file.format === 'jsonl' ? parseJsonl(text, field, file.path) : textDocs(text, separator);
      if (!docs.length) {
        throw new LineageError(
          file.format === 'jsonl' ? `no record has a non-empty '${field}'` : 'no document (only separators)',
          file.path,
        );
      }
      return { format: file.format, text, docs };
    });
    const hash = contentHash(texts.map((t) => ({ name: t.file.name, text: t.text })));
    return new TextDataset({ path, files, field, separator, hash, parts });
  }

  /** Literal text (split on `separator` when given); `path` names it in messages. */
  static fromText(text: string, options: { separator?: string; path?: string } = {}): TextDataset {
    const path = options.path ?? '<text>';
    const separator = options.separator || undefined;
    const docs = textDocs(text, separator);
    if (!docs.length)
      throw new LineageError(text.trim() ? 'no document (only separators)' : 'holds no text', path);
    return new TextDataset({
      path,
      files: [],
      field: 'text',
      separator,
      hash: contentHash([{ name: '', text }]),
      parts: [{ format: 'text', text, docs }],
    });
  }

  /**
   * Given documents, exactly as given (kept apart by `separator`, or blank lines without one, in
   * `stream()`); the hash covers each document's bytes and bounds.
   */
  static fromDocuments(
    documents: readonly string[],
    options: { separator?: string; path?: string } = {},
  ): TextDataset {
    const path = options.path ?? '<text>';
    if (!documents.length) throw new LineageError('holds no text', path);
    const separator = options.separator || undefined;
    const docs = documents.slice();
    return new TextDataset({
      path,
      files: [],
      field: 'text',
      separator,
      hash: contentHash(docs.map((text, i) => ({ name: `#${i}`, text }))),
      parts: [{ format: 'text', text: docs.join(separator ? `\n${separator}\n` : '\n\n'), docs }],
    });
  }

  private all(): string[] {
    this.source.all ??= this.source.parts.flatMap((p) => p.docs);
    return this.source.all;
  }

  private splitKey(): string {
    return `${this.separator ?? ''}\0${this.hasJsonl ? this.field : ''}`;
  }

  /** Whether the data has documents (a separator or JSONL records) rather than being one stream per file. */
  get hasDocuments(): boolean {
    return this.hasJsonl || this.separator !== undefined;
  }

  /** Number of documents. */
  get length(): number {
    return this.range ? this.range[1] - this.range[0] : this.all().length;
  }

  /** The path, with the document range when this is one (`data.txt[0:700]`), for messages. */
  get name(): string {
    return this.range ? `${this.path}[${this.range[0]}:${this.range[1]}]` : this.path;
  }

  /** Documents: text files split on the separator (a whole file is one document without one), JSONL records. */
  documents(): string[] {
    return this.range ? this.all().slice(this.range[0], this.range[1]) : this.all().slice();
  }

  /**
   * The text as one stream: documents of JSONL files and whole text files (separator lines included),
   * joined by blank lines; a range's documents joined by blank lines.
   */
  stream(): string {
    if (this.range) return this.documents().join('\n\n');
    return this.source.parts
      .map((p) => (p.format === 'jsonl' ? p.docs.join('\n\n') : p.text.trim()))
      .join('\n\n');
  }

  /** Documents [start, end) of this dataset (end exclusive, default: to the last). */
  slice(start: number, end: number = this.length): TextDataset {
    const n = this.length;
    if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start < end && end <= n))
      throw new LineageError(`document range [${start}, ${end}) is not within the ${n} documents`, this.path);
    const at = this.range?.[0] ?? 0;
    return new TextDataset(this.source, [at + start, at + end]);
  }

  /**
   * The held-out split, done here and nowhere else: the last `holdout` documents (or the last `fraction` of
   * them, at least one) held out, the rest to train on. Stream data (no separator, no JSONL) splits only by
   * `fraction`: its text is cut at the line boundary nearest that share of its characters; "the last n
   * documents" of a stream has no meaning, so `holdout` is refused there with a one-line error.
   */
  split(options: { holdout: number } | { fraction: number }): { train: TextDataset; heldOut: TextDataset } {
    const len = this.length;
    let n: number;
    if ('holdout' in options) {
      n = options.holdout;
      if (!Number.isInteger(n) || n < 1)
        throw new LineageError(`holdout must be a positive integer, got ${n}`);
      if (!this.hasDocuments) {
        throw new LineageError(
          `cannot hold out ${n} document${n === 1 ? '' : 's'}: the data is one stream without documents (give a document separator, JSONL, or separate evaluation data)`,
          this.path,
        );
      }
    } else {
      const f = options.fraction;
      if (!(f > 0 && f < 1)) throw new LineageError(`holdout fraction must be in (0, 1), got ${f}`);
      if (!this.hasDocuments) return this.splitStream(f);
      n = Math.max(1, Math.round(len * f));
    }
    if (n >= len)
      throw new LineageError(`cannot hold out ${n} documents: ${this.name} has only ${len}`, this.path);
    return { train: this.slice(0, len - n), heldOut: this.slice(len - n) };
  }

  /** A stream's text cut at the line boundary nearest the last `fraction` of its characters. */
  private splitStream(fraction: number): { train: TextDataset; heldOut: TextDataset } {
    const text = this.stream();
    const cut = text.lastIndexOf('\n', Math.floor(text.length * (1 - fraction)));
    if (cut <= 0) throw new LineageError('is too short to hold out its tail for evaluation', this.path);
    return {
      train: TextDataset.fromText(text.slice(0, cut), { path: this.path }),
      heldOut: TextDataset.fromText(text.slice(cut + 1), { path: this.path }),
    };
  }

  /**
   * The dataset as eval's `perplexity` takes it: with documents, the documents protocol on them joined by
   * separator lines (JSONL records by `DEFAULT_DOCUMENT_SEPARATOR`); else the stream protocol on the stream.
   */
  evalText(): { text: string; protocol: EvalProtocol; separator?: string } {
    if (!this.hasDocuments) return { text: this.stream(), protocol: 'stream' };
    const separator = this.separator ?? DEFAULT_DOCUMENT_SEPARATOR;
    return { text: this.documents().join(`\n${separator}\n`), protocol: 'documents', separator };
  }

  private memoKey(kind: string): string {
    return `${kind}\0${this.source.hash}\0${this.splitKey()}\0${this.range?.join(':') ?? 'all'}`;
  }

  /**
   * Every document encoded with BOS, concatenated, with document offsets. Memoised per tokenizer object
   * and content, split and range: datasets of the same text (even opened again) tokenize once.
   */
  tokenize(tokenizer: Tokenizer): TokenizedText {
    return memoised(tokenizer, this.memoKey('documents'), () => {
      const docs = this.documents();
      const parts = docs.map((d) => tokenizer.encode(d, { bos: true }));
      const offsets = new Int32Array(parts.length + 1);
      for (let i = 0; i < parts.length; i++) offsets[i + 1] = offsets[i]! + parts[i]!.length;
      const tokens = new Int32Array(offsets[parts.length]!);
      for (let i = 0; i < parts.length; i++) tokens.set(parts[i]!, offsets[i]!);
      return { tokens, offsets };
    });
  }

  /** `stream()` encoded as one sequence with BOS first, memoised like `tokenize`. Do not modify it. */
  tokenizeStream(tokenizer: Tokenizer): Int32Array {
    return memoised(tokenizer, this.memoKey('stream'), () =>
      Int32Array.from(tokenizer.encode(this.stream().trim(), { bos: true })),
    );
  }
}

/** `TextDataset.open`: reads a text file, a JSONL file or a directory of them. */
export function openTextDataset(path: string, options: TextDatasetOptions = {}): Promise<TextDataset> {
  return TextDataset.open(path, options);
}
