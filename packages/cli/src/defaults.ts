import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LineageError, sharedDir } from '@lineage/core';
import { log, logSoon } from './output.js';

/** The real model shipped beside the repository, used when no model is given. */
export function defaultModel(): string {
  let dir: string;
  try {
    dir = sharedDir();
  } catch {
    throw new LineageError(
      'no model given, and the default model ../shared/models/stories260K/stories260K.bin was not found; pass a model path',
    );
  }
  const p = join(dir, 'models', 'stories260K', 'stories260K.bin');
  if (!existsSync(p)) throw new LineageError('no model given, and the default model is missing', p);
  logSoon(`model: ${p} (default)`);
  return p;
}

/** TinyStories dev documents beside the repository, used by eval when no data is given. */
export function defaultEvalData(): { path: string; separator: string } {
  let dir: string;
  try {
    dir = sharedDir();
  } catch {
    throw new LineageError(
      'no --data given, and the default ../shared/data/tinystories/valid-dev.txt was not found',
    );
  }
  const path = join(dir, 'data', 'tinystories', 'valid-dev.txt');
  logSoon(`data: ${path} (default, documents separated by <|endoftext|>)`);
  return { path, separator: '<|endoftext|>' };
}
