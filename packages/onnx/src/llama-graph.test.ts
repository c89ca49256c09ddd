import {
  initModel,
  keepFfn,
  keepHeads,
  keepHidden,
  keepLayers,
  type LlamaModel,
  llamaConfig,
  loadModel,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildLlamaGraph, FUSED_NLL_KERNELS, type LlamaKernels } from './index.js';
import { lineageLogits, lineageNll, maxAbsDiff, onnxLogits, onnxNll } from './test-support.js';

let model: LlamaModel;
beforeAll(async () => {
  model = (await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'))).model;
});

const session = (bytes: Uint8Array) => ort.InferenceSession.create(bytes);
const tokens = [1, 403, 407, 261, 378, 281, 437, 260, 1000 % 512, 300, 17, 88];

describe('buildLlamaGraph on stories260K', () => {
  it('gives lineage’s logits within 1e-4, with and without a past cache', async () => {
    const { graph, opset, opsets } = buildLlamaGraph(model);
    const s = await session(graph.serialize({ opset, opsets }).model);
    expect(s.inputNames).toContain('past_key_values.4.value');
    expect(s.outputNames).toEqual([
      'logits',
      ...[0, 1, 2, 3, 4].flatMap((l) => [`present.${l}.key`, `present.${l}.value`]),
    ]);
    const full = await lineageLogits(model, tokens);
    expect(maxAbsDiff(await onnxLogits(s, model, tokens), full)).toBeLessThan(1e-4);
    // prefix of 11, then one token with the past
    const last = await lineageLogits(model, tokens.slice(11), tokens.slice(0, 11));
    expect(maxAbsDiff(last, full.subarray(11 * 512))).toBeLessThan(1e-4);
    expect(maxAbsDiff(await onnxLogits(s, model, tokens.slice(11), tokens.slice(0, 11)), last)).toBeLessThan(
      1e-4,
    );
  });

  it('left padding in a batch (as transformers.js pads): the padded row gives its unpadded logits', async () => {
    const { graph, opset, opsets } = buildLlamaGraph(model, { kvCache: false });
    const s = await session(graph.serialize({ opset, opsets }).model);
    const short = tokens.slice(0, 8);
    const pad = tokens.length - short.length;
    const i64 = (v: number[]) =>
      new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [2, tokens.length]);
    const out = await s.run({
      input_ids: i64([...tokens, ...Array(pad).fill(0), ...short]),
      attention_mask: i64([...tokens.map(() => 1), ...Array(pad).fill(0), ...short.map(() => 1)]),
      position_ids: i64([...tokens.map((_, i) => i), ...Array(pad).fill(1), ...short.map((_, i) => i)]),
    });
    const logits = out.logits!.data as Float32Array;
    const V = 512;
    const T = tokens.length;
    expect(maxAbsDiff(logits.subarray(0, T * V), await lineageLogits(model, tokens))).toBeLessThan(1e-4);
    expect(maxAbsDiff(logits.subarray((T + pad) * V), await lineageLogits(model, short))).toBeLessThan(1e-4);
  });

  it('builds a graph without a cache (one full forward)', async () => {
    const { graph, opset, opsets } = buildLlamaGraph(model, { kvCache: false });
    const s = await session(graph.serialize({ opset, opsets }).model);
    expect(s.inputNames).toEqual(['input_ids', 'attention_mask', 'position_ids']);
    expect(maxAbsDiff(await onnxLogits(s, model, tokens), await lineageLogits(model, tokens))).toBeLessThan(
      1e-4,
    );
  });

  it('stores fp16 weights in half the bytes, still close', async () => {
    const a = buildLlamaGraph(model);
    const b = buildLlamaGraph(model, { dtype: 'fp16' });
    const ratio = b.graph.initializerBytes() / a.graph.initializerBytes();
    expect(ratio).toBeGreaterThan(0.45);
    expect(ratio).toBeLessThan(0.55);
    const s = await session(b.graph.serialize({ opset: b.opset, opsets: b.opsets }).model);
    expect(maxAbsDiff(await onnxLogits(s, model, tokens), await lineageLogits(model, tokens))).toBeLessThan(
      0.05,
    );
  });
});

describe("buildLlamaGraph with the 'nll' head", () => {
  const seqs = [tokens, tokens.slice(3, 10).reverse(), [1, 5, 9]];
  const nllSession = async (m: LlamaModel) => {
    const { graph, opset, opsets } = buildLlamaGraph(m, { head: 'nll' });
    return session(graph.serialize({ opset, opsets }).model);
  };

  it('gives lineage’s per-op cross-entropy within 1e-5 and outputs no logits', async () => {
    const s = await nllSession(model);
    expect(s.inputNames).toEqual(['input_ids', 'attention_mask', 'position_ids', 'targets']);
    expect(s.outputNames).toEqual(['nll']);
    const want = await lineageNll(model, seqs);
    const got = await onnxNll(s, seqs);
    expect(got.length).toBe(3 * tokens.length);
    expect(want.reduce((a, b) => a + b) / want.length).toBeGreaterThan(1); // real losses, not zeros
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
  });

  it('agrees on a pruned model (heads, FFN, hidden and depth cut by core surgery)', async () => {
    const c = model.config;
    const half = (n: number) => Array.from({ length: n / 2 }, (_, i) => 2 * i);
    let m = keepHeads(model, half(c.numHeads));
    m = keepFfn(m, half(c.intermediateSize));
    m = keepHidden(m, half(c.hiddenSize));
    m = keepLayers(m, [0, 2, 4]);
    const want = await lineageNll(m, seqs);
    expect(maxAbsDiff(await onnxNll(await nllSession(m), seqs), want)).toBeLessThan(1e-5);
  });

  it('has no KV cache', () => {
    expect(() => buildLlamaGraph(model, { head: 'nll', kvCache: true })).toThrow(/no KV cache/);
  });
});

