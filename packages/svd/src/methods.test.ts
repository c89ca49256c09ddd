import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calibrationCapability, computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import {
  applyMethod,
  JsBackend,
  type LlamaModel,
  loadModel,
  methodContext,
  perplexity,
  readTextFile,
  saveModel,
  splitDocuments,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LowRankLinear } from './low-rank-linear.js';
import { plrd, svd, svdFamily } from './methods.js';

const SEP = '<|endoftext|>';
const backend = new JsBackend();
const tmp = mkdtempSync(join(tmpdir(), 'lineage-svd-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let parent: LlamaModel;
let heldOut: string;
let parentPpl: number;
const ppl = async (m: LlamaModel) =>
  (await perplexity(m, backend, heldOut, { protocol: 'documents', separator: SEP, seqLen: 256 })).ppl;

beforeAll(async () => {
  parent = (await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'))).model;
  const docs = splitDocuments(await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt')), SEP);
  heldOut = docs.slice(760).join(`\n${SEP}\n`); // the last 40 dev stories
  parentPpl = await ppl(parent);
}, 120_000);

function blockRanks(m: LlamaModel): number[] {
  return m
    .linearLayers()
    .filter(([n]) => n !== 'lm_head')
    .map(([, l]) => (l instanceof LowRankLinear ? l.rank : -1));
}

describe('svd method on stories260K', () => {
  let plain: LlamaModel;
  let plainPpl: number;

  it('one-shot 50%: every block linear factored at SVD-LLM ranks, counts honest, parent untouched', async () => {
    const before = parent.stats();
    plain = await applyMethod(svd({ params: 0.5 }), parent, methodContext(backend));
    expect(parent.stats()).toEqual(before);
    const kinds = plain.layerKinds();
    expect(Object.keys(kinds)).toHaveLength(5 * 7);
    // dim 64, hidden 172, 4 KV heads of 8 → k/v are 32×64
    const q = plain.getLinear('model.layers.0.self_attn.q_proj') as LowRankLinear;
    const k = plain.getLinear('model.layers.0.self_attn.k_proj') as LowRankLinear;
    const up = plain.getLinear('model.layers.0.mlp.up_proj') as LowRankLinear;
    expect([q.rank, k.rank, up.rank]).toEqual([16, 10, 23]);
    let stored = 0;
    for (const t of plain.stateDict().values()) stored += t.size;
    expect(plain.stats().params).toBe(stored);
    const rec = plain.provenance!;
    expect(rec.method).toBe('svd');
    expect(rec.achievedFraction as number).toBeLessThanOrEqual(0.5);
    expect(rec.achievedFraction as number).toBeGreaterThan(0.45);
    plainPpl = await ppl(plain);
    expect(plainPpl).toBeGreaterThan(parentPpl);
    expect(Number.isFinite(plainPpl)).toBe(true);
  }, 300_000);

  it('data-aware (whitened by calibration Grams) beats plain SVD at equal size before any recovery', async () => {
    const ds = await loadDataset(sharedPath('data', 'tinystories', 'train-head.txt'));
    const sample = sampleSequences(ds, parent.tokenizer!, { samples: 48, seqLen: 256, seed: 0 });
    const stats = await computeStats(parent, backend, sample, { statistics: ['hessian'] });
    const aware = await applyMethod(
      svd({ params: 0.5, dataAware: true }),
      parent,
      methodContext(backend, { stats }),
    );
    expect(aware.stats().params).toBe(plain.stats().params);
    const awarePpl = await ppl(aware);
    expect(awarePpl).toBeLessThan(plainPpl);
  }, 300_000);

  it('a saved member reloads with the same perplexity', async () => {
    const dir = join(tmp, 'svd-0.5');
    await saveModel(plain, dir, { format: 'hf' });
    const { model } = await loadModel(dir);
    expect(model.provenance?.method).toBe('svd');
    expect(await ppl(model)).toBe(plainPpl);
  }, 300_000);

  it('energy allocation stays within the budget', async () => {
    const m = await applyMethod(svd({ params: 0.4, allocation: 'energy' }), parent, methodContext(backend));
    expect(m.provenance!.achievedFraction as number).toBeLessThanOrEqual(0.4);
    expect(m.provenance!.achievedFraction as number).toBeGreaterThan(0.38);
  }, 300_000);

  it('bad input: fractions outside (0, 1), a schedule that is not decreasing, no stats for data-aware', async () => {
    expect(() => svd({ params: 1.2 })).toThrow(/in \(0, 1\)/);
    expect(() => svd({ params: 0 })).toThrow(/in \(0, 1\)/);
    expect(() => plrd({ schedule: [0.6, 0.8], recoverTokens: 0 })).toThrow(/decreasing/);
    expect(() => plrd({ schedule: [], recoverTokens: 0 })).toThrow(/empty/);
    await expect(
      applyMethod(svd({ params: 0.5, dataAware: true }), parent, methodContext(backend)),
    ).rejects.toThrow(/needs calibration statistics/);
    await expect(applyMethod(svd({ rank: 47 }), parent, methodContext(backend))).rejects.toThrow(
      /saves nothing/,
    );
  });
});

describe('plrd method', () => {
  it('each member derives from the previous: ranks only go down, lineage recorded', async () => {
    const family = await applyMethod(
      plrd({ schedule: [0.8, 0.6, 0.45], recoverTokens: 0 }),
      parent,
      methodContext(backend),
    );
    expect(family).toHaveLength(3);
    const ranks = family.map(blockRanks);
    for (let i = 1; i < ranks.length; i++)
      for (const [j, r] of ranks[i]!.entries()) expect(r).toBeLessThanOrEqual(ranks[i - 1]![j]!);
    const params = family.map((m) => m.stats().params);
    expect(params[0]!).toBeGreaterThan(params[1]!);
    expect(params[1]!).toBeGreaterThan(params[2]!);
    family.forEach((m, i) => {
      expect(m.provenance).toMatchObject({
        method: 'plrd',
        step: i + 1,
        schedule: [0.8, 0.6, 0.45],
        tokens: 0,
      });
      expect((m.provenance!.parent as { fingerprint: string }).fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    });
    // without recovery, re-truncating a truncation is the one-shot truncation (same subspace, same ranks)
    const oneShot = await applyMethod(svd({ params: 0.45 }), parent, methodContext(backend));
    expect(blockRanks(oneShot)).toEqual(ranks[2]);
    const a = family[2]!.getLinear('model.layers.2.mlp.down_proj').denseWeight();
    const b = oneShot.getLinear('model.layers.2.mlp.down_proj').denseWeight();
    let diff = 0;
    let norm = 0;
    for (let i = 0; i < a.length; i++) {
      diff += (a[i]! - b[i]!) ** 2;
      norm += b[i]! ** 2;
    }
    expect(Math.sqrt(diff / norm)).toBeLessThan(1e-5);
  }, 300_000);

  it('recovers each member through the context', async () => {
    const calls: number[] = [];
    const ctx = methodContext(backend, {
      recover: async (m, budget) => {
        calls.push(budget.tokens);
        expect(budget.teacher).toBe(parent);
        return m;
      },
    });
    const family = await applyMethod(plrd({ schedule: [0.7, 0.5], recoverTokens: 1000 }), parent, ctx);
    expect(calls).toEqual([1000, 1000]);
    expect(family.map((m) => m.provenance!.tokens)).toEqual([1000, 2000]);
  }, 300_000);

  it('data-aware: step 1 whitens by the parent, every later step by the member it truncates', async () => {
    const calibrate = calibrationCapability({
      data: sharedPath('data', 'tinystories', 'train-head.txt'),
      samples: 16,
      seqLen: 128,
      backend,
    });
    const seen: LlamaModel[] = [];
    const ctx = methodContext(backend, {
      calibrate: async (m, request) => {
        seen.push(m);
        return calibrate(m, request);
      },
    });
    const family = await applyMethod(
      plrd({ schedule: [0.8, 0.6, 0.45], recoverTokens: 0, dataAware: true }),
      parent,
      ctx,
    );
    expect(seen).toEqual([parent, family[0], family[1]]);
    expect(family.map((m) => m.provenance!.whitenedBy)).toEqual(['parent', 'member 1', 'member 2']);
    // one-shot svd calibrates the model it is given through the same capability
    seen.length = 0;
    const one = await applyMethod(svd({ params: 0.6, dataAware: true }), parent, ctx);
    expect(seen).toEqual([parent]);
    expect(one.stats().params).toBe(family[1]!.stats().params);
    // recalibrate: false keeps the parent's Grams throughout
    seen.length = 0;
    await applyMethod(
      plrd({ schedule: [0.8, 0.6], recoverTokens: 0, dataAware: true, recalibrate: false }),
      parent,
      ctx,
    );
    expect(seen).toEqual([parent]);
  }, 300_000);
});

describe('svd as a family (one-shot per size)', () => {
  it('cuts every member from the parent, recovers each from the parent, and records it', async () => {
    const seen: LlamaModel[] = [];
    const ctx = methodContext(backend, {
      recover: async (m, budget) => {
        seen.push(budget.teacher!);
        expect(budget.tokens).toBe(500);
        return m;
      },
    });
    const method = svdFamily({ sizes: [0.7, 0.45], recoverTokens: 500 });
    expect(method).toMatchObject({ name: 'svd', derivation: 'independent', sizes: [0.7, 0.45] });
    expect(method.needs).toMatchObject({ training: true });
    const family = await applyMethod(method, parent, ctx);
    expect(seen).toEqual([parent, parent]);
    // independent: the second member is exactly the one-shot cut of the parent
    const oneShot = await applyMethod(svd({ params: 0.45 }), parent, methodContext(backend));
    expect(blockRanks(family[1]!)).toEqual(blockRanks(oneShot));
    const a = family[1]!.getLinear('model.layers.1.self_attn.q_proj').denseWeight();
    expect(a).toEqual(oneShot.getLinear('model.layers.1.self_attn.q_proj').denseWeight());
    expect(family.map((m) => m.provenance)).toMatchObject([
      { method: 'svd', step: 1, fraction: 0.7, derivedFrom: 'parent', tokens: 500, recoverTokens: 500 },
      { method: 'svd', step: 2, fraction: 0.45, derivedFrom: 'parent', tokens: 500, recoverTokens: 500 },
    ]);
    expect(() => svdFamily({ sizes: [0.45, 0.7] })).toThrow(/svd: sizes must be decreasing/);
    await expect(applyMethod(method, parent, methodContext(backend))).rejects.toThrow(/needs training/);
  }, 300_000);
});
