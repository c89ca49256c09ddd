import { describe, expect, it } from 'vitest';
import { getBackend } from '../backend/registry.js';
import { loadModel } from '../checkpoint/load-model.js';
import { perplexity } from '../eval/perplexity.js';
import { Linear } from '../nn/linear.js';
import type { LlamaModel } from '../nn/llama.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { sharedPath } from '../testing/shared.js';
import { readTextFile } from '../util/text-file.js';
import { applyMethod, type CompressionMethod, methodContext, pipeline } from './method.js';
import { z } from './options.js';
import { getMethod, registerMethod } from './registry.js';

/** The trivial method that proves the contract: every linear weight rounded through bf16 (stored back as f32). */
function bf16RoundTrip(): CompressionMethod<LlamaModel> {
  return {
    name: 'bf16-roundtrip',
    version: '1.0.0',
    async apply(model) {
      for (const [name, layer] of model.linearLayers()) {
        const w = HostTensor.fromF32(layer.denseWeight(), [layer.outFeatures, layer.inFeatures], 'bf16');
        model.setLinear(name, new Linear(w.cast('f32')));
      }
      return model;
    },
  };
}

/** A method returning a family: two copies (to test pipeline flattening). */
function twins(): CompressionMethod<LlamaModel[]> {
  return { name: 'twins', version: '1', apply: async (m) => [m, m] };
}

describe('CompressionMethod contract', () => {
  it('a method that rounds every linear to bf16 keeps perplexity within 1% and the model still evaluates', async () => {
    const backend = await getBackend('js');
    const text = await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'));
    const opts = { protocol: 'documents' as const, separator: '<|endoftext|>', limit: 40 };
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const before = await perplexity(model, backend, text, opts);
    const out = await applyMethod(bf16RoundTrip(), model, methodContext(backend));
    for (const [, l] of out.linearLayers()) {
      const w = l.denseWeight();
      // every value is exactly representable in bf16: the low 16 bits are zero
      expect(new Uint32Array(w.buffer, w.byteOffset, w.length).every((b) => (b & 0xffff) === 0)).toBe(true);
    }
    const after = await perplexity(out, backend, text, opts);
    expect(after.tokens).toBe(before.tokens);
    expect(Math.abs(after.ppl / before.ppl - 1)).toBeLessThan(0.01);
    expect(after.ppl).not.toBe(before.ppl);
  });

  it('pipeline composes left to right and flattens families', async () => {
    const backend = await getBackend('js');
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const p = pipeline(bf16RoundTrip(), twins(), bf16RoundTrip());
    expect(p.name).toBe('bf16-roundtrip+twins+bf16-roundtrip');
    const r = await p.apply(model, methodContext(backend));
    expect(Array.isArray(r) && r.length).toBe(2);
  });

  it('refuses to run a method whose needs the context does not meet', async () => {
    const backend = await getBackend('js');
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const needy: CompressionMethod = {
      name: 'needy',
      version: '1',
      needs: { data: true },
      apply: async (m) => m,
    };
    await expect(applyMethod(needy, model, methodContext(backend))).rejects.toThrow(/needs data/);
    const trainer: CompressionMethod = {
      name: 't',
      version: '1',
      needs: { training: true },
      apply: async (m) => m,
    };
    await expect(applyMethod(trainer, model, methodContext(backend))).rejects.toThrow(/@lineage\/distill/);
    // statistics that lack a named one are refused before work, unless the context can calibrate more
    let applied = false;
    const whitening: CompressionMethod = {
      name: 'w',
      version: '1',
      needs: { stats: ['hessian'] },
      apply: async (m) => {
        applied = true;
        return m;
      },
    };
    const importanceOnly = { has: (s: string) => s === 'importance' };
    await expect(
      applyMethod(whitening, model, methodContext(backend, { stats: importanceOnly })),
    ).rejects.toThrow(/needs the statistics hessian/);
    expect(applied).toBe(false);
    await applyMethod(whitening, model, methodContext(backend, { stats: { has: () => true } }));
    expect(applied).toBe(true);
  });

  it('registers methods by name for the CLI', () => {
    const def = {
      name: 'test-bf16',
      description: 'rounds linears to bf16',
      package: '@lineage/core (test)',
      options: z.object({}),
      create: () => bf16RoundTrip(),
    };
    registerMethod(def);
    registerMethod(def); // same definition again: no-op
    expect(getMethod('test-bf16')).toBe(def);
    expect(() => registerMethod({ ...def })).toThrow(/already registered/);
    expect(() => getMethod('nope')).toThrow(/unknown method 'nope'/);
  });
});
