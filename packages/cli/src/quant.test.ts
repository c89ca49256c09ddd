import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEV, expectJson, expectOneLineError, lineage, MODEL, SEP, TRAIN, tempDir } from './test-support.js';

const tmp = tempDir('lineage-quant-cli-');

/** `lineage eval` of 10 of the held-out dev stories on the js backend. */
async function evalPpl(model: string): Promise<number> {
  const r = await lineage([
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
  return expectJson(r).ppl as number;
}

/** Bytes of the block linears' tensors in a model.safetensors, from its header (the file, not the model). */
function decoderBytesInFile(dir: string): { bytes: number; total: number; fileSize: number } {
  const file = readFileSync(join(dir, 'model.safetensors'));
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { data_offsets?: [number, number] }
  >;
  let bytes = 0;
  let total = 0;
  for (const [name, t] of Object.entries(header)) {
    if (!t.data_offsets) continue;
    const size = t.data_offsets[1] - t.data_offsets[0];
    total += size;
    if (name.startsWith('model.layers.') && /_proj\./.test(name)) bytes += size;
  }
  return { bytes, total, fileSize: file.length - 8 - n };
}

describe('lineage compress --method rtn|ldlq', () => {
  it('quantizes, reports bits per parameter as stored in the file, reloads with identical perplexity, converts to dense', async () => {
    const out = join(tmp, 'ldlq2');
    const r = await lineage([
      'compress',
      MODEL,
      '--method',
      'ldlq',
      '--bits',
      '2',
      '--group-size',
      '64',
      '--hadamard',
      '--data',
      TRAIN,
      '--calib-samples',
      '16',
      '--out',
      out,
      '--backend',
      'js',
      '--json',
    ]);
    expectJson(r);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(cfg.lineage.method).toBe('ldlq');
    expect(Object.values(cfg.lineage.layers).every((l) => (l as { kind: string }).kind === 'quantized')).toBe(
      true,
    );

    const ins = expectJson(await lineage(['inspect', out, '--json']));
    const file = decoderBytesInFile(out);
    expect(file.fileSize).toBe(file.total);
    expect(ins.decoderLinears.bytes).toBe(file.bytes);
    expect(ins.bitsPerParam).toBeCloseTo((file.bytes * 8) / 226_560, 10);
    // 2-bit codes + an f16 scale per 64 weights (FFN down: groups 64, 64, 44) + one sign bit per input
    expect(ins.bitsPerParam).toBeGreaterThan(2.25);
    expect(ins.bitsPerParam).toBeLessThan(2.3);
    const text = await lineage(['inspect', out]);
    expect(text.stdout).toMatch(/decoder linears: 2\.2\d\d bits\/param/);
    expect(text.stdout).toMatch(/quantized 2b g64 had/);

    const rtn = join(tmp, 'rtn4');
    expectJson(
      await lineage([
        'compress',
        MODEL,
        '--method',
        'rtn',
        '--bits',
        '4',
        '--out',
        rtn,
        '--backend',
        'js',
        '--json',
      ]),
    );
    expect(expectJson(await lineage(['inspect', rtn, '--json'])).bitsPerParam).toBeLessThan(4.3);

    // reload = identical perplexity; convert --dense = the same model as plain f32 weights
    const ppl = await evalPpl(out);
    expect(await evalPpl(out)).toBe(ppl);
    const dense = join(tmp, 'dense');
    const c = await lineage(['convert', out, '--to', 'hf', '--dense', '--out', dense]);
    expect(c.code, c.stderr).toBe(0);
    const dcfg = JSON.parse(readFileSync(join(dense, 'config.json'), 'utf8'));
    expect(dcfg.lineage?.layers ?? {}).toEqual({});
    expect(await evalPpl(dense)).toBeCloseTo(ppl, 4);
  }, 300_000);

  it('--codebook e8p12: bits per parameter as stored, reload, convert --dense, inspect, and export refusal', async () => {
    const out = join(tmp, 'e8p');
    expectJson(
      await lineage([
        'compress',
        MODEL,
        '--method',
        'ldlq',
        '--bits',
        '2',
        '--codebook',
        'e8p12',
        '--hadamard',
        '--data',
        TRAIN,
        '--calib-samples',
        '16',
        '--out',
        out,
        '--backend',
        'js',
        '--json',
      ]),
    );
    const ins = expectJson(await lineage(['inspect', out, '--json']));
    const file = decoderBytesInFile(out);
    expect(file.fileSize).toBe(file.total);
    expect(ins.decoderLinears.bytes).toBe(file.bytes);
    expect(ins.bitsPerParam).toBeCloseTo((file.bytes * 8) / 226_560, 10);
    // u16 codes per 8 weights (172 padded to 176) + an f16 scale per row + one sign bit per input
    expect(ins.bitsPerParam).toBeGreaterThan(2.2);
    expect(ins.bitsPerParam).toBeLessThan(2.25);
    expect((await lineage(['inspect', out])).stdout).toMatch(/quantized 2b e8p12 had/);
    const ppl = await evalPpl(out);
    expect(await evalPpl(out)).toBe(ppl);
    const dense = join(tmp, 'e8p-dense');
    const c = await lineage(['convert', out, '--to', 'hf', '--dense', '--out', dense]);
    expect(c.code, c.stderr).toBe(0);
    expect(await evalPpl(dense)).toBeCloseTo(ppl, 4);
    const onnx = join(tmp, 'e8p-onnx');
    expectOneLineError(
      await lineage(['export', out, '--to', 'onnx', '--out', onnx]),
      /layer 'model\.layers\.0\.self_attn\.q_proj' \(quantized\): the E8P12 lattice codebook cannot be exported/,
    );
    expect(existsSync(onnx)).toBe(false);
    expectOneLineError(
      await lineage([
        'compress',
        MODEL,
        '--method',
        'ldlq',
        '--bits',
        '3',
        '--codebook',
        'e8p12',
        '--out',
        join(tmp, 'x'),
      ]),
      /ldlq: --bits 3: the codebook 'e8p12' stores 2 bits per weight: give 2/,
    );
  }, 300_000);

  it('bad input: bits outside {2, 3, 4, 8}, group size ≤ 0, no calibration for ldlq, stats of another model', async () => {
    const out = join(tmp, 'bad');
    const q = (...a: string[]) => lineage(['compress', MODEL, '--out', out, '--backend', 'js', ...a]);
    expectOneLineError(
      await q('--method', 'rtn', '--bits', '5'),
      /rtn: --bits must be one of 2, 3, 4, 8, got 5/,
    );
    expectOneLineError(
      await q('--method', 'ldlq', '--bits', '2', '--group-size', '0'),
      /ldlq: --group-size must be a positive whole number, got 0/,
    );
    expectOneLineError(
      await q('--method', 'ldlq', '--bits', '2'),
      /needs calibration statistics \(hessian\)/,
    );
    const other = join(tmp, 'other');
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
    const stats = join(tmp, 'other.stats.safetensors');
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
    expectOneLineError(await q('--method', 'ldlq', '--bits', '2', '--stats', stats), /another model/);
    expect(existsSync(out)).toBe(false);
  }, 300_000);
});
