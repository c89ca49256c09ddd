/*
 * The continuation's text as it follows the prompt: a Hugging Face tokenizer decoding the generated ids on
 * their own drops the first piece's leading space (its decoder strips it), which printed "Onceupon a time".
 */
import { join } from 'node:path';
import { loadModel, saveModel } from '@lineage/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectJson, lineage, MODEL, tempDir } from './test-support.js';

const dir = tempDir('lineage-generate-text-');
const hf = join(dir, 'hf');

beforeAll(async () => {
  const { model } = await loadModel(MODEL);
  await saveModel(model, hf, { format: 'hf' });
}, 60_000);

describe('generate: the continuation keeps its leading space', () => {
  for (const [what, model] of [
    ['llama2.c', MODEL],
    ['Hugging Face', hf],
  ] as const) {
    it(`${what}: 'Once' continues as ' upon a time', streamed and in --json`, async () => {
      const args = ['generate', model, '--prompt', 'Once', '--max-tokens', '3'];
      const j = expectJson(await lineage([...args, '--json']));
      expect(j.ids[0]).toBe(407); // ' upon'
      expect(j.text).toBe(' upon a time');
      const r = await lineage(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('Once upon a time\n');
    });
  }
});
