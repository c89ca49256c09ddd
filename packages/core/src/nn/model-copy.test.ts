import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JsBackend } from '../backend/js/js-backend.js';
import { Ops } from '../backend/ops.js';
import { loadModel } from '../checkpoint/load-model.js';
import { saveModel } from '../checkpoint/save-model.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { initModel, llamaConfig } from './init.js';
import type { LlamaModel } from './llama.js';

const ops = new Ops(new JsBackend());
async function logits(m: LlamaModel, ids: Int32Array) {
  return Array.from(await ops.read(await m.forward(ops, ids, 1)));
}

const tmp = mkdtempSync(join(tmpdir(), 'lineage-copy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const config = llamaConfig({ dim: 16, layers: 2, heads: 4, kvHeads: 2, hidden: 24, vocab: 32, tied: false });

describe('LlamaModel.clone / densified / provenance', () => {
  it('a clone computes the same logits and is independent of the original', async () => {
    const m = initModel(config, { seed: 3 });
    m.blocks[0]!.inputNorm.trainable = false;
    const c = m.clone();
    const ids = Int32Array.from([1, 5, 7, 2, 9, 30]);
    const a = await logits(m, ids);
    const d = await logits(c, ids);
    expect(d).toEqual(a);
    expect(c.blocks[0]!.inputNorm.trainable).toBe(false);
    // Replacing a value in the clone leaves the original alone.
    const q = c.getLinear('model.layers.0.self_attn.q_proj').parameters().get('weight')!;
    q.value = new HostTensor('f32', q.shape, new Float32Array(q.value.size));
    expect(await logits(m, ids)).toEqual(a);
    expect(await logits(c, ids)).not.toEqual(a);
  });

  it('provenance is saved under config.json lineage and read back', async () => {
    const m = initModel(config, { seed: 1 });
    m.provenance = { method: 'test', parent: 'p', ranks: { a: 3 } };
    const dir = join(tmp, 'prov');
    await saveModel(m, dir, { format: 'hf' });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(cfg.lineage).toEqual({ version: 1, method: 'test', parent: 'p', ranks: { a: 3 } });
    const { model } = await loadModel(dir, { tokenizerOptional: true });
    expect(model.provenance).toEqual(m.provenance);
    expect(model.clone().provenance).toEqual(m.provenance);
  });

  it('densified() of a dense model is the same model', async () => {
    const m = initModel(config, { seed: 2 });
    const d = m.densified();
    expect(d.stats().params).toBe(m.stats().params);
    const ids = Int32Array.from([3, 4, 5]);
    expect(await logits(d, ids)).toEqual(await logits(m, ids));
  });
});
