import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initModel, llamaConfig, openCheckpoint, saveModel } from '@lineage/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatherFromTable, gatherRows, locateRows } from './embedding.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'lineage-embed-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('embedding rows read by offset', () => {
  it('equal the gather from the whole table, for llama2.c, safetensors and sharded bf16 checkpoints', async () => {
    const m = initModel(llamaConfig({ dim: 32, layers: 1, heads: 4, hidden: 48, vocab: 3000 }), { seed: 4 });
    const seqs = [Int32Array.from([1, 2999, 5, 5, 0]), Int32Array.from([1700, 3]), Int32Array.from([2])];
    const firstRow = [0, 5, 7];
    const targets: [string, object][] = [
      ['m.bin', { format: 'llama2c' }],
      ['hf', { format: 'hf' }],
      ['sharded', { format: 'hf', dtype: 'bf16', maxShardBytes: 50_000 }],
    ];
    for (const [name, opts] of targets) {
      const path = join(tmp, name);
      await saveModel(m, path, opts as Parameters<typeof saveModel>[2]);
      const ck = await openCheckpoint(path, { tokenizerOptional: true });
      expect(await locateRows(ck.source, 'model.embed_tokens.weight'), name).toBeDefined();
      const got = new Float32Array(8 * 32);
      await gatherRows(ck.source, 'model.embed_tokens.weight', seqs, got, firstRow);
      const want = new Float32Array(8 * 32);
      gatherFromTable(await ck.source.read('model.embed_tokens.weight'), seqs, want, firstRow);
      expect(got, name).toEqual(want);
      await expect(
        gatherRows(ck.source, 'model.embed_tokens.weight', [Int32Array.from([3000])], got, [0]),
      ).rejects.toThrow(/token id 3000 is outside the vocabulary/);
      await ck.source.close();
    }
  });
});
