import { existsSync, promises as fsp, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LineageError } from '../util/errors.js';
import { writeDirAtomic, writeFileAtomic } from './atomic.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lineage-atomic-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('writes bytes, strings and streamed content', async () => {
    await writeFileAtomic(join(dir, 'a.bin'), Uint8Array.of(1, 2, 3));
    await writeFileAtomic(join(dir, 'b.txt'), 'héllo');
    await writeFileAtomic(join(dir, 'c.bin'), async (sink) => {
      await sink.write(Uint8Array.of(7, 8));
      await sink.write(new Uint8Array(0));
      await sink.write(Uint8Array.of(9));
      expect(sink.bytesWritten).toBe(3);
    });
    expect([...readFileSync(join(dir, 'a.bin'))]).toEqual([1, 2, 3]);
    expect(readFileSync(join(dir, 'b.txt'), 'utf8')).toBe('héllo');
    expect([...readFileSync(join(dir, 'c.bin'))]).toEqual([7, 8, 9]);
    expect(readdirSync(dir).sort()).toEqual(['a.bin', 'b.txt', 'c.bin']);
  });

  it('leaves neither the file nor a temp file when the writer fails', async () => {
    await expect(
      writeFileAtomic(join(dir, 'out.bin'), async (sink) => {
        await sink.write(new Uint8Array(1000));
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('names the destination when it cannot be created', async () => {
    const p = join(dir, 'no-such-dir', 'out.bin');
    const err = await writeFileAtomic(p, 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LineageError);
    expect((err as Error).message).toBe(`${p}: cannot create: ENOENT`);
  });

  it('keeps the previous content when a rewrite fails', async () => {
    const p = join(dir, 'keep.txt');
    writeFileSync(p, 'old');
    await expect(
      writeFileAtomic(p, async (sink) => {
        await sink.write(new TextEncoder().encode('new but partial'));
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(readFileSync(p, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['keep.txt']);
    await writeFileAtomic(p, 'new');
    expect(readFileSync(p, 'utf8')).toBe('new');
  });
});

describe('writeDirAtomic', () => {
  it('builds a new directory and returns the builder result', async () => {
    const out = join(dir, 'nested', 'model');
    const r = await writeDirAtomic(out, async (tmp) => {
      expect(tmp).not.toBe(out);
      writeFileSync(join(tmp, 'x.txt'), 'x');
      return 42;
    });
    expect(r).toBe(42);
    expect(readdirSync(out)).toEqual(['x.txt']);
    expect(readdirSync(join(dir, 'nested'))).toEqual(['model']);
  });

  it('fills an existing empty directory', async () => {
    const out = join(dir, 'model');
    await fsp.mkdir(out);
    await writeDirAtomic(out, async (tmp) => writeFileSync(join(tmp, 'x.txt'), 'x'));
    expect(readdirSync(out)).toEqual(['x.txt']);
  });

  it('refuses a non-empty directory without overwrite, before building anything', async () => {
    const out = join(dir, 'model');
    await fsp.mkdir(out);
    writeFileSync(join(out, 'old.txt'), 'old');
    let built = false;
    const err = await writeDirAtomic(out, async () => {
      built = true;
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LineageError);
    expect((err as Error).message).not.toContain('\n');
    expect((err as Error).message).toContain(out);
    expect((err as Error).message).toContain('not empty');
    expect(built).toBe(false);
    expect(readdirSync(out)).toEqual(['old.txt']);
    expect(readdirSync(dir)).toEqual(['model']);
  });

  it('replaces a non-empty directory with overwrite', async () => {
    const out = join(dir, 'model');
    await fsp.mkdir(out);
    writeFileSync(join(out, 'old.txt'), 'old');
    await writeDirAtomic(out, async (tmp) => writeFileSync(join(tmp, 'new.txt'), 'new'), { overwrite: true });
    expect(readdirSync(out)).toEqual(['new.txt']);
    expect(readdirSync(dir)).toEqual(['model']);
  });

  it('leaves nothing behind when the build fails, and keeps an existing directory', async () => {
    const out = join(dir, 'model');
    await expect(
      writeDirAtomic(out, async (tmp) => {
        writeFileSync(join(tmp, 'half.txt'), 'half');
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(readdirSync(dir)).toEqual([]);

    await fsp.mkdir(out);
    writeFileSync(join(out, 'old.txt'), 'old');
    await expect(
      writeDirAtomic(
        out,
        async () => {
          throw new Error('boom');
        },
        { overwrite: true },
      ),
    ).rejects.toThrow('boom');
    expect(readdirSync(dir)).toEqual(['model']);
    expect(readdirSync(out)).toEqual(['old.txt']);
  });

  it('refuses a destination that is a file', async () => {
    const out = join(dir, 'file');
    writeFileSync(out, 'x');
    await expect(writeDirAtomic(out, async () => {}, { overwrite: true })).rejects.toBeInstanceOf(
      LineageError,
    );
    expect(existsSync(out)).toBe(true);
    expect(readdirSync(dir)).toEqual(['file']);
  });
});
