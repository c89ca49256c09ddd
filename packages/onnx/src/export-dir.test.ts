import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  HostTensor,
  type Json,
  type Linear,
  type LinearLayer,
  type LlamaModel,
  loadModel,
} from '@lineage/core';
import { sharedPath, tempDir } from '@lineage/core/testing';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildLlamaGraph, exportModelDir } from './index.js';
import { lineageLogits, maxAbsDiff, onnxCheck, onnxLogits, pythonWithOnnx } from './test-support.js';

let model: LlamaModel;
const tmp = tempDir('lineage-onnx-');
beforeAll(async () => {
  model = (await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'))).model;
});
const tokens = [1, 403, 407, 261, 378, 432, 383, 286];

const python = pythonWithOnnx();

describe('exportModelDir', () => {
  it('writes the transformers.js layout; external data loads and gives the same logits', async () => {
    const plain = join(tmp, 'plain');
    const ext = join(tmp, 'ext');
    const a = await exportModelDir(model, plain);
    const b = await exportModelDir(model, ext, { externalData: true });
    expect(a.externalData).toBe(false);
    expect(b.files).toContain('onnx/model.onnx_data');
    const cfg = JSON.parse(readFileSync(join(ext, 'config.json'), 'utf8'));
    expect(cfg.architectures).toEqual(['LlamaForCausalLM']);
    expect(cfg['transformers.js_config'].use_external_data_format).toEqual({ 'model.onnx': 1 });
    // the graph alone is small; the weights are in the side file
    expect(statSync(join(ext, 'onnx', 'model.onnx')).size).toBeLessThan(64 * 1024);
    expect(statSync(join(ext, 'onnx', 'model.onnx_data')).size).toBeGreaterThan(1_000_000);
    const s = await ort.InferenceSession.create(join(ext, 'onnx', 'model.onnx'));
    expect(maxAbsDiff(await onnxLogits(s, model, tokens), await lineageLogits(model, tokens))).toBeLessThan(
      1e-4,
    );
    await expect(exportModelDir(model, plain)).rejects.toThrow(/exists/);
  });

  it.skipIf(!python)(
    `passes onnx.checker (full check)${python ? '' : ' — skipped: no python3 with the onnx package (apt-get install python3-onnx)'}`,
    async () => {
      const out = join(tmp, 'checked');
      await exportModelDir(model, out);
      const r = onnxCheck(python!, out);
      expect(r.status, r.stderr).toBe(0);
    },
  );

  it('a layer kind without an exporter is one error naming the layer, before anything is written', async () => {
    const dense = model.getLinear('model.layers.2.mlp.up_proj');
    const mystery: LinearLayer = {
      kind: 'mystery',
      inFeatures: dense.inFeatures,
      outFeatures: dense.outFeatures,
      forward: (ops, x) => dense.forward(ops, x),
      parameters: () => dense.parameters(),
      stats: () => dense.stats(),
      meta: (): Json => null,
      denseWeight: () => dense.denseWeight(),
      denseBias: () => undefined,
      select: (s) => dense.select(s),
    };
    const m = model.clone();
    m.setLinear('model.layers.2.mlp.up_proj', mystery);
    expect(() => buildLlamaGraph(m)).toThrow(
      /^layer 'model\.layers\.2\.mlp\.up_proj' is a 'mystery' layer, which cannot be exported to ONNX \(exportable kinds: linear/,
    );
    const out = join(tmp, 'mystery');
    await expect(exportModelDir(m, out)).rejects.toThrow(/mystery/);
    expect(existsSync(out)).toBe(false);
  });

  it('fp16 weights beyond ±65504 are refused naming the tensor (they would be stored as infinities)', async () => {
    const m = model.clone();
    const w = m.getLinear('model.layers.0.self_attn.q_proj') as Linear;
    const v = w.weight.value.toF32().slice();
    v[5] = -1e6;
    w.weight.value = HostTensor.fromF32(v, w.weight.shape, 'f32');
    const out = join(tmp, 'big');
    await expect(exportModelDir(m, out, { dtype: 'fp16' })).rejects.toThrow(
      /^tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' has values up to 1\.00000e\+6 in magnitude, beyond the largest float16 \(65504\).*--dtype fp32/,
    );
    expect(existsSync(out)).toBe(false);
    // in range, and at fp32, it exports
    await expect(exportModelDir(m, join(tmp, 'big32'))).resolves.toBeDefined();
  });
});
