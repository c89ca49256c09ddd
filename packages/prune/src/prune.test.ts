import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import {
  JsBackend,
  type LlamaModel,
  loadModel,
  Ops,
  perplexity,
  readTextFile,
  splitDocuments,
} from '@lineage/core';
import { denseWeightsOf, pruneByHand, referenceLogits, sharedPath, tempDir } from '@lineage/core/testing';
import { svd } from '@lineage/svd';
import { describe, expect, it } from 'vitest';
import { depthLossIncrease } from './depth.js';
import {
  activationImportance,
  type Importance,
  magnitudeImportance,
  randomImportance,
  topK,
} from './importance.js';
import { pruneToShape } from './prune.js';
import { denseParams, prunedConfig } from './shape.js';

const backend = new JsBackend();
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const SEP = '<|endoftext|>';
const load = async () => (await loadModel(MODEL)).model;

let statsP: ReturnType<typeof computeStats> | undefined;
/** Importance statistics of stories260K (16 × 64 tokens of train-head). */
async function stats() {
  statsP ??= (async () => {
    const m = await load();
    const sample = sampleSequences(await loadDataset(TRAIN), m.tokenizer!, {
      samples: 16,
      seqLen: 64,
      seed: 0,
    });
    return computeStats(m, backend, sample, { statistics: ['importance'] });
  })();
  return statsP;
}

async function devPpl(m: LlamaModel, docs = 40): Promise<number> {
  const text = await readTextFile(DEV);
  return (
    await perplexity(m, backend, text, { protocol: 'documents', separator: SEP, seqLen: 128, limit: docs })
  ).ppl;
}

async function logits(m: LlamaModel, ids: number[]): Promise<Float32Array> {
  const ops = new Ops(backend);
  return (await ops.readF32(await m.forward(ops, Int32Array.from(ids)))).slice();
}

describe('importance', () => {
  it('reads Minitron importance from the calibration statistics, one score per component', async () => {
    const m = await load();
    const s = await stats();
    const imp = await activationImportance(s, m.config);
    const c = m.config;
    expect(imp.neurons.map((x) => x.length)).toEqual(Array(c.numLayers).fill(c.intermediateSize));
    expect(imp.heads[0]!.length).toBe(c.numHeads);
    expect(imp.kvGroups[0]!.length).toBe(c.numKvHeads);
    expect(imp.channels.length).toBe(c.hiddenSize);
    expect(imp.layers.length).toBe(c.numLayers);
    // the same arrays calibrate stored (reused, not recomputed)
    expect([...imp.neurons[2]!]).toEqual([...(await s.neuronImportance(2))]);
    expect([...imp.layers]).toEqual([...(await s.blockImportance())]);
    for (const l of imp.layers) expect(l).toBeGreaterThan(0);
  });

  it('magnitude scores are weight norms; random ones are seeded', async () => {
    const m = await load();
    const mag = magnitudeImportance(m);
    const down = m.getLinear('model.layers.0.mlp.down_proj').denseWeight();
    const gate = m.getLinear('model.layers.0.mlp.gate_proj').denseWeight();
    const up = m.getLinear('model.layers.0.mlp.up_proj').denseWeight();
    const { hiddenSize: D, intermediateSize: F } = m.config;
    let s = 0;
    for (let i = 0; i < D; i++) s += gate[3 * D + i]! ** 2 + up[3 * D + i]! ** 2 + down[i * F + 3]! ** 2;
    expect(mag.neurons[0]![3]).toBeCloseTo(Math.sqrt(s), 5);
    expect([...randomImportance(m.config, 7).channels]).toEqual([...randomImportance(m.config, 7).channels]);
    expect([...randomImportance(m.config, 7).channels]).not.toEqual([
      ...randomImportance(m.config, 8).channels,
    ]);
  });
});

