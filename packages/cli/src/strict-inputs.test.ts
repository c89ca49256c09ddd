/*
 * Bad inputs of #17 part B (silently wrong results, endless inputs, lax readers), each through the CLI:
 * exit 1, one line naming the file and the problem, no stack trace, nothing written, inputs unchanged.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostTensor, SafetensorsFile, writeSafetensors } from '@lineage/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { BIN, DEV, lineage, MODEL, type Run, SEP, tempDir } from './test-support.js';

const tmp = tempDir('lineage-strict-');
const posix = process.platform !== 'win32';
const hfDir = join(tmp, 'hf');
const Q = 'model.layers.0.self_attn.q_proj.weight';

beforeAll(async () => {
  const r = await lineage(['convert', MODEL, '--to', 'hf', '--out', hfDir]);
  expect(r.code, r.stderr).toBe(0);
}, 60_000);

function hashTree(p: string): string {
  const h = createHash('sha256');
  if (statSync(p).isFile()) return h.update(readFileSync(p)).digest('hex');
  const walk = (q: string) => {
    for (const n of readdirSync(q, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const f = join(q, n.name);
      if (n.isDirectory()) walk(f);
      else if (n.isFile()) h.update(n.name).update(readFileSync(f));
    }
  };
  walk(p);
  return h.digest('hex');
}

/** A copy of the converted stories260K directory, for one case to break. */
function copyModel(name: string): string {
  const d = join(tmp, name);
  cpSync(hfDir, d, { recursive: true });
  return d;
}

/** Rewrites `dir`'s model.safetensors through core, changing tensors with `edit`. */
async function editTensors(dir: string, edit: (t: Map<string, HostTensor>) => void): Promise<string> {
  const file = join(dir, 'model.safetensors');
  const f = await SafetensorsFile.open(file);
  const tensors = new Map<string, HostTensor>();
  for (const n of f.names()) tensors.set(n, await f.read(n));
  await f.close();
  edit(tensors);
  await writeSafetensors(file, tensors, { format: 'pt' });
  return file;
}

/** `dir`'s model.safetensors as its header text and data section, and a writer for edited versions. */
function rawSafetensors(dir: string) {
  const file = join(dir, 'model.safetensors');
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = bytes
    .subarray(8, 8 + n)
    .toString('utf8')
    .trimEnd();
  const data = bytes.subarray(8 + n);
  const write = (text: string, body: Buffer) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
    writeFileSync(file, Buffer.concat([len, Buffer.from(text), body]));
  };
  return { file, header, data, write };
}

/** Runs the CLI with `input` on stdin; kills it after `timeoutMs` (a hang is a failure, not a stuck suite). */
function lineageStdin(
  args: string[],
  input: string | Buffer,
  timeoutMs = 20_000,
): Promise<Run & { ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn('node', [BIN, ...args]);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 137, stdout, stderr, ms: Date.now() - t0 });
    });
    p.stdin.on('error', () => {});
    p.stdin.end(input);
  });
}

/** Exit 1, exactly one `lineage: …` line on stderr (besides backend/model notes) naming `file`, matching `pattern`. */
function expectRefusal(r: Run, file: string, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr
    .trim()
    .split('\n')
    .filter((l) => !/^(teacher )?backend:|^model:|^data:/.test(l));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toContain(file);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at |internal error/);
}

/** Runs a case that must be refused, checking the inputs are left byte-identical. */
async function refused(args: string[], inputs: string[], file: string, pattern: RegExp): Promise<void> {
  const before = inputs.map((p) => hashTree(p));
  const t0 = Date.now();
  expectRefusal(await lineage(args), file, pattern);
  expect(Date.now() - t0).toBeLessThan(30_000);
  expect(inputs.map((p) => hashTree(p))).toEqual(before);
}

