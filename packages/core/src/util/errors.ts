/**
 * A user-facing failure: bad input, an impossible request, a missing dependency. The CLI prints
 * `message` as one line (no stack unless --debug) and exits non-zero. `file` names the offending
 * file when there is one; the message already includes it. `inModel`: the problem is in the model a method
 * was given (one of its layers), whose file the method does not know: a caller that does names it.
 */
export class LineageError extends Error {
  override readonly name = 'LineageError';
  readonly inModel: boolean;
  constructor(
    message: string,
    readonly file?: string,
    options?: { cause?: unknown; inModel?: boolean },
  ) {
    super(file ? `${file}: ${message}` : message, options);
    this.inModel = options?.inModel ?? false;
  }
}

export function fail(message: string, file?: string): never {
  throw new LineageError(message, file);
}
