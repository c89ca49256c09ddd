import { spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import { JsBackend, KVCache, type LlamaModel, loadModel, Ops } from '@lineage/core';
import { lineageLogits, maxAbsDiff, onnxCheck, onnxLogits, pythonWithOnnx } from '@lineage/onnx/testing';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import '@lineage/quant';
import '@lineage/svd';
import { expectJson, expectOneLineError, lineage, MODEL, tempDir } from './test-support.js';

// Issue #15 part 1: stories260K and three compressed members (a PLRD low_rank member, minitron-pruned, 4-bit rtn)
// exported with `lineage export --to onnx` run in onnxruntime-node and transformers.js as in lineage.

const tmp = tempDir('lineage-export-');
const js = ['--backend', 'js'];
const members: Record<string, string> = { parent: MODEL };

beforeAll(async () => {
  const made = await Promise.all([
    // a PLRD member (two steps, no recovery: export does not care how the factors were trained)
    lineage([
      'compress',
      MODEL,
      '--method',
      'plrd',
      '--schedule',
      '0.8,0.5',
      '--out',
      join(tmp, 'plrd'),
      ...js,
    ]),
    lineage([
      'compress',
      MODEL,
      '--method',
      'minitron',
      '--shape',
      'layers=4,hidden=48,heads=6,kv-heads=3,ffn=128',
      '--data',
      join(MODEL, '..', '..', '..', 'data', 'tinystories', 'valid-dev.txt'),
      '--doc-separator',
      '<|endoftext|>',
      '--calib-samples',
      '8',
      '--out',
      join(tmp, 'pruned'),
      ...js,
    ]),
    lineage(['compress', MODEL, '--method', 'rtn', '--bits', '4', '--out', join(tmp, 'rtn4'), ...js]),
  ]);
  for (const r of made) expect(r.code, r.stderr).toBe(0);
  Object.assign(members, {
    plrd: join(tmp, 'plrd', 'plrd-0.50'),
    pruned: join(tmp, 'pruned'),
    rtn4: join(tmp, 'rtn4'),
  });
}, 120_000);

const python = pythonWithOnnx();

const TOKENS = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];

describe.each(['parent', 'plrd', 'pruned', 'rtn4'])('lineage export --to onnx: %s', (name) => {
  let out: string;
  let model: LlamaModel;
  beforeAll(async () => {
    out = join(tmp, `${name}-onnx`);
    model = (await loadModel(members[name]!)).model;
  });

  it('writes the transformers.js layout, the ONNX file within 10% of the reported bytes', async () => {
    const r = expectJson(await lineage(['export', members[name]!, '--to', 'onnx', '--out', out, '--json']));
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'])
      expect(existsSync(join(out, f)), f).toBe(true);
    const reported = expectJson(await lineage(['inspect', members[name]!, '--json'])).bytes;
    const size = statSync(join(out, 'onnx', 'model.onnx')).size;
    expect(r.onnxBytes).toBe(size);
    expect(Math.abs(size / reported - 1), `${size} bytes of ONNX for ${reported} reported`).toBeLessThan(0.1);
  });

  it.skipIf(!python)(
    `passes onnx.checker (full check)${python ? '' : ' — skipped: no python3 with the onnx package (scripts/setup-onnx-checker.sh)'}`,
    () => {
      const r = onnxCheck(python!, out);
      expect(r.status, r.stderr).toBe(0);
    },
  );

  it('onnxruntime gives lineage’s logits within 1e-4, with and without a past cache', async () => {
    const s = await ort.InferenceSession.create(join(out, 'onnx', 'model.onnx'));
    const V = model.config.vocabSize;
    const full = await lineageLogits(model, TOKENS);
    expect(maxAbsDiff(await onnxLogits(s, model, TOKENS), full)).toBeLessThan(1e-4);
    const k = TOKENS.length - 1;
    const viaCache = await onnxLogits(s, model, TOKENS.slice(k), TOKENS.slice(0, k));
    expect(
      maxAbsDiff(viaCache, await lineageLogits(model, TOKENS.slice(k), TOKENS.slice(0, k))),
    ).toBeLessThan(1e-4);
    expect(maxAbsDiff(viaCache, full.subarray(k * V))).toBeLessThan(1e-4);
    await s.release();
  });

  it('transformers.js loads it offline; its 64 greedy tokens are lineage generate’s', async () => {
    env.allowRemoteModels = false;
    env.localModelPath = tmp;
    const tok = await AutoTokenizer.from_pretrained(`${name}-onnx`);
    const tm = await AutoModelForCausalLM.from_pretrained(`${name}-onnx`, { dtype: 'fp32' });
    const enc = tok('Once upon a time');
    const ids = (
      (await tm.generate({ ...enc, max_new_tokens: 64, do_sample: false })) as { tolist(): bigint[][] }
    )
      .tolist()[0]!
      .map(Number);
    await tm.dispose();
    const g = expectJson(
      await lineage([
        'generate',
        members[name]!,
        '--prompt',
        'Once upon a time',
        '--max-tokens',
        '64',
        '--json',
        ...js,
      ]),
    );
    expect(ids.slice(g.promptTokens)).toEqual(g.ids);
    expect(g.ids.length).toBeGreaterThan(0);
  });
});

describe('lineage export: bad input', () => {
  it('an unknown --to, an existing output without --force, the input as output: one line each', async () => {
    const r = await lineage(['export', MODEL, '--to', 'tflite', '--out', join(tmp, 'x')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/'--to <format>' argument 'tflite' is invalid.*onnx/);
    const out = join(tmp, 'exists');
    expect((await lineage(['export', MODEL, '--to', 'onnx', '--out', out])).code).toBe(0);
    writeFileSync(join(out, 'marker'), 'keep');
    expectOneLineError(await lineage(['export', MODEL, '--to', 'onnx', '--out', out]), /exists .*--force/);
    expect(existsSync(join(out, 'marker'))).toBe(true);
    expect((await lineage(['export', MODEL, '--to', 'onnx', '--out', out, '--force'])).code).toBe(0);
    expect(existsSync(join(out, 'marker'))).toBe(false);
    expectOneLineError(
      await lineage(['export', members.plrd!, '--to', 'onnx', '--out', members.plrd!, '--force']),
      /--out is the model being exported .*write elsewhere/,
    );
    expect(existsSync(join(members.plrd!, 'model.safetensors'))).toBe(true);
  });

  it('a layer that cannot be exported is one line naming it, and nothing is written', async () => {
    const had = join(tmp, 'rtn-had');
    expect(
      (
        await lineage([
          'compress',
          MODEL,
          '--method',
          'rtn',
          '--bits',
          '4',
          '--hadamard',
          '--out',
          had,
          ...js,
        ])
      ).code,
    ).toBe(0);
    const out = join(tmp, 'had-onnx');
    expectOneLineError(
      await lineage(['export', had, '--to', 'onnx', '--out', out]),
      /layer 'model\.layers\.0\.self_attn\.q_proj' \(quantized\): Hadamard incoherence cannot be exported/,
    );
    expect(existsSync(out)).toBe(false);
  });
});
