import type { LlamaModel } from '@lineage/core';
import { describeSurgery } from '@lineage/core/testing';
import { expect } from 'vitest';
import { factorize, truncate } from './factorize.js';
import { LOW_RANK_KIND } from './low-rank-linear.js';

// Issue #11's surgery acceptance check on a factored model: every block linear of stories260K as
// A·B at rank 16 (exact SVD truncation), then pruned by core's primitives through LowRankLinear.select
// (factors sliced, never densified) and compared with the hand-sliced A·B of the factored model.
function factored(model: LlamaModel): LlamaModel {
  for (const [name, layer] of model.linearLayers()) model.setLinear(name, truncate(factorize(layer), 16));
  return model;
}

describeSurgery('low_rank', factored, {
  checkKinds: (m) => {
    const kinds = m.linearLayers().map(([, l]) => l.kind);
    expect(new Set(kinds)).toEqual(new Set([LOW_RANK_KIND]));
    for (const [, l] of m.linearLayers()) expect((l as unknown as { rank: number }).rank).toBe(16);
  },
});

// The embedding is a layer slot too: factored (rank 32 of [512, 64]), it is looked up as rows of A times B,
// serves as the tied head, and keepHidden slices B's columns.
describeSurgery(
  'low_rank (embedding and tied head factored too)',
  (m) => {
    factored(m);
    m.setEmbedding(truncate(factorize(m.embedding), 32));
    return m;
  },
  {
    checkKinds: (m) => {
      expect(m.embedding.kind).toBe(LOW_RANK_KIND);
      expect(m.layerKinds()['model.embed_tokens']).toEqual({ kind: LOW_RANK_KIND, meta: { rank: 32 } });
      expect(m.lmHead).toBeUndefined();
    },
  },
);
