import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  compressJson,
  convertDense,
  expectJson,
  expectOneLineError,
  lineage,
  MODEL,
  pplFirst10,
  readConfig,
  statsOfAnotherModel,
  TRAIN,
  tempDir,
} from './test-support.js';

const tmp = tempDir('lineage-quant-cli-');

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

/** `inspect --json`'s bits per parameter, checked against the bytes the decoder's linears take in the file. */
async function bitsAsStored(out: string): Promise<number> {
  const ins = expectJson(await lineage(['inspect', out, '--json']));
  const file = decoderBytesInFile(out);
  expect(file.fileSize).toBe(file.total);
  expect(ins.decoderLinears.bytes).toBe(file.bytes);
  expect(ins.bitsPerParam).toBeCloseTo((file.bytes * 8) / 226_560, 10);
  return ins.bitsPerParam;
}

/** Reload = identical perplexity; `convert --dense` (to `dense`) = the same model as plain f32 weights. */
async function expectReloadAndDense(out: string, dense: string): Promise<void> {
  const ppl = await pplFirst10(out);
  expect(await pplFirst10(out)).toBe(ppl);
  await convertDense(out, 'hf', dense);
  expect(readConfig(dense).lineage?.layers ?? {}).toEqual({});
  expect(await pplFirst10(dense)).toBeCloseTo(ppl, 4);
}

describe('lineage compress --method rtn|ldlq', () => {
  it('quantizes, reports bits per parameter as stored in the file, reloads with identical perplexity, converts to dense', async () => {
    const out = join(tmp, 'ldlq2');
    await compressJson(
      out,
      ...['--method', 'ldlq', '--bits', '2', '--group-size', '64', '--hadamard'],
      ...['--data', TRAIN, '--calib-samples', '16'],
    );
    const cfg = readConfig(out);
    expect(cfg.lineage.method).toBe('ldlq');
    expect(Object.values(cfg.lineage.layers).every((l) => (l as { kind: string }).kind === 'quantized')).toBe(
      true,
    );

    const bits = await bitsAsStored(out);
    // 2-bit codes + an f16 scale per 64 weights (FFN down: groups 64, 64, 44) + one sign bit per input
    expect(bits).toBeGreaterThan(2.25);
    expect(bits).toBeLessThan(2.3);
    const text = await lineage(['inspect', out]);
    expect(text.stdout).toMatch(/decoder linears: 2\.2\d\d bits\/param/);
    expect(text.stdout).toMatch(/quantized 2b g64 had/);

    const rtn = join(tmp, 'rtn4');
    await compressJson(rtn, '--method', 'rtn', '--bits', '4');
    expect(expectJson(await lineage(['inspect', rtn, '--json'])).bitsPerParam).toBeLessThan(4.3);

    await expectReloadAndDense(out, join(tmp, 'dense'));
  }, 300_000);

  it('--codebook e8p12: bits per parameter as stored, reload, convert --dense, inspect, and export refusal', async () => {
    const out = join(tmp, 'e8p');
    await compressJson(
      out,
      ...['--method', 'ldlq', '--bits', '2', '--codebook', 'e8p12', '--hadamard'],
      ...['--data', TRAIN, '--calib-samples', '16'],
    );
    const bits = await bitsAsStored(out);
    // u16 codes per 8 weights (172 padded to 176) + an f16 scale per row + one sign bit per input
    expect(bits).toBeGreaterThan(2.2);
    expect(bits).toBeLessThan(2.25);
    expect((await lineage(['inspect', out])).stdout).toMatch(/quantized 2b e8p12 had/);
    await expectReloadAndDense(out, join(tmp, 'e8p-dense'));
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
    const stats = await statsOfAnotherModel(tmp, 'other.stats.safetensors');
    expectOneLineError(await q('--method', 'ldlq', '--bits', '2', '--stats', stats), /another model/);
    expect(existsSync(out)).toBe(false);
  }, 300_000);
});
