/*
 * The one output policy of every command that writes (calibrate, convert, init, train, distill, compress,
 * family): an output never is, holds or lies inside anything the command reads (model, tokenizer, data,
 * statistics, run directory), with or without --force; an existing output is replaced only with --force; and
 * the write itself goes to a temporary sibling that is renamed into place (core's writeFileAtomic and
 * writeDirAtomic), so a failure leaves the old output, or none, never half a new one.
 */
import { lstatSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { LineageError, type LlamaModel } from '@lineage/core';
import { UsageError } from './commands/common.js';
import { noteOutput, systemErrorReason } from './errors.js';

/** A path the command reads, with what it is for messages ('the model', '--data'). */
export interface Input {
  path: string | undefined;
  what: string;
}

export interface OutputSpec {
  /** The output as given on the command line. */
  path: string;
  /** A file (`.bin`, statistics) or a directory (Hugging Face model, family, run directory). */
  kind: 'file' | 'dir';
  /** Replace an existing output (never an input). */
  force?: boolean;
  /** Everything the command reads. */
  inputs: readonly Input[];
  /** The option naming it, for messages (default --out). */
  flag?: string;
  /** What a file output is, for messages (default 'the file'). */
  noun?: string;
}

/** The kind of a model output: a llama2.c `.bin` file, else a Hugging Face directory. */
export function modelOutputKind(path: string): 'file' | 'dir' {
  return path.endsWith('.bin') ? 'file' : 'dir';
}

/**
 * `path` made absolute with symbolic links resolved, also when it does not exist yet: the nearest existing
 * ancestor is resolved and the rest appended. Errors of the path itself (a regular file as a parent, a name
 * too long) are one-line LineageErrors naming `shown`.
 */
export function realPath(path: string, shown = path): string {
  const abs = resolve(path);
  let existing = abs;
  const rest: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(existing), ...rest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR')
        throw new LineageError(
          `cannot be written: ${notADirectory(abs) ?? 'a part of it is not a directory'}`,
          shown,
        );
      if (code !== 'ENOENT' && code !== 'ELOOP')
        throw new LineageError(`cannot be used: ${systemErrorReason(e)}`, shown);
      const parent = dirname(existing);
      if (parent === existing) return abs;
      rest.unshift(basename(existing));
      existing = parent;
    }
  }
}

/** The first ancestor of `abs` that exists and is not a directory, described. */
function notADirectory(abs: string): string | undefined {
  let p = dirname(abs);
  const chain: string[] = [];
  while (dirname(p) !== p) {
    chain.unshift(p);
    p = dirname(p);
  }
  for (const a of chain) {
    const st = lstatSync(a, { throwIfNoEntry: false });
    if (!st) return undefined;
    if (!st.isDirectory() && !st.isSymbolicLink()) return `'${a}' is a file, not a directory`;
  }
  return undefined;
}

/** Whether `inner` is `outer` or lies inside it (both real, absolute). */
function within(inner: string, outer: string): boolean {
  if (inner === outer) return true;
  const r = relative(outer, inner);
  return r !== '' && !r.startsWith(`..${sep}`) && r !== '..' && !r.startsWith(sep);
}

/** Refuses `out` when it is, holds or lies inside one of `inputs` (a LineageError naming both). */
export function checkNoOverlap(out: string, inputs: readonly Input[], flag = '--out'): void {
  // '' (or blanks) would resolve to the working directory: a --force would replace everything in it
  if (!out.trim())
    throw new UsageError(flag, JSON.stringify(out), 'is an empty path: name a file or directory');
  const o = realPath(out);
  for (const input of inputs) {
    if (!input.path || input.path === '-') continue;
    const i = realPath(input.path);
    if (i === o)
      throw new LineageError(
        `${flag} is ${input.what} (${input.path}), which this command reads: write elsewhere`,
        out,
      );
    if (within(i, o))
      throw new LineageError(
        `${flag} holds ${input.what} (${input.path}), which this command reads and writing would replace: write elsewhere`,
        out,
      );
    if (within(o, i))
      throw new LineageError(`${flag} lies inside ${input.what} (${input.path}): write elsewhere`, out);
  }
}

