import { keepFfn, keepHeads, keepHidden, keepLayers, type LlamaModel, loadModel } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildLlamaGraph } from './index.js';
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
