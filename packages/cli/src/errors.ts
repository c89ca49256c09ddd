import { basename, dirname, join } from 'node:path';
import { getMethod, isOptionError, LineageError, type OptionError, optionErrorMessage } from '@lineage/core';
import { RecoveryInterrupted } from '@lineage/distill';

/** What the environment said, in words, by Node's error code (what the user can do something about). */
const SYSTEM_REASONS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for the file system',
  EROFS: 'read-only file system',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'is a directory',
  ENAMETOOLONG: 'name too long',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'already exists',
  ENOENT: 'no such file or directory',
  ENOTEMPTY: 'directory not empty',
  ELOOP: 'too many levels of symbolic links',
  EIO: 'input/output error',
  EBUSY: 'resource busy',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EXDEV: 'crosses file systems',
  ETXTBSY: 'file busy',
  ENXIO: 'no such device',
  ENODEV: 'no such device',
};

type SystemError = NodeJS.ErrnoException & { dest?: string };

/** A failure of the file system or the operating system (Node's errors with a known errno code). */
export function isSystemError(e: unknown): e is SystemError {
  const code = (e as SystemError | undefined)?.code;
  return e instanceof Error && typeof code === 'string' && code in SYSTEM_REASONS;
}

/** An fs error as words (`no space left on the device`), or its message when it is not one. */
export function systemErrorReason(e: unknown): string {
  if (isSystemError(e)) return SYSTEM_REASONS[e.code!]!;
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

/** Temporary siblings of core's atomic writes (`.name.tmp-pid-hex`) stand for the output they become. */
function shownPath(p: string): string {
  const m = /^\.(.+)\.(?:tmp|old|spool)-\d+-[0-9a-f]{8}$/.exec(basename(p));
  return m ? join(dirname(p), m[1]!) : p;
}

/**
 * The output the running command writes (set by the output policy): errors of writes through a file handle
 * carry no path, and a full disk during a write is that output's.
 */
let currentOutput: string | undefined;
export function noteOutput(path: string | undefined): void {
  currentOutput = path;
}

/** A system error as one line naming the path, e.g. `out/model: no space left on the device (write)`. */
export function systemErrorLine(e: SystemError): string {
  const path = e.path ?? e.dest ?? currentOutput;
  const verb = e.syscall ? ` (${e.syscall})` : '';
  return path ? `${shownPath(path)}: ${SYSTEM_REASONS[e.code!]}${verb}` : `${SYSTEM_REASONS[e.code!]}${verb}`;
}

/** The nearest cause in `e`'s chain that is a system error (core wraps some in LineageErrors). */
function systemCause(e: unknown): SystemError | undefined {
  for (let c: unknown = e, i = 0; c && i < 8; c = (c as Error).cause, i++) if (isSystemError(c)) return c;
  return undefined;
}

/**
 * How the running command names a method's options in its errors: by flag (`--rank`, compress and family,
 * whose `--schedule` stands for a family method's `sizes`) or by key (a recipe's `options: { rank: … }`).
 */
let optionNames: { flags: boolean; aliases?: Record<string, string> } = { flags: true };
export function nameMethodOptions(style: { flags: boolean; aliases?: Record<string, string> }): void {
  optionNames = style;
}

/** An OptionError's message as the running command names options (the method's schema gives its flags). */
function optionLine(e: OptionError): string {
  let schema: ReturnType<typeof getMethod>['options'] | undefined;
  try {
    schema = e.method ? getMethod(e.method).options : undefined;
  } catch {
    schema = undefined; // a method not registered here (a library caller's): kebab-cased keys
  }
  return optionErrorMessage(e, schema, optionNames);
}

/**
 * Exit codes: 1 bad input, an impossible request or a failure of the environment (a full disk, a read-only
 * file system, a path under a regular file: one line naming the path), 2 internal error (a bug: please
 * report), 130 a recovery stopped by Ctrl-C (its checkpoint is written; the message says how to resume).
 */
export function reportError(e: unknown, debug: boolean): number {
  if (debug && e instanceof Error) process.stderr.write(`${e.stack ?? e.message}\n`);
  if (e instanceof LineageError) {
    const sys = systemCause(e.cause);
    // core reports some fs errors by their bare code ('cannot create: ENOSPC'): say it in words
    const text = isOptionError(e) ? optionLine(e) : e.message;
    const msg = sys && /: E[A-Z]+$/.test(text) ? `${text} (${SYSTEM_REASONS[sys.code!]})` : text;
    // a misuse of flags reads like commander's own usage errors
    const usage = (e as { usage?: boolean }).usage ? ' (run with --help for usage)' : '';
    if (!debug) process.stderr.write(`lineage: ${oneLine(msg)}${usage}\n`);
    return e instanceof RecoveryInterrupted && e.stopped === 'interrupted' ? 130 : 1;
  }
  if (isSystemError(e)) {
    if (!debug) process.stderr.write(`lineage: ${oneLine(systemErrorLine(e))}\n`);
    return 1;
  }
  const msg = e instanceof Error ? e.message : String(e);
  if (!debug)
    process.stderr.write(`lineage: internal error: ${oneLine(msg)} (run with --debug for the stack trace)\n`);
  return 2;
}

// C0 controls except tab and line breaks, and DEL
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const CONTROL = /[\u0000-\u0008\u000e-\u001f\u007f]/g;

/**
 * A message as one printable line: line breaks (any kind) become spaces, other control characters (a binary
 * file's bytes quoted by a parser) are shown escaped, and a very long message is cut.
 */
export function oneLine(s: string): string {
  const flat = s
    .replace(/\s*[\r\n\v\f\u0085\u2028\u2029]+\s*/g, ' ')
    .replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .trim();
  return flat.length > 1000 ? `${flat.slice(0, 1000)}…` : flat;
}
