import {
  type Backend,
  createJsBackend,
  HostTensor,
  Linear,
  type LlamaModel,
  loadModel,
  methodContext,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { computeStats, sampleFromSequences } from './calibrate.js';
import { withCalibration } from './capability.js';
import { loadDataset, sampleSequences } from './dataset.js';
import { type SequentialBlock, sequentialWalk } from './sequential.js';
import { directGram, materialise, relErr } from './test-reference.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');

let js: Backend;
let parent: LlamaModel;
let seqs: Int32Array[];
beforeAll(async () => {
  js = await createJsBackend();
  parent = (await loadModel(MODEL)).model;
  seqs = sampleSequences(await loadDataset(TRAIN), parent.tokenizer!, {
    samples: 8,
    seqLen: 128,
    seed: 0,
  }).sequences;
});

/** A crude 2-bit-like rounding of a linear's weight: what a quantizer would leave of it. */
function rounded(model: LlamaModel, name: string): Linear {
  const l = model.getLinear(name);
  const w = l.denseWeight();
  let ms = 0;
  for (const v of w) ms += v * v;
  const step = Math.sqrt(ms / w.length);
  const q = w.map((v) => step * Math.max(-2, Math.min(1, Math.round(v / step))));
  return new Linear(new HostTensor('f32', [l.outFeatures, l.inFeatures], q));
}

describe('sequential (GPTQ-style) calibration walk on stories260K', () => {
  it("block 0 sees the parent's Hessians; block 1's come from the compressed block 0's outputs", async () => {
    const oneShot = await computeStats(parent, js, sampleFromSequences(seqs), { statistics: ['hessian'] });
    const copy = parent.clone();
    const seen: { index: number; layers: readonly string[]; h: Map<string, Float64Array> }[] = [];
    const r = await sequentialWalk(copy, js, seqs, async (b: SequentialBlock) => {
      const h = new Map<string, Float64Array>();
      for (const name of b.layers) h.set(name, (await b.hessian(name)).slice());
      seen.push({ index: b.index, layers: b.layers, h });
      if (b.index === 0) for (const name of b.layers) b.setLinear(name, rounded(copy, name));
    });
    const L = parent.config.numLayers;
    expect(r.tokens).toBe(seqs.reduce((a, s) => a + s.length, 0));
    expect(seen.map((s) => s.index)).toEqual([...Array(L).keys()]);
    expect(seen[1]!.layers).toEqual([
      'model.layers.1.self_attn.q_proj',
      'model.layers.1.self_attn.k_proj',
      'model.layers.1.self_attn.v_proj',
      'model.layers.1.self_attn.o_proj',
      'model.layers.1.mlp.gate_proj',
      'model.layers.1.mlp.up_proj',
      'model.layers.1.mlp.down_proj',
    ]);
    // q/k/v share one input, gate/up another
    expect(seen[1]!.h.get('model.layers.1.self_attn.k_proj')).toEqual(
      seen[1]!.h.get('model.layers.1.self_attn.q_proj'),
    );
    // block 0's inputs are the embeddings: the same Hessians as the one-shot (parent's) statistics, bitwise
    for (const name of seen[0]!.layers) expect(seen[0]!.h.get(name)).toEqual(await oneShot.hessian(name));
    // block 1 on: from inputs through the rounded block 0, so not the parent's
    for (const name of seen[1]!.layers)
      expect(relErr(seen[1]!.h.get(name)!, await oneShot.hessian(name))).toBeGreaterThan(1e-3);
    // ... but what a plain forward through the compressed block 0 gives, by the direct triple loop
    expect(copy.getLinear('model.layers.0.mlp.down_proj')).not.toBe(
      parent.getLinear('model.layers.0.mlp.down_proj'),
    );
    const taps = await materialise(copy, js, seqs);
    const D = parent.config.hiddenSize;
    const F = parent.config.intermediateSize;
    for (const [slot, tap, w] of [
      ['self_attn.q_proj', 'input_layernorm.output', D],
      ['self_attn.o_proj', 'self_attn.o_proj.input', D],
      ['mlp.up_proj', 'post_attention_layernorm.output', D],
      ['mlp.down_proj', 'mlp.down_proj.input', F],
    ] as const) {
      const h = seen[1]!.h.get(`model.layers.1.${slot}`)!;
      expect(relErr(h, directGram(taps.get(`1:${tap}`)!, w)), slot).toBeLessThan(1e-9);
    }
  }, 120_000);

  it('with nothing replaced, every Hessian equals the one-shot statistics; the capability walks the same sample', async () => {
    const ctx = withCalibration(methodContext(js), { data: TRAIN, samples: 8, seqLen: 128 });
    const oneShot = await ctx.calibrate!(parent, { statistics: ['hessian'] });
    let worst = 0;
    let blocks = 0;
    await ctx.calibrationWalk!(parent.clone(), async (b) => {
      blocks++;
      for (const name of b.layers)
        worst = Math.max(worst, relErr(await b.hessian(name), await oneShot.hessian(name)));
      await expect(b.hessian('model.layers.0.lm_head')).rejects.toThrow(/not a linear layer of block/);
    });
    expect(blocks).toBe(parent.config.numLayers);
    expect(worst).toBe(0);
  }, 120_000);
});
