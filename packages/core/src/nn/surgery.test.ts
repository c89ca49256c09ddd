import { describe, expect, it } from 'vitest';
import { tinyModel } from '../autograd/testing.js';
import { createJsBackend } from '../backend/js/js-backend.js';
import { Ops } from '../backend/ops.js';
import { denseWeightsOf, pruneByHand, referenceLogits } from '../testing/reference-llama.js';
import { applyPlan, describeSurgery, relativeError, seededChoice } from '../testing/surgery-suite.js';
import { keepFfn, keepHeads, keepHidden, keepKvGroups, keepLayers } from './surgery.js';

// The acceptance check of issue #11 for dense linears (the low_rank run is in @lineage/svd).
describeSurgery('dense', (m) => m, {
  checkKinds: (m) => expect(new Set(m.linearLayers().map(([, l]) => l.kind))).toEqual(new Set(['linear'])),
});

async function logits(model: ReturnType<typeof tinyModel>, ids: number[]): Promise<Float32Array> {
  const ops = new Ops(await createJsBackend());
  return ops.readF32(await model.forward(ops, Int32Array.from(ids)));
}

describe('surgery primitives on a model with biases and an untied head', () => {
  // 3 layers, dim 16, heads 4 over 2 kv groups (head size 4), FFN 24, vocab 11, q/k/v/o/MLP biases.
  const ids = [1, 4, 2, 9, 3, 3, 7, 0];

  it('keep kv groups, FFN neurons, hidden channels and layers as hand slicing does (head and biases sliced too)', async () => {
    const model = tinyModel({ layers: 3 });
    const plan = {
      kvGroups: [[1], [0], [1]],
      ffn: [0, 1, 2].map((l) => seededChoice(24, 10, l)),
      hidden: seededChoice(16, 12, 9),
      layers: [0, 2],
    };
    const pruned = applyPlan(model, plan);
    expect(pruned.lmHead?.inFeatures).toBe(12);
    const ref = pruneByHand(model.config, denseWeightsOf(model), plan);
    expect(pruned.config).toEqual(ref.config);
    expect(
      relativeError(await logits(pruned, ids), referenceLogits(ref.config, ref.weights, ids)),
    ).toBeLessThan(1e-5);
  });

  it('keepHeads keeps query heads within their kv groups, in the order given per group', async () => {
    const model = tinyModel({ layers: 2 });
    // heads 0,1 read kv group 0; heads 2,3 read group 1. Keep one per group, chosen differently per layer.
    const heads = [
      [3, 0],
      [1, 2],
    ];
    const pruned = keepHeads(model, heads);
    expect([pruned.config.numHeads, pruned.config.numKvHeads]).toEqual([2, 2]);
    const ref = pruneByHand(model.config, denseWeightsOf(model), { heads });
    expect(pruned.config).toEqual(ref.config);
    expect(
      relativeError(await logits(pruned, ids), referenceLogits(ref.config, ref.weights, ids)),
    ).toBeLessThan(1e-5);
  });

  it('is a true reference: the unpruned tiny model agrees with the float64 forward', async () => {
    const model = tinyModel({ layers: 2 });
    const want = referenceLogits(model.config, denseWeightsOf(model), ids);
    expect(relativeError(await logits(model, ids), want)).toBeLessThan(1e-5);
  });

  it('carries the tokenizer, provenance and trainable flags; the parent is left as it was', () => {
    const model = tinyModel({ layers: 2 });
    model.provenance = { method: 'test' };
    model.blocks[1]!.linears['mlp.up_proj'].parameters().get('weight')!.trainable = false;
    const before = model.stateDict();
    const pruned = keepFfn(model, [5, 3, 1]);
    expect(pruned.provenance).toEqual({ method: 'test' });
    expect(pruned.provenance).not.toBe(model.provenance);
    expect(pruned.blocks[1]!.linears['mlp.up_proj'].parameters().get('weight')!.trainable).toBe(false);
    expect(pruned.blocks[0]!.linears['mlp.up_proj'].parameters().get('weight')!.trainable).toBe(true);
    expect(model.stateDict()).toEqual(before);
    expect(model.config.intermediateSize).toBe(24);
  });

  it('refuses bad selections with one-line errors', () => {
    const model = tinyModel({ layers: 2 });
    const cases: [() => unknown, RegExp][] = [
      [() => keepKvGroups(model, [2]), /keepKvGroups: layer 0's kv groups: index 2 is outside 0\.\.1/],
      [() => keepKvGroups(model, [[0], [0, 1]]), /layer 1 keeps 2 kv groups, layer 0 keeps 1/],
      [() => keepKvGroups(model, [[0], [1], [0]]), /3 index lists given for a model of 2 layers/],
      [() => keepFfn(model, [1, 1]), /layer 0's FFN neurons: index 1 is repeated/],
      [() => keepHeads(model, [0, 1, 2]), /3 query heads cannot split evenly over the 2 kv groups/],
      [() => keepHeads(model, [0, 1]), /layer 0 keeps 2 query heads of kv group 0, but 1 of each is needed/],
      [() => keepHidden(model, [16]), /keepHidden: hidden channels: index 16 is outside 0\.\.15/],
      [() => keepLayers(model, []), /keepLayers: layers: keeps nothing/],
    ];
    for (const [f, msg] of cases) {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(err, String(msg)).toBeInstanceOf(Error);
      expect((err as Error).name, String(msg)).toBe('LineageError');
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).not.toContain('\n');
    }
  });
});