describe('pruneToShape (stories260K: 5 layers, hidden 64, 8 heads over 4 kv groups, FFN 172)', () => {
  it('keeps the most important heads within each kv group, neurons, channels and layers, as hand slicing does', async () => {
    const m = await load();
    const imp = await activationImportance(await stats(), m.config);
    const target = prunedConfig(m.config, { layers: 4, hidden: 48, heads: 4, ffn: 128 });
    const pruned = pruneToShape(m, imp, target);
    expect(pruned.config).toMatchObject({
      numLayers: 4,
      hiddenSize: 48,
      numHeads: 4,
      numKvHeads: 4,
      intermediateSize: 128,
      headDim: 8,
    });
    expect(pruned.stats().params).toBe(denseParams(pruned.config, false));
    // by hand: one head of each group of 2 (the more important), top neurons/channels/layers by score
    const heads = imp.heads.map((h) =>
      [0, 1, 2, 3].map((g) => (h[2 * g]! >= h[2 * g + 1]! ? 2 * g : 2 * g + 1)),
    );
    const plan = {
      layers: [...topK(imp.layers, 4)],
      heads,
      ffn: imp.neurons.map((n) => [...topK(n, 128)]),
      hidden: [...topK(imp.channels, 48)],
    };
    const ref = pruneByHand(m.config, denseWeightsOf(m), plan);
    const ids = [1, 40, 300, 7, 99, 12, 5, 250];
    const got = await logits(pruned, ids);
    const want = referenceLogits(ref.config, ref.weights, ids);
    let err = 0;
    let norm = 0;
    got.forEach((g, i) => {
      err += (g - want[i]!) ** 2;
      norm += want[i]! ** 2;
    });
    expect(Math.sqrt(err / norm)).toBeLessThan(1e-4);
  });

  it('removes whole kv groups by their importance', async () => {
    const m = await load();
    const imp = await activationImportance(await stats(), m.config);
    const pruned = pruneToShape(m, imp, prunedConfig(m.config, { kvHeads: 2 }));
    expect(pruned.config).toMatchObject({ numKvHeads: 2, numHeads: 4 });
    const g = topK(imp.kvGroups[1]!, 2);
    const k = m.getLinear('model.layers.1.self_attn.k_proj').denseWeight();
    const k2 = pruned.getLinear('model.layers.1.self_attn.k_proj').denseWeight();
    const rowLen = m.config.hiddenSize * m.config.headDim;
    expect([...k2.subarray(rowLen, 2 * rowLen)]).toEqual([
      ...k.subarray(g[1]! * rowLen, (g[1]! + 1) * rowLen),
    ]);
  });

  it('activation importance prunes better than random and magnitude (FFN to 50%, no retraining)', async () => {
    const m = await load();
    const target = prunedConfig(m.config, { ffn: 86 });
    const scores: Record<string, Importance> = {
      activation: await activationImportance(await stats(), m.config),
      random: randomImportance(m.config, 0),
      magnitude: magnitudeImportance(m),
    };
    const ppl: Record<string, number> = {};
    for (const [k, imp] of Object.entries(scores)) ppl[k] = await devPpl(pruneToShape(m, imp, target));
    const parent = await devPpl(m);
    expect(ppl.activation!).toBeGreaterThan(parent);
    expect(ppl.activation!).toBeLessThan(ppl.random!);
    expect(ppl.activation!).toBeLessThan(ppl.magnitude!);
  });

  it('a low_rank model stays factored and keeps its ranks', async () => {
    const m = await load();
    const lr = await svd({ params: 0.6 }).apply(m, { backend, seed: 0 } as never);
    const imp = magnitudeImportance(lr);
    const pruned = pruneToShape(lr, imp, prunedConfig(lr.config, { ffn: 128, hidden: 56 }));
    const l = pruned.getLinear('model.layers.2.mlp.up_proj');
    expect(l.kind).toBe('low_rank');
    expect([l.outFeatures, l.inFeatures]).toEqual([128, 56]);
    expect((l.meta() as { rank: number }).rank).toBe(
      (lr.getLinear('model.layers.2.mlp.up_proj').meta() as { rank: number }).rank,
    );
  });
});

describe('depth by LM loss', () => {
  it('scores each removed layer (and contiguous blocks), cached beside the statistics file', async () => {
    const m = await load();
    const text = await readTextFile(DEV);
    const data = { text: splitDocuments(text, SEP).slice(0, 16).join(`\n${SEP}\n`), separator: SEP };
    const dir = tempDir('prune-depth');
    const cache = join(dir, 'stats.safetensors.minitron-depth.json');
    const logs: string[] = [];
    const inc = await depthLossIncrease(m, backend, data, 1, {
      samples: 8,
      seqLen: 64,
      cache,
      log: (s) => logs.push(s),
    });
    expect(inc.length).toBe(5);
    for (const x of inc) expect(x).toBeGreaterThan(0); // every layer of a 5-layer model matters
    expect(existsSync(cache)).toBe(true);
    const again = await depthLossIncrease(m, backend, data, 1, {
      samples: 8,
      seqLen: 64,
      cache,
      log: (s) => logs.push(s),
    });
    expect([...again]).toEqual([...inc]);
    expect(logs.at(-1)).toMatch(/read from/);
    const pairs = await depthLossIncrease(m, backend, data, 2, { samples: 8, seqLen: 64, cache });
    expect(pairs.length).toBe(4);
    expect(Object.keys(Object.values(JSON.parse(readFileSync(cache, 'utf8')).entries)[0] as object)).toEqual([
      '1',
      '2',
    ]);
  });
});