/**
 * The whole policy for one output, checked before any work: no overlap with an input; an existing file or
 * non-empty directory only with --force; a file where a directory is wanted (or the reverse) never.
 */
export function checkOutput(spec: OutputSpec): void {
  const flag = spec.flag ?? '--out';
  if (!spec.path.trim())
    throw new UsageError(flag, JSON.stringify(spec.path), 'is an empty path: name a file or directory');
  noteOutput(spec.path);
  guardOutput(spec.path);
  checkNoOverlap(spec.path, spec.inputs, flag);
  const st = statOrUndefined(spec.path);
  if (!st) return;
  if (spec.kind === 'file') {
    if (st.isDirectory())
      throw new LineageError(`is a directory; ${flag} names ${spec.noun ?? 'the file'} to write`, spec.path);
    if (!spec.force) throw new LineageError('output exists (pass --force to replace it)', spec.path);
    if (!st.isFile()) throw new LineageError('exists and is not a regular file: not replaced', spec.path);
    return;
  }
  if (!st.isDirectory())
    throw new LineageError(`exists and is not a directory; ${flag} names a directory to write`, spec.path);
  // the directory is written beside its path and renamed into place: that would replace the link, not
  // fill the directory it points to, so neither is done
  if (lstatSync(spec.path).isSymbolicLink())
    throw new LineageError(
      `is a symbolic link to a directory (${realpathSync(spec.path)}); ${flag} names the directory to write: give that directory itself`,
      spec.path,
    );
  if (!spec.force && !isEmptyDir(spec.path))
    throw new LineageError('output exists (pass --force to replace it)', spec.path);
}

/**
 * A run directory (checkpoints and logs, read back by --resume) is an output too: it must not be, hold or lie
 * inside an input, and it must be a directory when it exists.
 */
export function checkRunDir(runDir: string, inputs: readonly Input[], flag = '--run-dir'): void {
  checkNoOverlap(runDir, inputs, flag);
  const st = statOrUndefined(runDir);
  if (st && !st.isDirectory())
    throw new LineageError(`is a file, not a directory (${flag} names a directory for checkpoints)`, runDir);
}

/** The tokenizer a loaded model was read with: an input that may have been found beside the model. */
export function tokenizerInput(model: LlamaModel, what = 'the tokenizer'): Input {
  return { path: model.tokenizer?.source, what };
}

function statOrUndefined(path: string) {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch (e) {
    throw new LineageError(`cannot be used: ${systemErrorReason(e)}`, path);
  }
}

function isEmptyDir(path: string): boolean {
  try {
    return readdirSync(path).length === 0;
  } catch (e) {
    throw new LineageError(`cannot be read: ${systemErrorReason(e)}`, path);
  }
}

/** Hidden temporary siblings this process makes while writing `output` (core's atomic writes, calibrate's spool). */
function tempSiblings(output: string): string[] {
  const abs = resolve(output);
  const mine = new RegExp(`^\\.${escapeRegExp(basename(abs))}\\.(?:tmp|spool)-${process.pid}-[0-9a-f]{8}$`);
  try {
    return readdirSync(dirname(abs))
      .filter((n) => mine.test(n))
      .map((n) => join(dirname(abs), n));
  } catch {
    return [];
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const guarded = new Set<string>();

/**
 * Ctrl-C (or any exit) while `output` is being written leaves no half-written temporary beside it: on exit the
 * process's own temporaries are removed (never the output, nor an old copy moved aside). A Ctrl-C with no
 * graceful handler of the command's own (train and recoveries checkpoint first) exits at once with 130.
 */
export function guardOutput(output: string): void {
  if (!guarded.size) {
    process.on('exit', () => {
      for (const o of guarded) for (const t of tempSiblings(o)) rmSync(t, { recursive: true, force: true });
    });
    process.on('SIGINT', function quit() {
      // another handler (interrupt.ts) stops gracefully with a checkpoint and exits itself
      if (process.listeners('SIGINT').every((l) => l === quit)) process.exit(130);
    });
  }
  guarded.add(output);
}
