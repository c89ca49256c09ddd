/* Helpers shared by the CLI's tests (not part of the package's API): run the built binary, check errors. */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type LlamaModel, loadModel } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, expect } from 'vitest';

export const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'bin.js');

/** The shared fixtures: stories260K, TinyStories training head and dev split, and its document separator. */
export const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
export const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
export const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
export const SEP = '<|endoftext|>';

/** A fresh temporary directory named `prefix…`, removed after the file's tests (call at a file's top level). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/bin.js …args` and resolves with its exit code and output (never rejects). */
export function lineage(args: string[], env: Record<string, string> = {}): Promise<Run> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build the CLI first (pnpm build)`);
  return new Promise((resolve) => {
    execFile(
      'node',
      [BIN, ...args],
      { env: { ...process.env, ...env }, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** Exit 0 (stderr shown otherwise); returns stdout parsed as JSON. */
export function expectJson(r: Run): ReturnType<typeof JSON.parse> {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** Exit 1 and, besides the informational `backend:`/`model:` lines, exactly one error line matching `pattern`. */
export function expectOneLineError(r: Run, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr
    .trim()
    .split('\n')
    .filter((l) => !/^(teacher )?backend:|^model:|^data:/.test(l));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

// ---- the compress → inspect → eval harness of the compress tests (compress, quant, caldera, basis) ----------

/** `lineage eval <model>` on the first 10 dev stories (documents protocol, js backend, `--json`). */
export function evalFirst10(model: string): Promise<Run> {
  return lineage([
    'eval',
    model,
    '--data',
    DEV,
    '--doc-separator',
    SEP,
    '--limit',
    '10',
    '--backend',
    'js',
    '--json',
  ]);
}

/** The perplexity `evalFirst10` prints (exit 0 checked). */
export async function pplFirst10(model: string): Promise<number> {
  return expectJson(await evalFirst10(model)).ppl as number;
}

/** `lineage compress MODEL …args --out <out> --backend js --json`: exit 0 checked, its JSON returned. */
export async function compressJson(out: string, ...args: string[]): Promise<ReturnType<typeof JSON.parse>> {
  return expectJson(await lineage(['compress', MODEL, ...args, '--out', out, '--backend', 'js', '--json']));
}

/** A model directory's `config.json`. */
export function readConfig(dir: string): ReturnType<typeof JSON.parse> {
  return JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
}

/** `lineage convert <model> --to <to> --dense --out <out>`, exit 0 checked; returns `out`. */
export async function convertDense(model: string, to: 'hf' | 'llama2c', out: string): Promise<string> {
  const c = await lineage(['convert', model, '--to', to, '--dense', '--out', out]);
  expect(c.code, c.stderr).toBe(0);
  return out;
}

/**
 * The reloaded model (returned) counts honestly: its params are the stored tensors' elements, which are `params` (the
 * count `compress --json` reported). The test file registers the model's layer kinds (e.g. `@lineage/svd`).
 */
export async function expectStoredParams(dir: string, params: number): Promise<LlamaModel> {
  const { model } = await loadModel(dir);
  let stored = 0;
  for (const t of model.stateDict().values()) stored += t.size;
  expect(model.stats().params).toBe(stored);
  expect(stored).toBe(params);
  return model;
}

/**
 * Hessian statistics of another model (a 2-layer init shaped like stories260K's tokenizer), written to
 * `<dir>/<name>`: what `--stats` of the wrong model is refused with.
 */
export async function statsOfAnotherModel(dir: string, name: string): Promise<string> {
  const other = join(dir, 'other');
  const init = await lineage([
    'init',
    '--like',
    MODEL,
    '--dim',
    '32',
    '--layers',
    '2',
    '--heads',
    '4',
    '--hidden',
    '64',
    '--out',
    other,
  ]);
  expect(init.code, init.stderr).toBe(0);
  const stats = join(dir, name);
  const c = await lineage([
    'calibrate',
    other,
    '--data',
    TRAIN,
    '--samples',
    '4',
    '--seq-len',
    '32',
    '--stats',
    'hessian',
    '--out',
    stats,
    '--backend',
    'js',
  ]);
  expect(c.code, c.stderr).toBe(0);
  return stats;
}

type SafetensorsHeader = Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;

/**
 * A copy of the Hugging Face directory `src` at `dst` with its vocabulary padded as Qwen2 and many
 * fine-tunes pad theirs: `rows` more rows in the f32 embedding (and untied head), vocab_size raised, the
 * tokenizer unchanged. Row r's values are `fill(r, column)`. Negative `rows` cut the vocabulary instead
 * (a tokenizer then larger than the model).
 */
export function padVocab(
  src: string,
  dst: string,
  rows: number,
  fill: (row: number, col: number) => number = () => 0,
): void {
  cpSync(src, dst, { recursive: true });
  const file = join(dst, 'model.safetensors');
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const { __metadata__: meta, ...header } = JSON.parse(
    b.subarray(8, 8 + n).toString('utf8'),
  ) as SafetensorsHeader & {
    __metadata__?: Record<string, string>;
  };
  const data = b.subarray(8 + n);
  const parts: Buffer[] = [];
  const out: Record<string, unknown> = meta ? { __metadata__: meta } : {};
  let offset = 0;
  const names = Object.keys(header).sort((x, y) => header[x]!.data_offsets[0] - header[y]!.data_offsets[0]);
  for (const name of names) {
    const t = header[name]!;
    let bytes = Buffer.from(data.subarray(t.data_offsets[0], t.data_offsets[1]));
    let shape = t.shape;
    if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') {
      if (t.dtype !== 'F32') throw new Error(`padVocab: ${name} is ${t.dtype}, not F32`);
      const [v, d] = t.shape as [number, number];
      shape = [v + rows, d];
      if (rows < 0) bytes = bytes.subarray(0, (v + rows) * d * 4);
      else {
        const extra = Buffer.alloc(rows * d * 4);
        for (let r = 0; r < rows; r++)
          for (let c = 0; c < d; c++) extra.writeFloatLE(fill(r, c), (r * d + c) * 4);
        bytes = Buffer.concat([bytes, extra]);
      }
    }
    out[name] = { dtype: t.dtype, shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let h = Buffer.from(JSON.stringify(out));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(file, Buffer.concat([len, h, ...parts]));
  const configFile = join(dst, 'config.json');
  const config = JSON.parse(readFileSync(configFile, 'utf8'));
  config.vocab_size += rows;
  writeFileSync(configFile, JSON.stringify(config, null, 2));
}
