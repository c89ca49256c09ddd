import { statSync } from 'node:fs';
import { join } from 'node:path';
import { JsBackend, KVCache, loadModel, Ops } from '@lineage/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import '@lineage/svd';
import { DEV, expectJson, expectOneLineError, lineage, MODEL, SEP, tempDir } from './test-support.js';

const tmp = tempDir('lineage-export-qlr-');
const js = ['--backend', 'js'];
const caldera = (out: string, ...extra: string[]) =>
  lineage([
    'compress',
    MODEL,
    '--method',
    'caldera',
    '--q-bits',
    '2',
    '--lr-bits',
    '4',
    '--rank',
    '4',
    '--outer-iters',
    '1',
    '--lplr-iters',
    '1',
    '--data',
    DEV,
    '--doc-separator',
    SEP,
    '--calib-samples',
    '8',
    '--out',
    out,
    ...extra,
    ...js,
  ]);

describe('lineage export --to onnx of a CALDERA (qlr) model', () => {
  it('exports Q, L and R as MatMulNBits on their codes: logits within 1e-4 of lineage, never densified', async () => {
    const model = join(tmp, 'qlr');
    expect((await caldera(model, '--no-hadamard')).code).toBe(0);
    const out = join(tmp, 'qlr-onnx');
    const r = expectJson(await lineage(['export', model, '--to', 'onnx', '--out', out, '--json']));
    const size = statSync(join(out, 'onnx', 'model.onnx')).size;
    expect(r.onnxBytes).toBe(size);
    // the dense f32 model would be 1.04 MB; a qlr export holds codes (padding and graph: see docs/export.md)
    expect(size).toBeLessThan(1.4 * r.modelBytes);
    const m = (await loadModel(model)).model;
    const ids = [1, 403, 407, 261, 378, 432, 383, 286];
    const i64 = (v: number[]) => new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [1, v.length]);
    const past: Record<string, ort.Tensor> = {};
    for (let l = 0; l < 5; l++)
      for (const kv of ['key', 'value'])
        past[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 8]);
    const s = await ort.InferenceSession.create(join(out, 'onnx', 'model.onnx'));
    const got = (
      await s.run({
        input_ids: i64(ids),
        attention_mask: i64(ids.map(() => 1)),
        position_ids: i64(ids.map((_, i) => i)),
        ...past,
      })
    ).logits!.data as Float32Array;
    const ops = new Ops(new JsBackend());
    const want = await ops.readF32(await m.forward(ops, Int32Array.from(ids), 1, new KVCache(ops)));
    expect(got.reduce((a, v, i) => Math.max(a, Math.abs(v - want[i]!)), 0)).toBeLessThan(1e-4);
  });

  it('with Hadamard incoherence: one line naming the layer', async () => {
    const model = join(tmp, 'qlr-had');
    expect((await caldera(model)).code).toBe(0);
    expectOneLineError(
      await lineage(['export', model, '--to', 'onnx', '--out', join(tmp, 'had-onnx')]),
      /layer 'model\.layers\.0\.self_attn\.q_proj' \(qlr\): Hadamard incoherence cannot be exported/,
    );
  });
});
