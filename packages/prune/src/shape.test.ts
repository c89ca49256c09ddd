import { loadModel } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { budgetOf, candidates } from './search.js';
import { denseParams, parseAxes, parseShape, prunedConfig } from './shape.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const parent = async () => (await loadModel(MODEL)).model;

describe('target shapes', () => {
  it('parses --shape into a typed shape; bad parts are one-line errors', () => {
    expect(parseShape('layers=4,hidden=48,heads=4,kv-heads=2,ffn=128')).toEqual({
      layers: 4,
      hidden: 48,
      heads: 4,
      kvHeads: 2,
      ffn: 128,
    });
    expect(() => parseShape('depth=3')).toThrow(/'depth=3' is not one of layers=<n>/);
    expect(() => parseShape('ffn=1,ffn=2')).toThrow(/names ffn twice/);
    expect(() => parseShape('')).toThrow(/--shape is empty/);
    expect(() => parseAxes('heads,width')).toThrow(/unknown axis 'width'/);
  });

  it('refuses shapes slicing cannot reach, naming the problem', async () => {
    const c = (await parent()).config; // 8 heads over 4 kv groups, head size 8
    expect(() => prunedConfig(c, { layers: 0 })).toThrow(/keeps no layer/);
    expect(() => prunedConfig(c, { heads: 6, kvHeads: 4 })).toThrow(
      /heads 6 does not divide over 4 kv heads/,
    );
    expect(() => prunedConfig(c, { heads: 8, kvHeads: 2 })).toThrow(
      /4 per group, but the parent's groups hold 2/,
    );
    expect(() => prunedConfig(c, { hidden: 80 })).toThrow(/exceeds the parent's 64/);
    expect(() => prunedConfig(c, { ffn: 100 }, 64)).toThrow(/not a multiple of 64/);
    expect(() => prunedConfig(c, { kvHeads: 5 })).toThrow(/kv-heads 5 exceeds/);
    expect(prunedConfig(c, { kvHeads: 2 })).toMatchObject({ numKvHeads: 2, numHeads: 4, headDim: 8 });
  });

  it('counts parameters from the config as the model does (embedding and head included)', async () => {
    const m = await parent();
    expect(denseParams(m.config, false)).toBe(m.stats().params);
    expect(denseParams(m.config, true)).toBe(m.stats().params + m.config.vocabSize * m.config.hiddenSize);
  });
});

describe('architecture search space', () => {
  it('the k largest shapes within the budget, width-only and depth-only among them', async () => {
    const c = (await parent()).config;
    const total = denseParams(c, false);
    const budget = budgetOf(0.5, total);
    const list = candidates(c, budget, 6, {
      axes: parseAxes('heads,ffn,hidden,layers'),
      multipleOf: 1,
      untiedHead: false,
    });
    expect(list.length).toBe(6);
    for (const x of list) {
      expect(x.params).toBeLessThanOrEqual(budget);
      expect(x.params).toBe(denseParams(x.config, false));
    }
    expect(list.map((x) => x.params)).toEqual([...list.map((x) => x.params)].sort((a, b) => b - a));
    expect(list.some((x) => x.config.numLayers === c.numLayers)).toBe(true); // width only
    expect(
      list.some(
        (x) => x.config.hiddenSize === 64 && x.config.intermediateSize === 172 && x.config.numHeads === 8,
      ),
    ).toBe(true); // depth only
  });

  it('one axis at a time reaches the budget through the wide grid', async () => {
    const c = (await parent()).config;
    const budget = budgetOf(0.7, denseParams(c, false));
    for (const axis of ['ffn', 'hidden', 'layers'] as const) {
      const [best] = candidates(c, budget, 1, { axes: [axis], multipleOf: 1, untiedHead: false });
      expect(best!.params).toBeLessThanOrEqual(budget);
    }
  });

  it('a budget at or above the parent, or below every shape, is a one-line error', async () => {
    const c = (await parent()).config;
    const total = denseParams(c, false);
    const s = { axes: parseAxes('heads,ffn,hidden,layers'), multipleOf: 1, untiedHead: false };
    expect(() => candidates(c, total, 4, s)).toThrow(/not below the parent's 260032 /);
    expect(() => candidates(c, 1000, 4, s)).toThrow(/too small: no shape .*the smallest has/);
    expect(() => candidates(c, budgetOf(0.5, total), 4, { ...s, axes: ['heads'] })).toThrow(/too small/);
    expect(() => budgetOf(1.5, total)).toThrow(/fraction in \(0, 1\) or a whole parameter count/);
  });
});
