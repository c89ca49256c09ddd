// Hand-written on Node's fs: the format is small, and no maintained JS library reads safetensors by offset with full header validation.
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { byteSize, type DenseDType, type DType, isPacked, parseDType } from '../tensor/dtype.js';
import { HostTensor, type Shape, sizeOf } from '../tensor/host-tensor.js';
import { LineageError } from '../util/errors.js';
import { writeFileAtomic } from './atomic.js';
import { openRegularFile, quote, readFully, readRegularFile } from './fs-util.js';
import { findDuplicateKey } from './json-keys.js';
import { isTensorSource, type TensorInfo, type TensorSource } from './tensor-source.js';

/** The reference implementation's limit; a larger header means a corrupt or hostile file. */
export const MAX_HEADER_BYTES = 100_000_000;
/** `__metadata__` key under which packed dtypes (stored as U8 bytes) record their true dtype and shape. */
export const PACKED_DTYPES_KEY = 'lineage.dtypes';
/** Hugging Face's names for single-file and sharded checkpoints. */
export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';
/** Default shard size: "2GB" as transformers parses it (decimal). */
export const DEFAULT_MAX_SHARD_BYTES = 2_000_000_000;

const FROM_ST: Record<string, DenseDType> = {
  F32: 'f32',
  F16: 'f16',
  BF16: 'bf16',
  I8: 'i8',
  U8: 'u8',
  U16: 'u16',
  I32: 'i32',
  F64: 'f64',
};
const TO_ST: Record<DenseDType, string> = {
  f32: 'F32',
  f16: 'F16',
  bf16: 'BF16',
  i8: 'I8',
  u8: 'U8',
  u16: 'U16',
  i32: 'I32',
  f64: 'F64',
};
const ITEM_BYTES: Record<DenseDType, number> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  i8: 1,
  u8: 1,
  u16: 2,
  i32: 4,
  f64: 8,
};

export interface SafetensorsTensorInfo extends TensorInfo {
  /** Bytes of the stored payload. */
  byteLength: number;
}

interface Entry extends SafetensorsTensorInfo {
  /** Offset of the payload from the start of the data section. */
  begin: number;
}

const q = quote;

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

interface ParsedHeader {
  entries: Map<string, Entry>;
  metadata: Record<string, string>;
}