describe('class 2: silently wrong results', () => {
  it('NaN weights: eval, generate and compress refuse the model naming the file and tensor', async () => {
    const d = copyModel('nan');
    const file = await editTensors(d, (t) => {
      const w = Float32Array.from(t.get(Q)!.toF32());
      w[5] = Number.NaN;
      t.set(Q, new HostTensor('f32', t.get(Q)!.shape, w));
    });
    const msg = new RegExp(
      `tensor '${Q}' holds a non-finite value \\(NaN at \\[0, 5\\]\\); pass --allow-nonfinite`,
    );
    await refused(['eval', d, '--data', DEV, '--limit', '2', '--json'], [d], file, msg);
    await refused(['generate', d, '--max-tokens', '5'], [d], file, msg);
    await refused(['inspect', d], [d], file, msg);
    const out = join(tmp, 'nan-out');
    await refused(['compress', d, '--method', 'svd', '--rank', '8', '--out', out], [d], file, msg);
    expect(existsSync(out)).toBe(false);
    // --allow-nonfinite loads it; generate then stops on the first NaN logit instead of printing token 0 forever
    const r = await lineage(['--allow-nonfinite', 'generate', d, '--max-tokens', '50']);
    expectRefusal(r, 'NaN logit', /the model produced a NaN logit \(token \d+\) at generation step 1/);
    // and eval reports no "perplexity NaN" with success
    const e = await lineage(['--allow-nonfinite', 'eval', d, '--data', DEV, '--limit', '2', '--json']);
    expectRefusal(e, 'perplexity is NaN', /perplexity is NaN: the model's outputs are not finite/);
    // the flag is accepted after the command too
    const r2 = await lineage(['generate', d, '--max-tokens', '50', '--allow-nonfinite']);
    expect(r2.stderr).toMatch(/NaN logit/);
  }, 120_000);

  it('integer-typed weights where float weights are expected', async () => {
    const d = copyModel('int');
    const file = await editTensors(d, (t) => {
      const q = t.get(Q)!;
      t.set(Q, HostTensor.fromF32(new Float32Array(q.size).fill(1), q.shape, 'i32'));
    });
    await refused(
      ['eval', d, '--data', DEV, '--limit', '2'],
      [d],
      file,
      new RegExp(`tensor '${Q}' is i32, but a dense layer's weight must be a float type`),
    );
  });

  it('a safetensors header listing the same tensor twice', async () => {
    const d = copyModel('dup');
    const { file, header, data, write } = rawSafetensors(d);
    const q = JSON.parse(header)[Q];
    const n = q.data_offsets[1] - q.data_offsets[0];
    // a second entry for q_proj pointing at zeros appended to the file: JSON.parse would use it
    const dup = JSON.stringify({ ...q, data_offsets: [data.length, data.length + n] });
    write(`${header.slice(0, -1)},${JSON.stringify(Q)}:${dup}}`, Buffer.concat([data, Buffer.alloc(n)]));
    await refused(
      ['eval', d, '--data', DEV, '--limit', '2'],
      [d],
      file,
      new RegExp(`header lists tensor '${Q}' twice`),
    );
  });

  it('convert --dtype f16 of weights beyond its range: refused, or clamped with a warning under --clamp', async () => {
    const d = copyModel('big');
    await editTensors(d, (t) => {
      const w = Float32Array.from(t.get(Q)!.toF32());
      w[0] = 1e6;
      t.set(Q, new HostTensor('f32', t.get(Q)!.shape, w));
    });
    const out = join(tmp, 'big-f16');
    await refused(
      ['convert', d, '--to', 'hf', '--dtype', 'f16', '--out', out],
      [d],
      out,
      new RegExp(
        `tensor '${Q}' has values up to 1\\.00000e\\+6 in magnitude, beyond the largest f16 \\(65504\\).*--clamp`,
      ),
    );
    expect(existsSync(out)).toBe(false);
    const r = await lineage(['convert', d, '--to', 'hf', '--dtype', 'f16', '--out', out, '--clamp']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `warning: clamped 1 value(s) of tensor '${Q}' (up to 1.00000e+6 in magnitude) to ±65504 for f16`,
    );
    expect((await lineage(['inspect', out])).code).toBe(0);
  });
});

describe.runIf(posix)('class 3: endless inputs', () => {
  it('a FIFO as the model, as model.safetensors, as config.json and as data: refused at once', async () => {
    const fifo = join(tmp, 'model.fifo');
    execFileSync('mkfifo', [fifo]);
    await refused(['inspect', fifo], [], fifo, /is a FIFO \(named pipe\), not a regular file/);
    await refused(['eval', MODEL, '--data', fifo], [], fifo, /is a FIFO/);
    const d = copyModel('fifo-weights');
    const st = join(d, 'model.safetensors');
    execFileSync('rm', [st]);
    execFileSync('mkfifo', [st]);
    await refused(['eval', d, '--data', DEV, '--limit', '2'], [], st, /is a FIFO/);
    const c = copyModel('fifo-config');
    const cfg = join(c, 'config.json');
    execFileSync('rm', [cfg]);
    execFileSync('mkfifo', [cfg]);
    await refused(['inspect', c], [], cfg, /is a FIFO/);
    const tok = join(tmp, 'tok.fifo.json');
    execFileSync('mkfifo', [tok]);
    await refused(['eval', MODEL, '--tokenizer', tok, '--data', DEV], [], tok, /is a FIFO/);
  }, 60_000);

  it('/dev/zero as data: refused before reading, memory bounded', async () => {
    await refused(
      ['eval', MODEL, '--data', '/dev/zero'],
      [],
      '/dev/zero',
      /is a character device, not a regular file/,
    );
    await refused(
      [
        'calibrate',
        MODEL,
        '--data',
        '/dev/zero',
        '--samples',
        '4',
        '--seq-len',
        '32',
        '--out',
        join(tmp, 's.safetensors'),
      ],
      [],
      '/dev/zero',
      /character device/,
    );
  });

  it('data over --max-data-bytes is refused naming the limit', async () => {
    await refused(
      ['--max-data-bytes', '1000', 'eval', MODEL, '--data', DEV],
      [],
      DEV,
      /over the limit of 1000 bytes \(raise it with --max-data-bytes/,
    );
  });

  it("stdin as data with '-': read to its end, and an endless stream stops at the limit", async () => {
    const text = readFileSync(DEV, 'utf8').slice(0, 4000);
    const ok = await lineageStdin(['eval', MODEL, '--data', '-', '--doc-separator', SEP, '--json'], text);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ data: '-' });
    const big = await lineageStdin(
      ['eval', MODEL, '--data', '-', '--max-data-bytes', '100000'],
      Buffer.alloc(4 << 20, 0x61),
    );
    expectRefusal(big, '<stdin>', /input is over the limit of 100000 bytes/);
    expect(big.ms).toBeLessThan(20_000);
  }, 60_000);
});

