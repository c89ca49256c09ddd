import { describe, expect, it } from 'vitest';
import { llamaConfig } from './init.js';
import { shapeOf, withShape } from './shape.js';

// stories260K's shape: dim 64, 8 heads over 4 kv heads (head size 8), FFN 172, 5 layers.
const parent = llamaConfig({ dim: 64, layers: 5, heads: 8, kvHeads: 4, hidden: 172, vocab: 512 });

describe('withShape', () => {
  it("keeps the parent's shape, vocabulary and numerics when nothing is overridden", () => {
    expect(withShape(parent, {})).toEqual(parent);
  });

  it('derives the head size of a fresh shape from hiddenSize / numHeads, and the kv heads from the parent', () => {
    const c = withShape(parent, { hiddenSize: 32, numHeads: 2, intermediateSize: 64, numLayers: 2 });
    expect(shapeOf(c)).toEqual({
      hiddenSize: 32,
      intermediateSize: 64,
      numLayers: 2,
      numHeads: 2,
      numKvHeads: 2,
      headDim: 16,
    });
    expect(c.vocabSize).toBe(512);
    expect(c.tieWordEmbeddings).toBe(true);
  });

  it('keeps an explicit head size when pruning width (48 channels, 4 heads of 8)', () => {
    const c = withShape(parent, { hiddenSize: 48, numHeads: 4, numKvHeads: 2, headDim: 8 });
    expect(c.headDim).toBe(8);
    expect(c.numHeads * c.headDim).toBe(32);
  });

  it('refuses impossible shapes with one-line errors', () => {
    expect(() => withShape(parent, { numHeads: 6, numKvHeads: 4, headDim: 8 })).toThrow(
      /numHeads 6 is not a multiple of numKvHeads 4/,
    );
    expect(() => withShape(parent, { hiddenSize: 60, numHeads: 8 })).toThrow(/not a multiple of numHeads/);
    expect(() => withShape(parent, { headDim: 7 })).toThrow(/must be even for RoPE/);
    expect(() => withShape(parent, { numLayers: 0 })).toThrow(/numLayers must be a positive integer/);
  });
});
