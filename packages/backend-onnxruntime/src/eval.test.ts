import { readFileSync } from 'node:fs';
import { createJsBackend, loadModel, type PerplexityOptions, perplexity, readTextFile } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { createOnnxruntimeBackend } from './base.js';

// The real stories260K on TinyStories dev stories, documents protocol (as `lineage eval --doc-separator`).
const docs: PerplexityOptions = { protocol: 'documents', separator: '<|endoftext|>' };

async function setup() {
  const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
  const text = await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'));
  return { model, text };
}

/** The independent reference perplexity of the full dev set (`ppl=4.4691` in the fixture). */
function referencePpl(): number {
  const line = readFileSync(sharedPath('fixtures', 'ref-dev-ppl.txt'), 'utf8');
  const m = /ppl=([\d.]+)/.exec(line);
  if (!m) throw new Error(`no ppl= in ${line}`);
  return Number(m[1]);
}

describe('stories260K eval on onnxruntime (cpu)', () => {
  it('the first 100 dev documents agree with the js backend within 1e-4 relative', async () => {
    const { model, text } = await setup();
    const ort = await createOnnxruntimeBackend({ device: 'cpu' });
    const js = await createJsBackend({});
    const a = await perplexity(model, ort, text, { ...docs, limit: 100 });
    const b = await perplexity(model, js, text, { ...docs, limit: 100 });
    expect(a.tokens).toBe(b.tokens);
    expect(Math.abs(a.ppl - b.ppl) / b.ppl).toBeLessThan(1e-4);
    model.release(); // the uploaded weights
    expect(ort.liveTensors()).toBe(0);
    await ort.close?.();
  }, 600_000);

  it('the full dev set is within 0.1% of the reference perplexity', async () => {
    const { model, text } = await setup();
    const ort = await createOnnxruntimeBackend({ device: 'cpu' });
    const r = await perplexity(model, ort, text, docs);
    const ref = referencePpl();
    expect(r.sequences).toBe(800);
    expect(Math.abs(r.ppl - ref) / ref).toBeLessThan(1e-3);
    await ort.close?.();
  }, 900_000);
});

let webgpu: string | undefined;
try {
  const b = await createOnnxruntimeBackend({ device: 'webgpu' });
  await b.close?.();
} catch (e) {
  webgpu = (e as Error).message;
}

describe.skipIf(webgpu !== undefined)(
  `stories260K eval on onnxruntime (webgpu)${webgpu ? ` (skipped: ${webgpu})` : ''}`,
  () => {
    it('the first 16 dev documents agree with the js backend within 1e-4 relative', async () => {
      const { model, text } = await setup();
      const gpu = await createOnnxruntimeBackend({ device: 'webgpu' });
      const js = await createJsBackend({});
      const a = await perplexity(model, gpu, text, { ...docs, limit: 16 });
      const b = await perplexity(model, js, text, { ...docs, limit: 16 });
      expect(a.tokens).toBe(b.tokens);
      expect(Math.abs(a.ppl - b.ppl) / b.ppl).toBeLessThan(1e-4);
      model.release(); // the uploaded weights
      expect(gpu.liveTensors()).toBe(0);
      await gpu.close?.();
    }, 900_000);
  },
);