/** Validates a decoded header against a data section of `dataBytes` bytes. Throws LineageError naming `file`. */
function parseHeader(text: string, dataBytes: number, file: string): ParsedHeader {
  const bad = (msg: string): never => {
    throw new LineageError(msg, file);
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    bad(`header is not valid JSON: ${oneLine((err as Error).message)}`);
  }
  if (!isPlainObject(json)) bad('header is not a JSON object');
  // Like the reference implementation: the header's first byte is '{'.
  if (!text.startsWith('{')) bad('header does not start with "{"');
  const dup = findDuplicateKey(text);
  if (dup) {
    bad(
      dup.length === 1
        ? `header lists tensor ${q(dup[0]!)} twice`
        : `header entry ${q(dup[0]!)} has the key ${q(dup[dup.length - 1]!)} twice`,
    );
  }
  const root = json as Record<string, unknown>;

  const metadata: Record<string, string> = {};
  const rawMeta = root['__metadata__'];
  if (rawMeta !== undefined && rawMeta !== null) {
    if (!isPlainObject(rawMeta)) bad('__metadata__ must be an object mapping strings to strings');
    for (const [k, v] of Object.entries(rawMeta as Record<string, unknown>)) {
      if (typeof v !== 'string') bad(`__metadata__ ${q(k)} must be a string, got ${typeof v}`);
      metadata[k] = v as string;
    }
  }

  const entries = new Map<string, Entry>();
  for (const [name, raw] of Object.entries(root)) {
    if (name === '__metadata__') continue;
    const t = `tensor ${q(name)}`;
    if (!isPlainObject(raw)) bad(`${t}: entry must be an object with dtype, shape and data_offsets`);
    const { dtype: stDtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof stDtype !== 'string') bad(`${t}: dtype is missing or not a string`);
    const dtype = FROM_ST[stDtype as string];
    if (!dtype)
      bad(
        `${t}: dtype ${q(String(stDtype))} is not supported (supported: ${Object.keys(FROM_ST).join(', ')})`,
      );
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      bad(
        `${t}: shape must be a list of non-negative integers, got ${oneLine(JSON.stringify(shape) ?? 'nothing')}`,
      );
    }
    const dims = shape as number[];
    const elements = sizeOf(dims);
    if (!Number.isSafeInteger(elements)) bad(`${t}: shape [${dims}] has too many elements`);
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every(isNonNegInt) ||
      offsets[0]! > offsets[1]!
    ) {
      bad(
        `${t}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${oneLine(JSON.stringify(offsets) ?? 'nothing')}`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataBytes)
      bad(`${t}: data_offsets [${begin}, ${end}] run past the data section (${dataBytes} bytes)`);
    const want = elements * ITEM_BYTES[dtype!];
    if (end - begin !== want) {
      bad(`${t}: header says ${stDtype}[${dims}] = ${want} bytes but offsets span ${end - begin}`);
    }
    entries.set(name, { dtype: dtype!, shape: dims, byteLength: want, begin });
  }

  // As the reference implementation requires: sorted by offset, the payloads follow one another from 0
  // with no gap and no overlap, and the last one ends where the file ends (a gap or trailing bytes hide
  // data no tensor accounts for; an overlap means the header is lying about at least one tensor).
  const byOffset = [...entries].sort((a, b) => a[1].begin - b[1].begin || a[1].byteLength - b[1].byteLength);
  let at = 0;
  let prev: string | undefined;
  for (const [name, e] of byOffset) {
    if (e.begin !== at) {
      bad(
        e.begin > at
          ? `tensor ${q(name)} starts at byte ${e.begin} of the data, leaving a gap of ${e.begin - at} bytes after ${prev === undefined ? 'the header' : `tensor ${q(prev)}`}`
          : `tensors ${q(prev!)} and ${q(name)} overlap (${q(name)} starts at byte ${e.begin}, before ${at})`,
      );
    }
    at = e.begin + e.byteLength;
    prev = name;
  }
  if (at !== dataBytes) {
    bad(
      `${dataBytes - at} bytes after the last tensor${prev === undefined ? '' : ` (${q(prev)})`}; the data section must end with it`,
    );
  }

  applyPackedDtypes(entries, metadata, file);
  return { entries, metadata };
}

/** Restores the true dtype/shape of packed tensors recorded under PACKED_DTYPES_KEY (and removes the key). */
function applyPackedDtypes(
  entries: Map<string, Entry>,
  metadata: Record<string, string>,
  file: string,
): void {
  const raw = metadata[PACKED_DTYPES_KEY];
  if (raw === undefined) return;
  delete metadata[PACKED_DTYPES_KEY];
  const bad = (msg: string): never => {
    throw new LineageError(`__metadata__ ${q(PACKED_DTYPES_KEY)}: ${msg}`, file);
  };
  let map: unknown;
  try {
    map = JSON.parse(raw);
  } catch {
    bad('is not valid JSON');
  }
  if (!isPlainObject(map)) bad('must be a JSON object mapping tensor names to {dtype, shape}');
  for (const [name, spec] of Object.entries(map as Record<string, unknown>)) {
    const e = entries.get(name);
    if (!e) bad(`names tensor ${q(name)}, which is not in the file`);
    if (!isPlainObject(spec)) bad(`entry for ${q(name)} must be {dtype, shape}`);
    const { dtype: d, shape } = spec as Record<string, unknown>;
    const dtype = typeof d === 'string' ? parseDType(d) : undefined;
    if (!dtype || !isPacked(dtype)) bad(`tensor ${q(name)}: ${q(String(d))} is not a packed dtype`);
    if (!Array.isArray(shape) || !shape.every(isNonNegInt))
      bad(`tensor ${q(name)}: shape must be non-negative integers`);
    const dims = shape as number[];
    const need = byteSize(dtype!, sizeOf(dims));
    if (e!.dtype !== 'u8' || e!.shape.length !== 1 || e!.byteLength !== need) {
      bad(
        `tensor ${q(name)}: ${dtype}[${dims}] needs a U8[${need}] payload, file has ${TO_ST[e!.dtype as DenseDType]}[${e!.shape}]`,
      );
    }
    e!.dtype = dtype!;
    e!.shape = dims;
  }
}