describe("buildLlamaGraph with onnxruntime's contrib kernels (the fused evaluation graph)", () => {
  const seqs = [tokens, tokens.slice(3, 10).reverse(), [1, 5, 9]];
  const nllSession = async (m: LlamaModel, kernels: LlamaKernels) => {
    const { graph, opset, opsets } = buildLlamaGraph(m, { head: 'nll', kernels });
    return session(graph.serialize({ opset, opsets }).model);
  };
  const combos: LlamaKernels[] = [
    FUSED_NLL_KERNELS,
    { attention: 'gqa', rope: 'ops', norm: 'ops' },
    { attention: 'gqa', rope: 'rotary', norm: 'simplified' },
    { attention: 'ops', rope: 'rotary', norm: 'skip' },
    { attention: 'gqa', rope: 'gqa', norm: 'skip', pack: true },
    { attention: 'gqa', rope: 'ops', norm: 'ops', pack: true },
  ];

  // SimplifiedLayerNormalization sums x² in another order than lineage's RMSNorm: ~12 ulps of the loss here
  const tolerance = (k: LlamaKernels) => (k.norm === 'simplified' ? 2e-5 : 1e-5);

  it.each(combos)('%j gives lineage’s per-op cross-entropy within 1e-5 (2e-5)', async (kernels) => {
    const want = await lineageNll(model, seqs);
    expect(maxAbsDiff(await onnxNll(await nllSession(model, kernels), seqs), want)).toBeLessThan(
      tolerance(kernels),
    );
  });

  it('RoPE inside GroupQueryAttention (head size 32, 4 query heads on 2 kv heads) and every other kernel agree', async () => {
    // stories260K's head size 8 is below what onnxruntime's GroupQueryAttention RoPE takes (multiples of 16)
    const m = initModel(llamaConfig({ dim: 128, layers: 2, heads: 4, kvHeads: 2, hidden: 256, vocab: 512 }), {
      seed: 3,
    });
    const want = await lineageNll(m, seqs);
    expect(want.reduce((a, b) => a + b) / want.length).toBeGreaterThan(1);
    for (const kernels of combos)
      expect(
        maxAbsDiff(await onnxNll(await nllSession(m, kernels), seqs), want),
        JSON.stringify(kernels),
      ).toBeLessThan(tolerance(kernels));
  });

  it('the default kernels agree on a pruned model too', async () => {
    const c = model.config;
    const half = (n: number) => Array.from({ length: n / 2 }, (_, i) => 2 * i);
    const m = keepLayers(
      keepHidden(keepFfn(keepHeads(model, half(c.numHeads)), half(c.intermediateSize)), half(c.hiddenSize)),
      [0, 2, 4],
    );
    const want = await lineageNll(m, seqs);
    expect(maxAbsDiff(await onnxNll(await nllSession(m, FUSED_NLL_KERNELS), seqs), want)).toBeLessThan(1e-5);
  });

  it('GroupQueryAttention masks right padding: a padded row scores its real tokens as alone', async () => {
    const s = await nllSession(model, FUSED_NLL_KERNELS);
    const short = tokens.slice(0, 7);
    const T = tokens.length;
    const big = (v: number[]) => new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [1, T]);
    const pad = Array(T - short.length).fill(0);
    const out = await s.run({
      input_ids: big([...short, ...pad.map(() => 99)]),
      attention_mask: big([...short.map(() => 1), ...pad]),
      position_ids: big(tokens.map((_, i) => i)),
      targets: big([...short.slice(1), 0, ...pad]),
    });
    const want = await lineageNll(model, [short]);
    const got = (out.nll!.data as Float32Array).subarray(0, short.length - 1);
    expect(maxAbsDiff(got, want.subarray(0, short.length - 1))).toBeLessThan(1e-5);
  });

  it('refuses GroupQueryAttention with a KV cache and its RoPE without it; names nodes only when asked', () => {
    expect(() => buildLlamaGraph(model, { kernels: { attention: 'gqa' } })).toThrow(/KV cache/);
    expect(() => buildLlamaGraph(model, { head: 'nll', kernels: { rope: 'gqa' } })).toThrow(
      /needs attention 'gqa'/,
    );
    const bytes = (nodeNames: boolean) =>
      buildLlamaGraph(model, { head: 'nll', nodeNames }).graph.serialize({ opset: 17 }).model;
    expect(new TextDecoder().decode(bytes(true))).toContain('l3.attention/Softmax');
    expect(new TextDecoder().decode(bytes(false))).not.toContain('attention/');
  });
});
