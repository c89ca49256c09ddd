import { initModel, llamaConfig } from '@lineage/core';
import { describe, expect, it } from 'vitest';
import { configLike, initLike, toModelShape } from './init.js';

const parent = initModel(llamaConfig({ dim: 64, layers: 5, heads: 8, kvHeads: 4, hidden: 172, vocab: 512 }));

describe('initLike', () => {
  it("takes core's shape (Hugging Face names) or the quoted names of `lineage init`, with the same result", () => {
    const hf = initLike(parent, {
      hiddenSize: 32,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 64,
    });
    const quoted = initLike(parent, { dim: 32, layers: 2, heads: 4, kvHeads: 2, hidden: 64 });
    expect(hf.config).toEqual(quoted.config);
    expect(hf.config.intermediateSize).toBe(64);
    expect(hf.config.headDim).toBe(8);
    expect(configLike(parent.config, { hidden: 64 }).intermediateSize).toBe(64);
  });

  it('refuses a shape that mixes the two vocabularies', () => {
    expect(() => toModelShape({ dim: 32, numLayers: 2 } as never)).toThrow(/mixes quoted names/);
  });
});