/**
 * One `.safetensors` file: `open` reads and validates only the header; `read` fetches one tensor's bytes
 * by offset. Packed sub-byte tensors written by writeSafetensors come back with their true dtype.
 */
export class SafetensorsFile implements TensorSource {
  private constructor(
    readonly path: string,
    private handle: FileHandle | undefined,
    private readonly entries: Map<string, Entry>,
    /** `__metadata__` (string→string), without Lineage's internal PACKED_DTYPES_KEY. */
    readonly metadata: Readonly<Record<string, string>>,
    private readonly dataStart: number,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    const { handle, size } = await openRegularFile(path);
    try {
      if (size < 8) throw new LineageError(`file is too small to be safetensors (${size} bytes)`, path);
      const lenBuf = Buffer.alloc(8);
      await readFully(handle, lenBuf, 0, 'the header length', path);
      const n = lenBuf.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER_BYTES)) {
        throw new LineageError(
          `header length ${n} is absurd (over ${MAX_HEADER_BYTES} bytes); not a safetensors file?`,
          path,
        );
      }
      const headerLen = Number(n);
      if (8 + headerLen > size) {
        throw new LineageError(`header length ${headerLen} exceeds the file size (${size} bytes)`, path);
      }
      const headerBytes = new Uint8Array(headerLen);
      await readFully(handle, headerBytes, 8, 'the header', path);
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
      } catch {
        throw new LineageError('header is not valid UTF-8', path);
      }
      const { entries, metadata } = parseHeader(text, size - 8 - headerLen, path);
      return new SafetensorsFile(path, handle, entries, metadata, 8 + headerLen);
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
  }

  /** Tensor names in data-section order. */
  names(): string[] {
    return [...this.entries].sort((a, b) => a[1].begin - b[1].begin).map(([n]) => n);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: e.shape, byteLength: e.byteLength };
  }

  async read(name: string): Promise<HostTensor> {
    const e = this.entry(name);
    if (!this.handle) throw new LineageError(`cannot read tensor ${q(name)}: the file was closed`, this.path);
    const t = HostTensor.zeros(e.dtype, e.shape);
    await readFully(this.handle, t.bytes(), this.dataStart + e.begin, `tensor ${q(name)}`, this.path);
    return t;
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new LineageError(`no tensor named ${q(name)}`, this.path);
    return e;
  }
}

// ---------------------------------------------------------------------------------------------- writing

/** What the writers accept: in-memory tensors, or a TensorSource read one tensor at a time. */
export type TensorEntries = Iterable<readonly [string, HostTensor]> | TensorSource;

interface Item {
  name: string;
  dtype: DType;
  shape: Shape;
  byteLength: number;
  get: () => Promise<HostTensor>;
}

function collectItems(entries: TensorEntries): Item[] {
  const items: Item[] = [];
  const seen = new Set<string>();
  const add = (name: string, dtype: DType, shape: Shape, get: () => Promise<HostTensor>) => {
    if (name === '__metadata__') throw new LineageError(`'__metadata__' cannot be used as a tensor name`);
    if (seen.has(name)) throw new LineageError(`duplicate tensor name ${q(name)}`);
    seen.add(name);
    items.push({ name, dtype, shape: [...shape], byteLength: byteSize(dtype, sizeOf(shape)), get });
  };
  if (isTensorSource(entries)) {
    const src = entries;
    for (const name of src.names()) {
      const { dtype, shape } = src.info(name);
      add(name, dtype, shape, async () => {
        const t = await src.read(name);
        if (t.dtype !== dtype || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
          throw new LineageError(
            `tensor ${q(name)} read as ${t.dtype}[${t.shape}] but info said ${dtype}[${shape}]`,
            src.path,
          );
        }
        return t;
      });
    }
  } else {
    for (const [name, t] of entries) add(name, t.dtype, t.shape, async () => t);
  }
  return items;
}

