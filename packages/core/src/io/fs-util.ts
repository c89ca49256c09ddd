import {
  closeSync,
  constants as fsConstants,
  promises as fsp,
  fstatSync,
  openSync,
  readSync,
  type Stats,
  statSync,
} from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { LineageError } from '../util/errors.js';

/** Node's fs calls take at most 2^31-1 bytes; stay well below. */
const IO_CHUNK = 1 << 30;

/** Reads exactly `bytes.byteLength` bytes at `position`, or fails naming what came up short. */
export async function readFully(
  handle: FileHandle,
  bytes: Uint8Array,
  position: number,
  what: string,
  file: string,
): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const len = Math.min(IO_CHUNK, bytes.byteLength - done);
    const { bytesRead } = await handle.read(bytes, done, len, position + done);
    if (bytesRead === 0)
      throw new LineageError(`file ended while reading ${what} (was it truncated after opening?)`, file);
    done += bytesRead;
  }
}

/** Quotes a name for a one-line message (control characters escaped: names come from untrusted files). */
export function quote(s: string): string {
  const clipped = s.length > 200 ? `${s.slice(0, 200)}…` : s;
  let out = '';
  for (const ch of clipped) {
    const c = ch.charCodeAt(0);
    out += c < 0x20 || c === 0x7f ? `\\x${c.toString(16).padStart(2, '0')}` : ch;
  }
  return `'${out}'`;
}

/** An fs error as a short reason: the errno code when there is one. */
export function fsReason(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/** Largest JSON or tokenizer file read whole (config.json, index, tokenizer.json): far above any real one. */
export const MAX_SMALL_FILE_BYTES = 256 * 1024 * 1024;

// Opening a FIFO for reading blocks until a writer appears; O_NONBLOCK makes that open return at once
// (it changes nothing for regular files), so the type check on the handle below cannot hang either.
const O_NONBLOCK: number = fsConstants.O_NONBLOCK ?? 0;
const READ_FLAGS = fsConstants.O_RDONLY | O_NONBLOCK;

/** What a non-regular file is, for "is a FIFO, not a regular file". */
export function fileKind(
  st: Pick<Stats, 'isDirectory' | 'isFIFO' | 'isCharacterDevice' | 'isBlockDevice' | 'isSocket'>,
): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'a special file';
}

function notRegular(st: Stats, path: string): LineageError {
  return new LineageError(`is ${fileKind(st)}, not a regular file`, path);
}

function statError(err: unknown, path: string): LineageError {
  const code = (err as NodeJS.ErrnoException).code;
  return new LineageError(
    code === 'ENOENT' ? 'no such file or directory' : `cannot open: ${fsReason(err)}`,
    path,
    { cause: err },
  );
}

function tooLarge(size: number, maxBytes: number, path: string, hint = ''): LineageError {
  return new LineageError(`file is ${size} bytes, over the limit of ${maxBytes} bytes${hint}`, path);
}

/**
 * Opens a regular file for reading. Its type is checked with stat before opening (so a FIFO, a device or
 * a socket is refused instead of blocking or reading forever) and again on the open handle.
 */
export async function openRegularFile(path: string): Promise<{ handle: FileHandle; size: number }> {
  let st: Stats;
  try {
    st = await fsp.stat(path);
  } catch (err) {
    throw statError(err, path);
  }
  if (!st.isFile()) throw notRegular(st, path);
  let handle: FileHandle;
  try {
    handle = await fsp.open(path, READ_FLAGS);
  } catch (err) {
    throw new LineageError(`cannot open: ${fsReason(err)}`, path, { cause: err });
  }
  try {
    const now = await handle.stat();
    if (!now.isFile()) throw notRegular(now, path);
    return { handle, size: now.size };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
}

/** A regular file's bytes, refused (before reading) when larger than `maxBytes`. */
export async function readRegularFile(
  path: string,
  maxBytes: number = MAX_SMALL_FILE_BYTES,
  hint = '',
): Promise<Buffer> {
  const { handle, size } = await openRegularFile(path);
  try {
    if (size > maxBytes) throw tooLarge(size, maxBytes, path, hint);
    const bytes = Buffer.alloc(size);
    await readFully(handle, bytes, 0, 'the file', path);
    return bytes;
  } finally {
    await handle.close().catch(() => {});
  }
}

/** `readRegularFile`, synchronously (for the synchronous tokenizer loaders). */
export function readRegularFileSync(path: string, maxBytes: number = MAX_SMALL_FILE_BYTES): Buffer {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw statError(err, path);
  }
  if (!st.isFile()) throw notRegular(st, path);
  let fd: number;
  try {
    fd = openSync(path, READ_FLAGS);
  } catch (err) {
    throw new LineageError(`cannot open: ${fsReason(err)}`, path, { cause: err });
  }
  try {
    const now = fstatSync(fd);
    if (!now.isFile()) throw notRegular(now, path);
    if (now.size > maxBytes) throw tooLarge(now.size, maxBytes, path);
    const bytes = Buffer.alloc(now.size);
    let done = 0;
    while (done < bytes.byteLength) {
      const n = readSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.byteLength - done), done);
      if (n === 0) throw new LineageError('file ended while reading it (was it truncated?)', path);
      done += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** Reads a stream (stdin) to its end, failing as soon as it passes `maxBytes` (so an endless one cannot grow memory). */
export async function readStreamBounded(
  stream: NodeJS.ReadableStream,
  maxBytes: number,
  name: string,
  hint = '',
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    total += b.byteLength;
    if (total > maxBytes) {
      (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
      throw new LineageError(`input is over the limit of ${maxBytes} bytes${hint}`, name);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, total);
}
