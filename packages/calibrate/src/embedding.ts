import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  byteSize,
  HostTensor,
  LineageError,
  Llama2cSource,
  SafetensorsFile,
  ShardedSafetensors,
  sizeOf,
  type TensorSource,
} from '@lineage/core';

/** Where the rows of a stored 2-D float tensor lie in a file. */
interface RowLocation {
  file: string;
  /** Byte offset of row 0. */
  offset: number;
  dtype: 'f32' | 'f16' | 'bf16';
  rows: number;
  cols: number;
}

/** Bytes per read when scanning a tensor by offset. */
const CHUNK_BYTES = 4 << 20;

async function readExactly(h: FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.byteLength) {
    const { bytesRead } = await h.read(buf, done, buf.byteLength - done, pos + done);
    if (bytesRead <= 0) throw new Error('unexpected end of file');
    done += bytesRead;
  }
}

/** Start of a tensor's payload in a safetensors file (its header is already validated by SafetensorsFile). */
async function safetensorsOffset(file: string, name: string): Promise<number | undefined> {
  const h = await fsp.open(file, 'r');
  try {
    const len = Buffer.alloc(8);
    await readExactly(h, len, 0);
    const n = Number(len.readBigUInt64LE(0));
    const header = Buffer.alloc(n);
    await readExactly(h, header, 8);
    const entry = JSON.parse(header.toString('utf8'))[name] as
      | { data_offsets?: [number, number] }
      | undefined;
    const begin = entry?.data_offsets?.[0];
    return typeof begin === 'number' ? 8 + n + begin : undefined;
  } finally {
    await h.close();
  }
}

/** Where a stored tensor's payload lies in a file (its bytes are exactly what `source.read(name).bytes()` gives). */
export interface TensorLocation {
  file: string;
  offset: number;
  byteLength: number;
}

/**
 * Locates a tensor's payload for reading by offset: any tensor of a safetensors file or sharded checkpoint, and
 * llama2.c's embedding (the only llama2.c tensor stored as read: q/k rows are permuted on reading). Undefined
 * for anything else, so callers read the whole tensor instead.
 */
export async function locateTensor(source: TensorSource, name: string): Promise<TensorLocation | undefined> {
  let file: string | undefined;
  let offset: number | undefined;
  if (source instanceof SafetensorsFile) {
    file = source.path;
    offset = await safetensorsOffset(file, name);
  } else if (source instanceof ShardedSafetensors) {
    const index = JSON.parse(await fsp.readFile(source.path, 'utf8')) as {
      weight_map?: Record<string, string>;
    };
    const shard = index.weight_map?.[name];
    if (!shard) return undefined;
    file = join(dirname(source.path), shard);
    offset = await safetensorsOffset(file, name);
  } else if (source instanceof Llama2cSource && name === 'model.embed_tokens.weight') {
    // A 28-byte header (7 int32), then the token embedding table, f32 [vocab, dim].
    file = source.path;
    offset = 28;
  }
  if (file === undefined || offset === undefined) return undefined;
  const info = source.info(name);
  return { file, offset, byteLength: byteSize(info.dtype, sizeOf(info.shape)) };
}

/** Where a 2-D float tensor's rows lie, for reading them by offset. */
export async function locateRows(source: TensorSource, name: string): Promise<RowLocation | undefined> {
  const info = source.info(name);
  if (info.shape.length !== 2 || !(info.dtype === 'f32' || info.dtype === 'f16' || info.dtype === 'bf16'))
    return undefined;
  const at = await locateTensor(source, name);
  if (!at) return undefined;
  const [rows, cols] = info.shape as [number, number];
  return { file: at.file, offset: at.offset, dtype: info.dtype, rows, cols };
}

/** A buffer for streamBytes, reusable across calls. */
export function chunkBuffer(): Uint8Array {
  return new Uint8Array(CHUNK_BYTES);
}

/** Feeds a tensor's payload to `update` in chunks of `buf`'s size, read by offset into `buf`. */
export async function streamBytes(
  at: TensorLocation,
  update: (chunk: Uint8Array) => void,
  buf: Uint8Array = chunkBuffer(),
): Promise<void> {
  const h = await fsp.open(at.file, 'r');
  try {
    for (let done = 0; done < at.byteLength; ) {
      const n = Math.min(buf.byteLength, at.byteLength - done);
      await readExactly(h, buf.subarray(0, n), at.offset + done);
      update(buf.subarray(0, n));
      done += n;
    }
  } finally {
    await h.close();
  }
}

/**
 * Writes `table[ids[t]]` (as f32) to `out` row `rowOf(i, t)` for every token of every sequence, reading only
 * chunks of the table that hold a wanted row, so the whole table is never in memory at once. Falls back to
 * reading the whole tensor for sources it cannot read by offset.
 */
export async function gatherRows(
  source: TensorSource,
  name: string,
  sequences: readonly Int32Array[],
  out: Float32Array,
  firstRow: readonly number[],
): Promise<void> {
  const loc = await locateRows(source, name);
  if (!loc) {
    gatherFromTable(await source.read(name), sequences, out, firstRow);
    return;
  }
  const { rows: V, cols: D } = loc;
  // Token positions grouped by id (counting sort), so one pass over the table serves every token.
  const count = new Int32Array(V + 1);
  let total = 0;
  for (const s of sequences) {
    for (const id of s) {
      if (!(id >= 0 && id < V))
        throw new LineageError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
      count[id + 1]!++;
    }
    total += s.length;
  }
  for (let v = 0; v < V; v++) count[v + 1]! += count[v]!;
  const start = count.slice();
  const pos = new Int32Array(total);
  sequences.forEach((s, i) => {
    for (let t = 0; t < s.length; t++) pos[start[s[t]!]!++] = firstRow[i]! + t;
  });
  const item = loc.dtype === 'f32' ? 4 : 2;
  const rowBytes = D * item;
  const chunkRows = Math.max(1, Math.floor(CHUNK_BYTES / rowBytes));
  const h = await fsp.open(loc.file, 'r');
  try {
    const buf = new Uint8Array(chunkRows * rowBytes);
    for (let r0 = 0; r0 < V; r0 += chunkRows) {
      const r1 = Math.min(V, r0 + chunkRows);
      if (count[r1] === count[r0]) continue; // no token in these rows
      const bytes = buf.subarray(0, (r1 - r0) * rowBytes);
      await readExactly(h, bytes, loc.offset + r0 * rowBytes);
      const f32 = HostTensor.fromBytes(loc.dtype, [r1 - r0, D], bytes).toF32();
      for (let v = r0; v < r1; v++) {
        for (let k = count[v]!; k < count[v + 1]!; k++) {
          out.set(f32.subarray((v - r0) * D, (v - r0 + 1) * D), pos[k]! * D);
        }
      }
    }
  } finally {
    await h.close();
  }
}

/** The same gather from a table in memory. */
export function gatherFromTable(
  table: HostTensor,
  sequences: readonly Int32Array[],
  out: Float32Array,
  firstRow: readonly number[],
): void {
  const [V, D] = table.shape as [number, number];
  const rows = table.dtype === 'f32' ? (table.data as Float32Array) : table.toF32();
  sequences.forEach((seq, i) => {
    const off = firstRow[i]!;
    for (let t = 0; t < seq.length; t++) {
      const id = seq[t]!;
      if (!(id >= 0 && id < V))
        throw new LineageError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
      out.set(rows.subarray(id * D, id * D + D), (off + t) * D);
    }
  });
}