function storedAs(item: Item): { st: string; shape: Shape } {
  if (isPacked(item.dtype)) return { st: 'U8', shape: [item.byteLength] };
  return { st: TO_ST[item.dtype as DenseDType], shape: item.shape };
}

function itemBytes(item: Item): number {
  return isPacked(item.dtype) ? 1 : ITEM_BYTES[item.dtype as DenseDType];
}

function buildMetadata(items: Item[], metadata: Record<string, string> | undefined): Record<string, string> {
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') throw new LineageError(`metadata ${q(k)} must be a string, got ${typeof v}`);
  }
  if (metadata && PACKED_DTYPES_KEY in metadata) {
    throw new LineageError(`metadata key ${q(PACKED_DTYPES_KEY)} is reserved for packed dtypes`);
  }
  // transformers refuses safetensors whose __metadata__ lacks a known "format", so default to "pt".
  const out: Record<string, string> = { format: 'pt', ...metadata };
  const packed: Record<string, { dtype: DType; shape: Shape }> = {};
  for (const it of items) if (isPacked(it.dtype)) packed[it.name] = { dtype: it.dtype, shape: it.shape };
  if (Object.keys(packed).length > 0) out[PACKED_DTYPES_KEY] = JSON.stringify(packed);
  return out;
}

async function writeItems(
  path: string,
  items: Item[],
  metadata: Record<string, string> | undefined,
): Promise<void> {
  const meta = buildMetadata(items, metadata);
  // Like the reference implementation: larger item sizes first, then by name, so every payload stays
  // aligned to its element size (the header is padded to 8) without holes, which readers reject.
  const sorted = [...items].sort(
    (a, b) => itemBytes(b) - itemBytes(a) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  // Built by hand because JSON.stringify of an object would move integer-like tensor names first.
  const parts = [`${JSON.stringify('__metadata__')}:${JSON.stringify(meta)}`];
  let offset = 0;
  for (const it of sorted) {
    const { st, shape } = storedAs(it);
    parts.push(
      `${JSON.stringify(it.name)}:${JSON.stringify({ dtype: st, shape, data_offsets: [offset, offset + it.byteLength] })}`,
    );
    offset += it.byteLength;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20); // the format pads with spaces
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);

  await writeFileAtomic(path, async (sink) => {
    await sink.write(header);
    for (const it of sorted) {
      const t = await it.get();
      const bytes = t.bytes();
      if (bytes.byteLength !== it.byteLength) {
        throw new LineageError(
          `tensor ${q(it.name)} has ${bytes.byteLength} bytes, expected ${it.byteLength}`,
        );
      }
      await sink.write(bytes);
    }
  });
}

/**
 * Writes a safetensors file atomically, streaming one tensor at a time (from memory or a TensorSource).
 * Packed dtypes are stored as U8[byteLength] with their true dtype/shape in `__metadata__`
 * (PACKED_DTYPES_KEY); `format: "pt"` is added to the metadata unless given.
 */
export async function writeSafetensors(
  path: string,
  entries: TensorEntries,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeItems(path, collectItems(entries), metadata);
}

// ---------------------------------------------------------------------------------------------- sharded

function shardFileName(i: number, n: number): string {
  const p = (k: number) => String(k).padStart(5, '0');
  return `model-${p(i)}-of-${p(n)}.safetensors`;
}

const OUR_WEIGHT_FILES = /^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$/;

/**
 * A sharded checkpoint described by `model.safetensors.index.json`. `open` validates the index and
 * every shard's header (cheap: headers only); shards' data are opened on first read.
 */
