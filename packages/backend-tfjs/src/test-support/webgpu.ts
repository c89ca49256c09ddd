import { getBackend, loadModel, perplexity, readTextFile } from '@lineage/core';
import { describeBackendConformance, sharedPath } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { createTfjsBackend, type TfjsBackend } from '../base.js';

/**
 * Opens the webgpu engine on one Dawn backend ('vulkan' or 'opengles'). Resolves to the backend, or to
 * the reason it cannot run here (no adapter, package missing), for a test to report as skipped.
 */
export async function openWebgpu(dawnBackend: string): Promise<TfjsBackend | string> {
  try {
    return await createTfjsBackend({ engine: 'webgpu', dawnBackends: [dawnBackend] });
  } catch (e) {
    return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
  }
}

/**
 * The conformance suite and a stories260K check on WebGPU through one Dawn backend, or skipped tests
 * naming the reason. The model check scores the first dev stories (a software adapter is slow; the
 * package README gives the full-set number).
 */
export function describeWebgpu(dawnBackend: string, opened: TfjsBackend | string): void {
  const title = `tfjs webgpu (Dawn ${dawnBackend})`;
  if (typeof opened === 'string') {
    describe(title, () => {
      it.skip(`conformance (skipped: ${opened})`, () => {});
      it.skip(`stories260K perplexity (skipped: ${opened})`, () => {});
    });
    return;
  }
  describe(title, () => {
    it(`stories260K, first 16 dev stories: same perplexity as the js backend (${opened.engineDescription})`, async () => {
      const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
      const text = await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'));
      const opts = { protocol: 'documents', separator: '<|endoftext|>', limit: 16 } as const;
      const a = await perplexity(model, opened, text, opts);
      const b = await perplexity(model, await getBackend('js'), text, opts);
      expect(Math.abs(a.ppl / b.ppl - 1)).toBeLessThan(1e-4);
      model.release();
    }, 600_000);
  });
  describeBackendConformance(`tfjs webgpu (${opened.engineDescription})`, async () => opened);
}
