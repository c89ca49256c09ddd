import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkNoOverlap, checkOutput, checkRunDir, realPath } from './output-policy.js';
import { tempDir } from './test-support.js';

const dir = tempDir('lineage-output-policy-');
const model = join(dir, 'model');
mkdirSync(model);
writeFileSync(join(model, 'config.json'), '{}');
const data = join(dir, 'data.txt');
writeFileSync(data, 'text');
const inputs = [
  { path: join(model), what: 'the model' },
  { path: data, what: '--data' },
  { path: undefined, what: 'the tokenizer' },
];

describe('the output policy', () => {
  it('resolves outputs that do not exist yet through their nearest existing parent (symbolic links too)', () => {
    const link = join(dir, 'link');
    symlinkSync(model, link);
    expect(realPath(join(link, 'a', 'b'))).toBe(join(model, 'a', 'b'));
    expect(() => checkNoOverlap(join(link, 'new'), inputs)).toThrow(/lies inside the model/);
    expect(() => checkNoOverlap(link, inputs)).toThrow(/--out is the model/);
  });

  it('refuses an output that is, holds or lies inside an input, with or without --force', () => {
    for (const force of [false, true]) {
      expect(() => checkOutput({ path: data, kind: 'file', force, inputs })).toThrow(/is --data/);
      expect(() => checkOutput({ path: dir, kind: 'dir', force, inputs })).toThrow(/holds the model/);
      expect(() => checkOutput({ path: join(model, 'x'), kind: 'dir', force, inputs })).toThrow(
        /lies inside the model/,
      );
    }
    // a sibling whose name starts like an input is not inside it
    expect(() => checkOutput({ path: `${model}-small`, kind: 'dir', inputs })).not.toThrow();
  });

  it('replaces an existing output only with --force, and never a directory by a file or the reverse', () => {
    const existing = join(dir, 'stats.st');
    writeFileSync(existing, 'x');
    expect(() => checkOutput({ path: existing, kind: 'file', inputs })).toThrow(/exists \(pass --force/);
    expect(() => checkOutput({ path: existing, kind: 'file', force: true, inputs })).not.toThrow();
    expect(() => checkOutput({ path: existing, kind: 'dir', force: true, inputs })).toThrow(
      /not a directory/,
    );
    const full = join(dir, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'f'), '');
    expect(() => checkOutput({ path: full, kind: 'dir', inputs })).toThrow(/exists \(pass --force/);
    expect(() => checkOutput({ path: full, kind: 'file', force: true, inputs })).toThrow(/is a directory/);
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    expect(() => checkOutput({ path: empty, kind: 'dir', inputs })).not.toThrow();
    // a link to a directory: the atomic write would replace the link, not fill the directory
    const toFull = join(dir, 'to-full');
    symlinkSync(full, toFull);
    expect(() => checkOutput({ path: toFull, kind: 'dir', force: true, inputs })).toThrow(
      /is a symbolic link to a directory .*give that directory itself/,
    );
  });

  it('says which parent is a file, and refuses a run directory that is a file', () => {
    expect(() => checkOutput({ path: join(data, 'x', 'y'), kind: 'dir', inputs: [] })).toThrow(
      new RegExp(`cannot be written: '${data}' is a file, not a directory`),
    );
    expect(() => checkOutput({ path: join(dir, 'n'.repeat(300)), kind: 'dir', inputs: [] })).toThrow(
      /name too long/,
    );
    const file = join(dir, 'run-file');
    writeFileSync(file, '');
    expect(() => checkRunDir(file, inputs)).toThrow(/is a file, not a directory/);
    expect(() => checkRunDir(join(model, 'run'), inputs)).toThrow(/--run-dir lies inside the model/);
  });
});
