import { readRegularFile, readStreamBounded } from '../io/fs-util.js';
import { LineageError } from './errors.js';

/**
 * Largest text (file, directory of files, or stdin) read by default: a JavaScript string holds at most
 * 2^29 - 24 UTF-16 units, and a text of n UTF-8 bytes never needs more than n units.
 */
export const DEFAULT_MAX_DATA_BYTES = 2 ** 29 - 64;
let maxDataBytes = DEFAULT_MAX_DATA_BYTES;

/** The process-wide limit on data read as text (the CLI's `--max-data-bytes`). */
export function setMaxDataBytes(n: number | undefined): void {
  if (n !== undefined && !(Number.isSafeInteger(n) && n > 0))
    throw new LineageError(`the data size limit must be a positive integer of bytes, got ${n}`);
  maxDataBytes = Math.min(n ?? DEFAULT_MAX_DATA_BYTES, DEFAULT_MAX_DATA_BYTES);
}

/** The limit in force (see setMaxDataBytes). */
export function getMaxDataBytes(): number {
  return maxDataBytes;
}

/** The name under which standard input is given as data. */
export const STDIN_PATH = '-';

const LIMIT_HINT = ' (raise it with --max-data-bytes, up to the largest text a string can hold)';

export interface ReadTextOptions {
  /** Refuse anything larger (default: getMaxDataBytes()). */
  maxBytes?: number;
}

/**
 * Reads a UTF-8 text file, or standard input when `path` is '-', refusing missing, empty and non-UTF-8
 * input with one-line errors. Only regular files are read, checked before opening (a FIFO or a device
 * is refused at once, never waited on); anything over the size limit is refused before it is read.
 */
export async function readTextFile(path: string, options: ReadTextOptions = {}): Promise<string> {
  const maxBytes = options.maxBytes ?? maxDataBytes;
  let bytes: Buffer;
  if (path === STDIN_PATH) bytes = await readStreamBounded(process.stdin, maxBytes, '<stdin>', LIMIT_HINT);
  else bytes = await readRegularFile(path, maxBytes, LIMIT_HINT);
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
