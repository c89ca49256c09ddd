import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Ops } from '../backend/ops.js';
import { getBackend } from '../backend/registry.js';
import { loadModel } from '../checkpoint/load-model.js';
import { generate } from '../eval/generate.js';
import { perplexity } from '../eval/perplexity.js';
import { sharedPath } from '../testing/shared.js';
import { readTextFile } from '../util/text-file.js';
import { initModel, llamaConfig } from './init.js';
import { KVCache } from './llama.js';

const ref = JSON.parse(readFileSync(sharedPath('fixtures', 'stories260K-reference.json'), 'utf8')) as {
  text: string;
  tokens: number[];
  mean_nll: number;
  logits_first_16_positions: number[][];
  greedy_prompt_tokens: number[];
  greedy_continuation_tokens: number[];
};
const modelPath = sharedPath('models', 'stories260K', 'stories260K.bin');

describe('Llama forward on the real stories260K', () => {
  it('matches the float64 reference logits at the first 16 positions within 1e-4', async () => {
    const backend = await getBackend('js');
    const { model } = await loadModel(modelPath);
    expect(model.tokenizer!.encode(ref.text, { bos: true })).toEqual(ref.tokens);
    const ops = new Ops(backend);
    const logits = await ops.readF32(await model.forward(ops, Int32Array.from(ref.tokens)));
    const V = model.config.vocabSize;
    let maxErr = 0;
    ref.logits_first_16_positions.forEach((row, t) => {
      row.forEach((v, j) => {
        maxErr = Math.max(maxErr, Math.abs(logits[t * V + j]! - v));
      });
    });
    expect(maxErr).toBeLessThan(1e-4);
  });

  it('matches the reference mean NLL of the fixture story', async () => {
    const backend = await getBackend('js');
    const { model } = await loadModel(modelPath);
    const r = await perplexity(model, backend, ref.text, {
      protocol: 'documents',
      separator: '<|endoftext|>',
    });
    expect(r.tokens).toBe(ref.tokens.length - 1);
    expect(Math.abs(r.nll - ref.mean_nll)).toBeLessThan(1e-5);
  });

  it('reproduces the reference greedy continuation (KV cache)', async () => {
    const backend = await getBackend('js');
    const { model } = await loadModel(modelPath);
    const r = await generate(model, backend, ref.greedy_prompt_tokens, {
      maxTokens: ref.greedy_continuation_tokens.length,
      stopAtEos: false,
    });
    expect(r.generated).toEqual(ref.greedy_continuation_tokens);
  });

  // The full 800-story dev set against ref-dev-ppl.txt runs through the CLI (packages/cli/src/cli.test.ts).
  it('documents-protocol perplexity does not depend on batch size or order', async () => {
    const backend = await getBackend('js');
    const { model } = await loadModel(modelPath);
    const text = await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'));
    const opts = { protocol: 'documents' as const, separator: '<|endoftext|>', limit: 30 };
    const r1 = await perplexity(model, backend, text, { ...opts, batchSize: 1 });
    const r7 = await perplexity(model, backend, text, { ...opts, batchSize: 7 });
    expect(r1.sequences).toBe(30);
    expect(r7.tokens).toBe(r1.tokens);
    expect(Math.abs(r1.nll - r7.nll)).toBeLessThan(1e-6);
  });

  it('stream protocol scores every non-initial token of each window', async () => {
    const backend = await getBackend('js');
    const { model } = await loadModel(modelPath);
    const text = (await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'))).slice(0, 20000);
    const ids = model.tokenizer!.encode(text.trim(), { bos: true });
    const r = await perplexity(model, backend, text, { protocol: 'stream', seqLen: 128 });
    const windows = Math.ceil(ids.length / 128);
    expect(r.sequences).toBe(ids.length % 128 === 1 ? windows - 1 : windows);
    expect(r.tokens).toBe(ids.length - windows);
    expect(r.ppl).toBeGreaterThan(1);
    expect(r.ppl).toBeLessThan(20);
  });

  it('KV-cached decoding gives the same logits as a full forward', async () => {
    const backend = await getBackend('js');
    const { model } = await loadModel(modelPath);
    const ops = new Ops(backend);
    const ids = Int32Array.from(ref.tokens.slice(0, 20));
    const full = await ops.readF32(await model.forward(ops, ids));
    const cache = new KVCache(ops);
    await model.forward(ops, ids.subarray(0, 12), 1, cache);
    const V = model.config.vocabSize;
    let last: Float32Array | undefined;
    for (let t = 12; t < 20; t++)
      last = await ops.readF32(await model.forward(ops, ids.subarray(t, t + 1), 1, cache));
    cache.dispose();
    for (let j = 0; j < V; j++) expect(last![j]).toBeCloseTo(full[19 * V + j]!, 4);
  });

  it('does not leak backend tensors across forwards', async () => {
    const backend = await getBackend('js');
    const { model } = await loadModel(modelPath);
    const ops = new Ops(backend);
    ops.dispose(await ops.tidy(() => model.forward(ops, Int32Array.from(ref.tokens.slice(0, 10)))));
    const base = backend.liveTensors();
    for (let i = 0; i < 3; i++)
      ops.dispose(await ops.tidy(() => model.forward(ops, Int32Array.from(ref.tokens.slice(0, 10)))));
    expect(backend.liveTensors()).toBe(base);
    model.release();
  });
});

describe('Llama variants on synthetic weights', () => {
  it('grouped-query attention with biases and untied head runs and is causal', async () => {
    const backend = await getBackend('js');
    const cfg = {
      ...llamaConfig({ dim: 32, layers: 2, heads: 4, kvHeads: 2, hidden: 48, vocab: 50, tied: false }),
      qkvBias: true,
      architecture: 'qwen2' as const,
    };
    const model = initModel(cfg, { seed: 3 });
    const ops = new Ops(backend);
    const a = await ops.readF32(await model.forward(ops, Int32Array.from([1, 5, 7, 9])));
    const b = await ops.readF32(await model.forward(ops, Int32Array.from([1, 5, 7, 11])));
    // changing the last token changes only the last position's logits
    expect(Array.from(a.subarray(0, 150))).toEqual(Array.from(b.subarray(0, 150)));
    expect(Array.from(a.subarray(150))).not.toEqual(Array.from(b.subarray(150)));
  });

  it('llama3 rope scaling changes long-range frequencies only', async () => {
    const { ropeInvFreq } = await import('./rope.js');
    const base = llamaConfig({ dim: 128, layers: 1, heads: 2, hidden: 64, vocab: 10 });
    const scaled = {
      ...base,
      ropeTheta: 500000,
      ropeScaling: {
        type: 'llama3' as const,
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositions: 8192,
      },
    };
    const f0 = ropeInvFreq({ ...base, ropeTheta: 500000 });
    const f1 = ropeInvFreq(scaled);
    expect(f1[0]).toBe(f0[0]); // highest frequency untouched
    expect(f1[f1.length - 1]! / f0[f0.length - 1]!).toBeCloseTo(1 / 8, 10); // lowest divided by factor
  });
});