export class ShardedSafetensors implements TensorSource {
  private readonly opened = new Map<string, Promise<SafetensorsFile>>();

  private constructor(
    readonly path: string,
    private readonly weightMap: Map<string, string>,
    private readonly infos: Map<string, SafetensorsTensorInfo>,
    /** String-valued entries of the index's `metadata`. */
    readonly metadata: Readonly<Record<string, string>>,
    /** `metadata.total_size` of the index, when present. */
    readonly totalSize: number | undefined,
  ) {}

  static async open(indexPath: string): Promise<ShardedSafetensors> {
    const bad = (msg: string): never => {
      throw new LineageError(msg, indexPath);
    };
    const text = (await readRegularFile(indexPath)).toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      bad(`index is not valid JSON: ${oneLine((err as Error).message)}`);
    }
    if (!isPlainObject(json) || !isPlainObject(json['weight_map'])) bad('index has no "weight_map" object');
    const dup = findDuplicateKey(text);
    if (dup) bad(`index has the key ${q(dup.join('.'))} twice`);
    const root = json as Record<string, unknown>;
    const weightMap = new Map<string, string>();
    for (const [name, file] of Object.entries(root['weight_map'] as Record<string, unknown>)) {
      if (typeof file !== 'string') bad(`weight_map entry for ${q(name)} is not a file name`);
      // Shards live beside the index; anything else would let an index read arbitrary files.
      if (basename(file as string) !== file || file === '..' || file === '.') {
        bad(
          `weight_map entry for ${q(name)} names ${q(file as string)}, which is not a file beside the index`,
        );
      }
      weightMap.set(name, file as string);
    }
    const metadata: Record<string, string> = {};
    let totalSize: number | undefined;
    if (isPlainObject(root['metadata'])) {
      for (const [k, v] of Object.entries(root['metadata'])) {
        if (typeof v === 'string') metadata[k] = v;
        if (k === 'total_size' && isNonNegInt(v)) totalSize = v;
      }
    }

    const infos = new Map<string, SafetensorsTensorInfo>();
    const dir = dirname(indexPath);
    for (const shard of new Set(weightMap.values())) {
      const shardPath = join(dir, shard);
      try {
        await fsp.access(shardPath);
      } catch {
        bad(`shard ${q(shard)} named by the index does not exist`);
      }
      const f = await SafetensorsFile.open(shardPath);
      try {
        for (const [name, file] of weightMap) {
          if (file !== shard) continue;
          if (!f.has(name))
            bad(`tensor ${q(name)} is mapped to shard ${q(shard)}, which does not contain it`);
          infos.set(name, f.info(name));
        }
      } finally {
        await f.close();
      }
    }
    return new ShardedSafetensors(indexPath, weightMap, infos, metadata, totalSize);
  }

  names(): string[] {
    return [...this.weightMap.keys()];
  }

  fileOf(name: string): string {
    const shard = this.weightMap.get(name);
    return shard ? join(dirname(this.path), shard) : this.path;
  }

  info(name: string): SafetensorsTensorInfo {
    const i = this.infos.get(name);
    if (!i) throw new LineageError(`no tensor named ${q(name)}`, this.path);
    return { ...i };
  }

  async read(name: string): Promise<HostTensor> {
    const shard = this.weightMap.get(name);
    if (shard === undefined) throw new LineageError(`no tensor named ${q(name)}`, this.path);
    let p = this.opened.get(shard);
    if (!p) {
      p = SafetensorsFile.open(join(dirname(this.path), shard));
      this.opened.set(shard, p);
      p.catch(() => this.opened.delete(shard));
    }
    const f = await p;
    if (!f.has(name)) {
      throw new LineageError(
        `tensor ${q(name)} is mapped to shard ${q(shard)}, which does not contain it`,
        this.path,
      );
    }
    return f.read(name);
  }

  async close(): Promise<void> {
    const all = [...this.opened.values()];
    this.opened.clear();
    await Promise.all(all.map((p) => p.then((f) => f.close()).catch(() => {})));
  }
}

