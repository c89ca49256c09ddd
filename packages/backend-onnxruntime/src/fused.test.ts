import {
  createJsBackend,
  HostTensor,
  loadModel,
  type PerplexityOptions,
  perplexity,
  readTextFile,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { createOnnxruntimeBackend } from './base.js';

const docs: PerplexityOptions = { protocol: 'documents', separator: '<|endoftext|>', limit: 60 };
const stream: PerplexityOptions = { protocol: 'stream', seqLen: 256, limit: 12 };
const rel = (a: number, b: number) => Math.abs(a - b) / b;

describe('fused evaluation on onnxruntime (cpu), stories260K', () => {
  it('agrees with the per-op path within 1e-5 relative, both protocols, and never serves stale weights', async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const text = await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'));
    const ort = await createOnnxruntimeBackend({ device: 'cpu' });
    expect(ort.fused).toBeDefined();
    for (const opts of [docs, stream]) {
      const perOp = await perplexity(model, ort, text, opts);
      const fused = await perplexity(model, ort, text, { ...opts, fused: true });
      expect(perOp.fused).toBe(false);
      expect(fused.fused).toBe(true);
      expect(fused.tokens).toBe(perOp.tokens);
      expect(rel(fused.nll, perOp.nll)).toBeLessThan(1e-5);
    }
    // Replacing a parameter's value (as an optimiser step does) rebuilds the fused graph.
    const before = await perplexity(model, ort, text, { ...docs, fused: true });
    const norm = model.norm;
    norm.value = new HostTensor(
      'f32',
      norm.shape,
      norm.value.toF32().map((w) => w * 1.5),
    );
    const after = await perplexity(model, ort, text, { ...docs, fused: true });
    const reference = await perplexity(model, ort, text, docs);
    expect(rel(after.nll, before.nll)).toBeGreaterThan(1e-3);
    expect(rel(after.nll, reference.nll)).toBeLessThan(1e-5);
    model.release();
    expect(ort.liveTensors()).toBe(0);
    await ort.close?.();
  }, 300_000);

  it('on a backend without the capability (js), fused: true runs the ops', async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const text = await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'));
    const js = await createJsBackend({});
    const r = await perplexity(model, js, text, { ...docs, limit: 4, fused: true });
    expect(r.fused).toBe(false);
    expect(r.ppl).toBeGreaterThan(1);
  });
});
