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
