import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { LineageError } from '../util/errors.js';
import { fsReason } from './fs-util.js';

/** Sequential writer over a file handle; loops over short writes and counts bytes. */
export class ByteSink {
  bytesWritten = 0;
  constructor(readonly handle: FileHandle) {}

  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      // fs writes take at most 2^31-1 bytes, and an f32 embedding can exceed that.
      const len = Math.min(1 << 30, bytes.byteLength - done);
      const { bytesWritten } = await this.handle.write(bytes, done, len, this.bytesWritten);
      if (bytesWritten <= 0) throw new Error('write made no progress');
      done += bytesWritten;
      this.bytesWritten += bytesWritten;
    }
  }
}

export type FileWriter = (sink: ByteSink) => Promise<void>;

/** A name beside `target` that is unique and hidden, so a crash leaves nothing that looks like output. */
function siblingTemp(target: string, tag: string): string {
  return join(
    dirname(target),
    `.${basename(target)}.${tag}-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
}

async function fsyncDir(dir: string): Promise<void> {
  // Makes the rename durable; not supported on every platform/filesystem, so best effort.
  try {
    const h = await fsp.open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    /* ignore */
  }
}

/**
 * Writes `path` so that it either keeps its old content or gets the complete new content: data go to a
 * temp file in the same directory (same filesystem, so rename is atomic), are fsynced, then renamed.
 * On any failure the temp file is removed and the error is rethrown.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string | FileWriter): Promise<void> {
  if (!path.trim()) throw new LineageError('the output file is an empty path');
  const target = resolve(path);
  const tmp = siblingTemp(target, 'tmp');
  let handle: FileHandle | undefined;
  try {
    handle = await fsp.open(tmp, 'wx');
  } catch (err) {
    // Name the destination, not the temp file, e.g. when its directory does not exist.
    throw new LineageError(`cannot create: ${fsReason(err)}`, path, { cause: err });
  }
  try {
    const sink = new ByteSink(handle);
    if (typeof data === 'function') await data(sink);
    else await sink.write(typeof data === 'string' ? new TextEncoder().encode(data) : data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, target);
  } catch (err) {
    if (handle) await handle.close().catch(() => {});
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  await fsyncDir(dirname(target));
}

async function dirState(dir: string): Promise<'missing' | 'empty' | 'nonempty'> {
  let st: Awaited<ReturnType<typeof fsp.stat>>;
  try {
    st = await fsp.lstat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw err;
  }
  if (!st.isDirectory()) throw new LineageError('exists and is not a directory', dir);
  return (await fsp.readdir(dir)).length === 0 ? 'empty' : 'nonempty';
}

export interface WriteDirOptions {
  /** Replace an existing non-empty directory (default false: refuse). */
  overwrite?: boolean;
}

/**
 * Builds a directory in a sibling temp directory, then renames it into place, so `dir` never holds a
 * half-written result. An existing non-empty `dir` is refused unless `overwrite`; with overwrite the
 * old directory is moved aside, the new one renamed in, and only then is the old one deleted (it is
 * moved back if the swap fails).
 */
export async function writeDirAtomic<T>(
  dir: string,
  build: (tmpDir: string) => Promise<T>,
  options: WriteDirOptions = {},
): Promise<T> {
  // '' resolves to the working directory: replacing it would delete whatever the user keeps there
  if (!dir.trim()) throw new LineageError('the output directory is an empty path');
  const target = resolve(dir);
  const refuse = () =>
    new LineageError(
      'output directory exists and is not empty (replacing it needs --force; library: overwrite: true)',
      dir,
    );
  // Checked before the (possibly long) build so the user learns at once, and again before the swap.
  if (!options.overwrite && (await dirState(target)) === 'nonempty') throw refuse();
  await fsp.mkdir(dirname(target), { recursive: true });
  const tmp = siblingTemp(target, 'tmp');
  await fsp.mkdir(tmp);
  let result: T;
  try {
    result = await build(tmp);
    const state = await dirState(target);
    if (state === 'nonempty' && !options.overwrite) throw refuse();
    if (state === 'missing') {
      await fsp.rename(tmp, target);
    } else if (state === 'empty') {
      await fsp.rmdir(target);
      await fsp.rename(tmp, target);
    } else {
      const old = siblingTemp(target, 'old');
      await fsp.rename(target, old);
      try {
        await fsp.rename(tmp, target);
      } catch (err) {
        await fsp.rename(old, target).catch(() => {});
        throw err;
      }
      // The new directory is in place; failing to delete the old copy must not report failure.
      await fsp.rm(old, { recursive: true, force: true }).catch(() => {});
    }
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
  await fsyncDir(dirname(target));
  return result;
}
