import { readFile, stat } from 'node:fs/promises';
import { LineageError } from './errors.js';

/** Reads a UTF-8 text file, refusing missing, empty and non-UTF-8 files with one-line errors. */
export async function readTextFile(path: string): Promise<string> {
  let bytes: Buffer;
  try {
    if ((await stat(path)).isDirectory())
      throw new LineageError('is a directory, expected a text file', path);
    bytes = await readFile(path);
  } catch (e) {
    if (e instanceof LineageError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new LineageError(code === 'ENOENT' ? 'no such file' : `cannot read: ${(e as Error).message}`, path);
  }
  if (bytes.length === 0) throw new LineageError('file is empty', path);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    throw new LineageError(`not valid UTF-8 text (first bad byte at offset ${at})`, path);
  }
  if (text.trim().length === 0) throw new LineageError('file contains only whitespace', path);
  return text;
}

function firstInvalidUtf8(b: Uint8Array): number {
  // Binary search on the longest valid prefix; decoding is cheap relative to the file read.
  let lo = 0;
  let hi = b.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    try {
      // stream: an incomplete sequence at the cut is not an error, only an invalid one is.
      new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid - 1;
    }
  }
  return lo;
}