export interface WriteShardedOptions {
  /** Largest shard payload in bytes (default DEFAULT_MAX_SHARD_BYTES); a larger single tensor gets its own shard. */
  maxShardBytes?: number;
  /** Written to every shard's `__metadata__` and to the index's `metadata`. */
  metadata?: Record<string, string>;
}

export interface WriteShardedResult {
  /** Files written, relative to the directory (shards, then the index when there is one). */
  files: string[];
  /** The index file name, when the model needed more than one shard. */
  index?: string;
}

/**
 * Writes a model's weights into `dir` the way transformers' save_pretrained does: `model.safetensors`
 * when it fits in one shard, else `model-0000i-of-0000N.safetensors` plus `model.safetensors.index.json`
 * (written last, so an index never names a missing shard). Tensors are assigned to shards in the given
 * order. On failure the files written so far are removed; on success stale weight files from an earlier
 * save (other shard counts) are removed so loaders cannot pick them up.
 */
export async function writeShardedSafetensors(
  dir: string,
  entries: TensorEntries,
  options: WriteShardedOptions = {},
): Promise<WriteShardedResult> {
  const maxShard = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(maxShard > 0)) throw new LineageError(`maxShardBytes must be positive, got ${maxShard}`);
  const items = collectItems(entries);
  const shards: Item[][] = [];
  let current: Item[] = [];
  let currentBytes = 0;
  for (const it of items) {
    if (current.length > 0 && currentBytes + it.byteLength > maxShard) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(it);
    currentBytes += it.byteLength;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);

  await fsp.mkdir(dir, { recursive: true });
  const single = shards.length === 1;
  const names = single ? [SINGLE_FILE_NAME] : shards.map((_, i) => shardFileName(i + 1, shards.length));
  const files = single ? [...names] : [...names, INDEX_FILE_NAME];
  const written: string[] = [];
  try {
    for (let i = 0; i < shards.length; i++) {
      await writeItems(join(dir, names[i]!), shards[i]!, options.metadata);
      written.push(names[i]!);
    }
    if (!single) {
      const weightMap: Record<string, string> = {};
      let totalSize = 0;
      const sortedNames = shards.flatMap((s, i) => s.map((it) => [it.name, names[i]!] as const));
      sortedNames.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      for (const [n, f] of sortedNames) weightMap[n] = f;
      for (const it of items) totalSize += it.byteLength;
      const index = { metadata: { ...options.metadata, total_size: totalSize }, weight_map: weightMap };
      await writeFileAtomic(join(dir, INDEX_FILE_NAME), `${JSON.stringify(index, null, 2)}\n`);
      written.push(INDEX_FILE_NAME);
    }
  } catch (err) {
    await Promise.all(written.map((f) => fsp.rm(join(dir, f), { force: true }).catch(() => {})));
    throw err;
  }
  for (const f of await fsp.readdir(dir)) {
    if (OUR_WEIGHT_FILES.test(f) && !files.includes(f)) await fsp.rm(join(dir, f), { force: true });
  }
  return single ? { files } : { files, index: INDEX_FILE_NAME };
}

/**
 * Opens safetensors weights at `path`: a `.safetensors` file, an index `.json`, or a directory holding
 * `model.safetensors.index.json` or `model.safetensors`.
 */
export async function openSafetensors(path: string): Promise<SafetensorsFile | ShardedSafetensors> {
  const st = await fsp.stat(path).catch(() => undefined);
  if (st?.isDirectory()) {
    const index = join(path, INDEX_FILE_NAME);
    if (await fsp.stat(index).catch(() => undefined)) return ShardedSafetensors.open(index);
    const single = join(path, SINGLE_FILE_NAME);
    if (await fsp.stat(single).catch(() => undefined)) return SafetensorsFile.open(single);
    throw new LineageError(`directory has neither ${INDEX_FILE_NAME} nor ${SINGLE_FILE_NAME}`, resolve(path));
  }
  if (path.endsWith('.json')) return ShardedSafetensors.open(path);
  return SafetensorsFile.open(path);
}