describe('class 4: lax readers', () => {
  it('safetensors with bytes after the last tensor, or a gap between tensors', async () => {
    const t = copyModel('tail');
    const tail = rawSafetensors(t);
    tail.write(tail.header, Buffer.concat([tail.data, Buffer.alloc(16)]));
    await refused(
      ['eval', t, '--data', DEV, '--limit', '2'],
      [t],
      tail.file,
      /16 bytes after the last tensor/,
    );

    const g = copyModel('gap');
    const gap = rawSafetensors(g);
    const h = JSON.parse(gap.header) as Record<string, { data_offsets: [number, number] }>;
    const [lastName, last] = Object.entries(h)
      .filter(([k]) => k !== '__metadata__')
      .sort((a, b) => b[1].data_offsets[0] - a[1].data_offsets[0])[0]!;
    const [b, e] = last.data_offsets;
    last.data_offsets = [b + 8, e + 8];
    gap.write(
      JSON.stringify(h),
      Buffer.concat([gap.data.subarray(0, b), Buffer.alloc(8), gap.data.subarray(b)]),
    );
    await refused(
      ['eval', g, '--data', DEV, '--limit', '2'],
      [g],
      gap.file,
      new RegExp(
        `tensor '${lastName.replace(/\./g, '\\.')}' starts at byte ${b + 8} of the data, leaving a gap of 8 bytes`,
      ),
    );
  });

  it('a statistics file whose Gram has the right element count but the wrong shape', async () => {
    const stats = join(tmp, 'stats.safetensors');
    const c = await lineage([
      'calibrate',
      MODEL,
      '--data',
      DEV,
      '--samples',
      '4',
      '--seq-len',
      '32',
      '--stats',
      'hessian',
      '--out',
      stats,
    ]);
    expect(c.code, c.stderr).toBe(0);
    const f = await SafetensorsFile.open(stats);
    const tensors = new Map<string, HostTensor>();
    for (const n of f.names()) tensors.set(n, await f.read(n));
    const metadata = { ...f.metadata };
    await f.close();
    const name = 'model.layers.0.mlp.down_proj.hessian';
    const h = tensors.get(name)!; // [172, 172]
    tensors.set(name, h.reshape([86, 344]));
    await writeSafetensors(stats, tensors, metadata);
    const out = join(tmp, 'gram-out');
    await refused(
      [
        'compress',
        MODEL,
        '--method',
        'ldlq',
        '--bits',
        '4',
        '--stats',
        stats,
        '--out',
        out,
        '--backend',
        'js',
      ],
      [stats],
      stats,
      new RegExp(
        `statistic '${name.replace(/\./g, '\\.')}' has shape \\[86,344\\], but a Gram must be square`,
      ),
    );
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it('config.json listing a key twice (JSON.parse would keep the last)', async () => {
    const d = copyModel('cfg-dup');
    const cfg = join(d, 'config.json');
    const text = readFileSync(cfg, 'utf8').trimEnd();
    writeFileSync(cfg, `${text.slice(0, -1)},"hidden_size":32}`);
    await refused(['inspect', d], [d], cfg, /the key 'hidden_size' appears twice/);
  });

  it('config.json with bos_token_id or eos_token_id outside the vocabulary, or heads not dividing hidden', async () => {
    for (const [field, value, pattern] of [
      ['bos_token_id', 512, /bos_token_id 512 is outside the vocabulary \(vocab_size 512\)/],
      ['eos_token_id', 100000, /eos_token_id 100000 is outside the vocabulary/],
      ['num_attention_heads', 12, /hidden_size 64 is not divisible by num_attention_heads 12/],
      ['num_key_value_heads', 3, /num_attention_heads 8 is not a multiple of num_key_value_heads 3/],
      ['vocab_size', 0, /vocab_size must be a positive integer, got 0/],
    ] as const) {
      const d = copyModel(`cfg-${field}`);
      const cfg = join(d, 'config.json');
      const j = JSON.parse(readFileSync(cfg, 'utf8'));
      j[field] = value;
      if (field === 'num_attention_heads' || field === 'num_key_value_heads') delete j.head_dim;
      writeFileSync(cfg, JSON.stringify(j));
      await refused(['inspect', d], [d], cfg, pattern);
    }
  });
});
