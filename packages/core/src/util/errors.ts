/**
 * A user-facing failure: bad input, an impossible request, a missing dependency. The CLI prints
 * `message` as one line (no stack unless --debug) and exits non-zero. `file` names the offending
 * file when there is one; the message already includes it.
 */
export class LineageError extends Error {
  override readonly name = 'LineageError';
  constructor(
    message: string,
    readonly file?: string,
    options?: { cause?: unknown },
  ) {
    super(file ? `${file}: ${message}` : message, options);
  }
}

export function fail(message: string, file?: string): never {
  throw new LineageError(message, file);
}
