import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tinyModel } from '../autograd/testing.js';
import { JsBackend } from '../backend/js/js-backend.js';
import { Ops } from '../backend/ops.js';
import { loadModel } from '../checkpoint/load-model.js';
import { saveModel } from '../checkpoint/save-model.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { tempDir } from '../testing/temp-dir.js';
import type { LinearLayer } from './layer.js';
import { Linear } from './linear.js';
import type { LlamaModel } from './llama.js';

const ops = new Ops(new JsBackend());
const ids = Int32Array.from([1, 4, 2, 9, 3, 3, 7]);
const logits = (m: LlamaModel) => ops.tidy(async () => ops.readF32(await m.forward(ops, ids)));

describe('the embedding and the head as layer slots', () => {
  it('the embedding is a dense layer whose table is model.embed, stored as model.embed_tokens.weight', () => {
    const m = tinyModel({ tied: true });
    expect(m.embedding.kind).toBe('linear');
    expect(m.embed).toBe((m.embedding as Linear).weight);
    expect(m.namedParameters().get('model.embed_tokens.weight')).toBe(m.embed);
    expect(m.layerKinds()).toEqual({});
  });

  it('untied() gives the head its own copy of the embedding: same logits, recorded in config, saved and reloaded', async () => {
    const m = tinyModel({ tied: true });
    const u = m.untied();
    expect(u.config.tieWordEmbeddings).toBe(false);
    expect(m.config.tieWordEmbeddings).toBe(true);
    expect(u.lmHead?.kind).toBe('linear');
    expect(u.lmHead!.parameters().get('weight')).not.toBe(u.embed);
    expect(await logits(u)).toEqual(await logits(m));
    const dir = join(tempDir('lineage-untie-'), 'm');
    await saveModel(u, dir, { format: 'hf' });
    const { model } = await loadModel(dir, { tokenizerOptional: true });
    expect(model.lmHead).toBeDefined();
    expect(model.config.tieWordEmbeddings).toBe(false);
    expect(await logits(model)).toEqual(await logits(m));
  });

  it('setEmbedding takes a layer of [vocab, hidden] that can look rows up, and refuses others in one line', async () => {
    const m = tinyModel({ tied: true });
    const before = await logits(m);
    const { vocabSize: V, hiddenSize: D } = m.config;
    m.setEmbedding(new Linear(new HostTensor('f32', [V, D], m.embed.value.toF32().slice())));
    expect(await logits(m)).toEqual(before);
    expect(() =>
      m.setEmbedding(new Linear(new HostTensor('f32', [V, D + 1], new Float32Array(V * (D + 1))))),
    ).toThrow(`an embedding of [${V}, ${D + 1}] does not fit a model of vocabulary ${V} and width ${D}`);
    const noLookup = Object.assign(Object.create(Linear.prototype), m.embedding, {
      lookup: undefined,
      kind: 'opaque',
    });
    expect(() => m.setEmbedding(noLookup as LinearLayer)).toThrow(/'opaque' layer cannot be an embedding/);
  });
});
