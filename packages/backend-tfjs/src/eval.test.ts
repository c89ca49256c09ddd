import { readFileSync } from 'node:fs';
import { getBackend, loadModel, type PerplexityOptions, perplexity, readTextFile } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { createTfjsBackend } from './base.js';

// The real stories260K model on TinyStories dev stories (documents protocol) through the wasm engine.
const modelPath = sharedPath('models', 'stories260K', 'stories260K.bin');
const dataPath = sharedPath('data', 'tinystories', 'valid-dev.txt');
const docs: PerplexityOptions = { protocol: 'documents', separator: '<|endoftext|>' };

/** The independent reference's perplexity on the full dev set (fixtures/ref-dev-ppl.txt: `… ppl=4.4691`). */
function referencePpl(): number {
  const line = readFileSync(sharedPath('fixtures', 'ref-dev-ppl.txt'), 'utf8');
  const m = /ppl=([\d.]+)/.exec(line);
  if (!m) throw new Error(`no ppl= in fixtures/ref-dev-ppl.txt: ${line}`);
  return Number(m[1]);
}

describe('stories260K through tfjs (wasm engine)', () => {
  it('first 100 dev stories: same perplexity as the js backend (1e-4 relative)', async () => {
    const { model } = await loadModel(modelPath);
    const text = await readTextFile(dataPath);
    const tfjs = await createTfjsBackend({ engine: 'wasm' });
    const js = await getBackend('js');
    const a = await perplexity(model, tfjs, text, { ...docs, limit: 100 });
    const b = await perplexity(model, js, text, { ...docs, limit: 100 });
    expect(a.tokens).toBe(b.tokens);
    expect(Math.abs(a.ppl / b.ppl - 1)).toBeLessThan(1e-4);
    model.release();
    expect(tfjs.liveTensors()).toBe(0);
    await tfjs.close();
  }, 600_000);

  it('full dev set (800 stories): within 0.1% of the reference perplexity', async () => {
    const { model } = await loadModel(modelPath);
    const text = await readTextFile(dataPath);
    const tfjs = await createTfjsBackend({ engine: 'wasm' });
    const r = await perplexity(model, tfjs, text, docs);
    expect(r.sequences).toBe(800);
    expect(Math.abs(r.ppl / referencePpl() - 1)).toBeLessThan(1e-3);
    model.release();
    await tfjs.close();
  }, 900_000);
});
