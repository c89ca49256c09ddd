import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineage } from './test-support.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const REF_PPL = Number(
  /ppl=([\d.]+)/.exec(readFileSync(sharedPath('fixtures', 'ref-dev-ppl.txt'), 'utf8'))![1],
);
const SEP = '<|endoftext|>';

let tmp: string;
let hfDir: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'lineage-cli-'));
  hfDir = join(tmp, 'hf');
  const r = await lineage(['convert', MODEL, '--to', 'hf', '--out', hfDir]);
  expect(r.code, r.stderr).toBe(0);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function evalJson(model: string, extra: string[] = []) {
  const r = await lineage(['eval', model, '--data', DEV, '--doc-separator', SEP, '--json', ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { ppl: number; nll: number; tokens: number; params: number };
}

// The full 800-story evaluation is the slowest thing here (minutes on the single-threaded js backend,
// more while other suites share the cores): run each model once and share the result.
const FULL_EVAL_TIMEOUT = 900_000;
const fullDev = new Map<string, ReturnType<typeof evalJson>>();
function fullDevEval(model: string, backend?: string) {
  const key = `${model}|${backend ?? 'default'}`;
  if (!fullDev.has(key)) fullDev.set(key, evalJson(model, backend ? ['--backend', backend] : []));
  return fullDev.get(key)!;
}

describe('lineage eval / inspect / generate', () => {
  it.each(['js', 'tfjs', undefined])(
    'eval of stories260K on the dev set matches the reference perplexity within 0.1% (backend %s)',
    async (backend) => {
      const j = await fullDevEval(MODEL, backend);
      expect(Math.abs(j.ppl / REF_PPL - 1)).toBeLessThan(1e-3);
      expect(j.tokens).toBe(295679);
      expect(j.params).toBeGreaterThan(200_000);
      expect(typeof j.nll).toBe('number');
    },
    FULL_EVAL_TIMEOUT,
  );

  it('inspect --json reports params, bytes, layers and config', async () => {
    const r = await lineage(['inspect', MODEL, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.config.hidden_size).toBe(64);
    expect(j.config.num_key_value_heads).toBe(4);
    expect(j.layers).toHaveLength(35);
    // all weights f32: bytes = 4 · params
    expect(j.bytes).toBe(4 * j.params);
    expect(j.bitsPerParam).toBe(32);
    expect(j.layers[0].bitsPerParam).toBe(32);
    const fileFloats = (readFileSync(MODEL).length - 28) / 4;
    const freqCis = 2 * 512 * 4; // two seq_len × head_size/2 tables llama2.c keeps in the file
    expect(j.params).toBe(fileFloats - freqCis);
  });

  it('generate --json produces the greedy continuation', async () => {
    const r = await lineage([
      'generate',
      MODEL,
      '--prompt',
      'Once upon a time',
      '--max-tokens',
      '20',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.generatedTokens).toBe(20);
    expect(j.text.length).toBeGreaterThan(10);
    const again = JSON.parse(
      (await lineage(['generate', MODEL, '--prompt', 'Once upon a time', '--max-tokens', '20', '--json']))
        .stdout,
    );
    expect(again.ids).toEqual(j.ids);
  });

  it('sampling is seeded', async () => {
    const args = ['generate', MODEL, '--max-tokens', '30', '--temperature', '1', '--top-p', '0.9', '--json'];
    const a = JSON.parse((await lineage([...args, '--seed', '7'])).stdout);
    const b = JSON.parse((await lineage([...args, '--seed', '7'])).stdout);
    const c = JSON.parse((await lineage([...args, '--seed', '8'])).stdout);
    expect(a.ids).toEqual(b.ids);
    expect(a.ids).not.toEqual(c.ids);
  });

  it('every command has --help', async () => {
    for (const c of ['inspect', 'eval', 'generate', 'convert']) {
      const r = await lineage([c, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: lineage ${c}`);
    }
  });

  it('prints the backend choice on stderr', async () => {
    const r = await lineage([
      'eval',
      MODEL,
      '--data',
      DEV,
      '--doc-separator',
      SEP,
      '--limit',
      '2',
      '--backend',
      'js',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/backend: js \(cpu\)/);
    expect(r.stdout).toMatch(/^perplexity \d/);
    const d = await lineage(['eval', MODEL, '--data', DEV, '--doc-separator', SEP, '--limit', '2']);
    expect(d.stderr).toMatch(/backend: \w+ \(\w+\)/);
  });
});

describe('lineage convert', () => {
  it(
    'llama2.c → HF directory → eval gives the same perplexity to 1e-6',
    async () => {
      expect(readdirSync(hfDir).sort()).toEqual(
        [
          'config.json',
          'generation_config.json',
          'model.safetensors',
          'tokenizer.json',
          'tokenizer_config.json',
        ].sort(),
      );
      const a = await fullDevEval(MODEL, 'js');
      const b = await fullDevEval(hfDir, 'js');
      expect(Math.abs(b.ppl / a.ppl - 1)).toBeLessThan(1e-6);
      expect(b.tokens).toBe(a.tokens);
    },
    FULL_EVAL_TIMEOUT,
  );

  it('the model stored as bf16 safetensors loads and evaluates within 1%', async () => {
    const out = join(tmp, 'bf16');
    const r = await lineage(['convert', MODEL, '--to', 'hf', '--dtype', 'bf16', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    const [a, b] = await Promise.all([
      evalJson(MODEL, ['--limit', '200', '--backend', 'js']),
      evalJson(out, ['--limit', '200', '--backend', 'js']),
    ]);
    expect(b.tokens).toBe(a.tokens);
    expect(Math.abs(b.ppl / a.ppl - 1)).toBeLessThan(0.01);
  });

  it('HF → llama2.c gives back the same weights', async () => {
    const out = join(tmp, 'back', 'model.bin');
    const r = await lineage(['convert', hfDir, '--to', 'llama2c', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const orig = readFileSync(MODEL);
    const back = readFileSync(out);
    expect(back.length).toBe(orig.length);
    // Everything except llama2.c's unused freq_cis tables is bitwise identical.
    const header = 28;
    const dim = 64;
    const layers = 5;
    const hidden = 172;
    const kv = 32;
    const vocab = 512;
    const before =
      header +
      4 *
        (vocab * dim + layers * (dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hidden * dim) + dim);
    expect(back.subarray(0, before).equals(orig.subarray(0, before))).toBe(true);
    expect(existsSync(join(tmp, 'back', 'tok512.bin'))).toBe(true);
    const [a, b] = await Promise.all([
      evalJson(MODEL, ['--limit', '100', '--backend', 'js']),
      evalJson(out, ['--limit', '100', '--backend', 'js']),
    ]);
    expect(b.ppl).toBe(a.ppl);
  });

  it('refuses to overwrite without --force', async () => {
    const r = await lineage(['convert', MODEL, '--to', 'hf', '--out', hfDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--force|exists/);
  });
});

/** Rewrites a safetensors header (keeping the data section) so it lies. */
function tamperSafetensors(
  file: string,
  edit: (h: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>) => void,
) {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, Buffer.from(json), buf.subarray(8 + n)]));
}

describe('bad input: one line naming the file and the problem, exit 1, no partial output', () => {
  function copyHf(name: string): string {
    const d = join(tmp, name);
    cpSync(hfDir, d, { recursive: true });
    return d;
  }

  async function expectBad(args: string[], file: string, problem: RegExp) {
    const out = join(tmp, `out-${Math.random().toString(36).slice(2)}`);
    const r = await lineage([...args, ...(args[0] === 'convert' ? ['--out', out] : [])]);
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stderr.trim().split('\n');
    const last = lines[lines.length - 1]!;
    expect(last).toContain(file);
    expect(last).toMatch(problem);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(tmp).filter((f) => f.includes('.tmp'))).toEqual([]);
  }

  it('a truncated .bin', async () => {
    const f = join(tmp, 'trunc.bin');
    writeFileSync(f, readFileSync(MODEL).subarray(0, 500_000));
    cpSync(sharedPath('models', 'stories260K', 'tok512.bin'), join(tmp, 'tok512.bin'));
    await expectBad(['convert', f, '--to', 'hf'], f, /truncated/);
    await expectBad(['eval', f, '--data', DEV], f, /truncated/);
  });

  it('a safetensors header lying about offsets', async () => {
    const d = copyHf('lie-offsets');
    tamperSafetensors(join(d, 'model.safetensors'), (h) => {
      h['model.norm.weight']!.data_offsets[1] += 4_000_000;
    });
    await expectBad(['convert', d, '--to', 'hf'], 'model.safetensors', /model\.norm\.weight/);
  });

  it('a safetensors header lying about dtype', async () => {
    const d = copyHf('lie-dtype');
    tamperSafetensors(join(d, 'model.safetensors'), (h) => {
      h['model.norm.weight']!.dtype = 'F16';
    });
    await expectBad(['eval', d, '--data', DEV], 'model.safetensors', /model\.norm\.weight/);
  });

  it('a safetensors header lying about shape', async () => {
    const d = copyHf('lie-shape');
    tamperSafetensors(join(d, 'model.safetensors'), (h) => {
      h['model.norm.weight']!.shape = [128];
    });
    await expectBad(['inspect', d], 'model.safetensors', /model\.norm\.weight/);
  });

  it('a header length larger than the file', async () => {
    const d = copyHf('lie-length');
    const f = join(d, 'model.safetensors');
    const buf = readFileSync(f);
    buf.writeBigUInt64LE(BigInt(buf.length * 2), 0);
    writeFileSync(f, buf);
    await expectBad(['inspect', d], 'model.safetensors', /header/);
  });

  it('a config missing required fields', async () => {
    const d = copyHf('no-field');
    const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    delete c.hidden_size;
    writeFileSync(join(d, 'config.json'), JSON.stringify(c));
    await expectBad(['convert', d, '--to', 'hf'], 'config.json', /hidden_size/);
  });

  it('an unknown architecture', async () => {
    const d = copyHf('unknown-arch');
    const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    c.model_type = 'gpt2';
    c.architectures = ['GPT2LMHeadModel'];
    writeFileSync(join(d, 'config.json'), JSON.stringify(c));
    await expectBad(['inspect', d], 'config.json', /unknown architecture/);
  });

  it('a tokenizer whose vocabulary does not match the model', async () => {
    const tok = sharedPath('models', 'llama2-tokenizer', 'tokenizer.bin');
    await expectBad(
      ['eval', MODEL, '--data', DEV, '--tokenizer', tok],
      'tokenizer.bin',
      /32000.*512|512.*32000/,
    );
  });

  it('a data file that is empty', async () => {
    const f = join(tmp, 'empty.txt');
    writeFileSync(f, '');
    await expectBad(['eval', MODEL, '--data', f], f, /empty/);
  });

  it('a data file that is not UTF-8', async () => {
    const f = join(tmp, 'latin1.txt');
    writeFileSync(f, Buffer.from([0x48, 0x69, 0x20, 0xe9, 0x74, 0xe9, 0x0a]));
    await expectBad(['eval', MODEL, '--data', f], f, /UTF-8/);
  });

  it('a model path that does not exist, and a missing default model', async () => {
    await expectBad(['inspect', join(tmp, 'nope.bin')], 'nope.bin', /no such file/);
    const r = await lineage(['inspect'], { LINEAGE_SHARED: join(tmp, 'no-shared') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no model given/);
  });

  it('--debug shows the stack trace', async () => {
    const r = await lineage(['--debug', 'inspect', join(tmp, 'nope.bin')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\n\s+at /);
  });
});
