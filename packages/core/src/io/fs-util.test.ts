import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../checkpoint/load-model.js';
import { TextDataset } from '../data/text-dataset.js';
import { loadTokenizer } from '../tokenizer/load-tokenizer.js';
import { LineageError } from '../util/errors.js';
import { readTextFile } from '../util/text-file.js';
import { openRegularFile, readRegularFile, readRegularFileSync } from './fs-util.js';
import { openLlama2c } from './llama2c.js';
import { SafetensorsFile } from './safetensors.js';

const posix = process.platform !== 'win32';
let dir: string;
let fifo: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'lineage-fsu-'));
  fifo = join(dir, 'pipe');
  if (posix) execFileSync('mkfifo', [fifo]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function refusal(p: Promise<unknown> | (() => unknown)): Promise<string> {
  const err = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LineageError);
  const msg = (err as Error).message;
  expect(msg.split('\n')).toHaveLength(1);
  return msg;
}

// Each of these hung forever before (open of a FIFO blocks until a writer comes); the test timeout is short.
describe.runIf(posix)('reads of a FIFO are refused at once, never waited on', () => {
  it('by the file helpers', { timeout: 5000 }, async () => {
    expect(await refusal(openRegularFile(fifo))).toBe(`${fifo}: is a FIFO (named pipe), not a regular file`);
    expect(await refusal(readRegularFile(fifo))).toContain('FIFO');
    expect(await refusal(() => readRegularFileSync(fifo))).toContain('FIFO');
  });

  it('as a model, model.safetensors, data, tokenizer and config.json', { timeout: 5000 }, async () => {
    expect(await refusal(openLlama2c(fifo))).toContain(`${fifo}: is a FIFO`);
    expect(await refusal(loadModel(fifo))).toContain(`${fifo}: is a FIFO`);
    expect(await refusal(SafetensorsFile.open(fifo))).toContain(`${fifo}: is a FIFO`);
    expect(await refusal(readTextFile(fifo))).toContain(`${fifo}: is a FIFO`);
    expect(await refusal(TextDataset.open(fifo))).toContain(`${fifo}: is a FIFO`);
    const tok = join(dir, 'tok.bin');
    execFileSync('mkfifo', [tok]);
    expect(await refusal(() => loadTokenizer(tok))).toContain(`${tok}: is a FIFO`);
    const hf = join(dir, 'hf');
    execFileSync('mkdir', [hf]);
    execFileSync('mkfifo', [join(hf, 'config.json')]);
    expect(await refusal(loadModel(hf))).toContain(`${join(hf, 'config.json')}: is a FIFO`);
  });
});

describe.runIf(posix)('endless and oversized inputs', () => {
  it('/dev/zero as data is refused before reading a byte', { timeout: 5000 }, async () => {
    const before = process.memoryUsage().rss;
    expect(await refusal(TextDataset.open('/dev/zero'))).toBe(
      '/dev/zero: is a character device, not a regular file',
    );
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('data over the size limit is refused, naming the limit and the option', async () => {
    const p = join(dir, 'big.txt');
    writeFileSync(p, 'x'.repeat(1000));
    expect(await refusal(readTextFile(p, { maxBytes: 999 }))).toBe(
      `${p}: file is 1000 bytes, over the limit of 999 bytes (raise it with --max-data-bytes, up to the largest text a string can hold)`,
    );
    expect(await readTextFile(p, { maxBytes: 1000 })).toHaveLength(1000);
    const d = join(dir, 'corpus');
    execFileSync('mkdir', [d]);
    writeFileSync(join(d, 'a.txt'), 'x'.repeat(600));
    writeFileSync(join(d, 'b.txt'), 'y'.repeat(600));
    expect(await refusal(TextDataset.open(d, { maxBytes: 1000 }))).toContain(
      'data files hold 1200 bytes, over the limit of 1000 bytes',
    );
    expect(await refusal(() => readRegularFileSync(p, 10))).toContain('over the limit of 10 bytes');
  });
});
