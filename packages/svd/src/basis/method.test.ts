import { withCalibration } from '@lineage/calibrate';
import {
  JsBackend,
  type LlamaModel,
  loadModel,
  methodContext,
  modelFingerprint,
  perplexity,
  readTextFile,
  saveModel,
  TextDataset,
} from '@lineage/core';
import { describeMethod, sharedPath, tempDir } from '@lineage/core/testing';
import { withRecover } from '@lineage/distill';
import { describe, expect, it } from 'vitest';
import { rankForFraction } from '../allocation.js';
import { decomposableLayers } from '../decompose-model.js';
import { LowRankLinear } from '../low-rank-linear.js';
import { BasisLinear } from './basis-linear.js';
import { basisOf } from './decompose-bases.js';
import { basisFamily, basisSelection } from './method.js';

// stories260K with WikiText-2 as the target application (its first 80% of lines; tiny budgets here).
const backend = new JsBackend();
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const WIKI = sharedPath('data', 'wikitext2', 'wiki.test.noblank.txt');
const load = async () => (await loadModel(MODEL)).model;
const tmp = tempDir('lineage-basis-');

let wiki: Promise<{ train: string; held: string }> | undefined;
function wikiText() {
  wiki ??= readTextFile(WIKI).then((t) => {
    const lines = t.split('\n');
    const cut = Math.floor(lines.length * 0.8);
    return { train: lines.slice(0, cut).join('\n'), held: lines.slice(cut, cut + 40).join('\n') };
  });
  return wiki;
}

async function context(seed = 0) {
  const { train } = await wikiText();
  const ctx = methodContext(backend, { data: { text: train, path: 'wiki-train' }, seed });
  return withCalibration(withRecover(ctx, { batchSize: 2, seqLen: 32, lr: 1e-3, logEvery: 1e9 }), {
    data: TextDataset.fromText(train, { path: 'wiki-train' }),
    samples: 8,
    seqLen: 64,
  });
}

const ppl = async (m: LlamaModel) =>
  (await perplexity(m, backend, (await wikiText()).held, { protocol: 'stream', seqLen: 64 })).ppl;

describe('basisOf', () => {
  it('represents every layer exactly, plain and whitened (the model is unchanged before relearning)', async () => {
    const parent = await load();
    const ctx = await context();
    const grams = await ctx.calibrate!(parent, { statistics: ['hessian'] });
    const { whiteningOf } = await import('../factorize.js');
    for (const [name, l] of decomposableLayers(parent).slice(0, 7)) {
      const w = l.denseWeight();
      const scale = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      for (const whitening of [undefined, whiteningOf(await grams.hessian(name), l.inFeatures, name)]) {
        const b = basisOf(l, whitening);
        expect(b.bases).toBeLessThanOrEqual(Math.min(l.outFeatures, l.inFeatures));
        const d = b.denseWeight();
        const err = d.reduce((m, x, i) => Math.max(m, Math.abs(x - w[i]!)), 0);
        expect(err / scale, name).toBeLessThan(1e-4);
      }
    }
  });
});

describe('basisSelection on stories260K', () => {
  it('relearns, prunes in rounds and exports an ordinary low_rank model at the target size', async () => {
    const parent = await load();
    const before = modelFingerprint(parent);
    const out = await basisSelection({
      params: 0.5,
      tokens: 640,
      tokensPerRound: 64,
      rounds: 2,
      newRank: 2,
      scope: 'layer',
    }).apply(parent, await context());
    expect(modelFingerprint(parent)).toBe(before);
    const p = out.provenance!;
    expect(p.method).toBe('basis');
    expect(p.basesPerRound).toHaveLength(2);
    expect(Number(p.achievedFraction)).toBeLessThanOrEqual(0.5);
    for (const [name, l] of decomposableLayers(out)) {
      expect(l).toBeInstanceOf(LowRankLinear);
      // per-layer scope: every layer at the rank the fraction allows (kept pretrained bases + 2 new)
      expect((l as LowRankLinear).rank, name).toBe(rankForFraction(0.5, l.outFeatures, l.inFeatures));
    }
    // honest counts, save / reload with identical perplexity, dense conversion computes the same
    let params = 0;
    let bytes = 0;
    for (const t of out.stateDict().values()) {
      params += t.size;
      bytes += t.byteLength;
    }
    expect([out.stats().params, out.stats().bytes]).toEqual([params, bytes]);
    const dir = `${tmp}/out`;
    await saveModel(out, dir, { format: 'hf' });
    const { model: back } = await loadModel(dir);
    const x = await ppl(out);
    expect(Number.isFinite(x)).toBe(true);
    expect(await ppl(back)).toBe(x);
    expect(back.provenance?.method).toBe('basis');
    expect(Math.abs((await ppl(out.densified())) / x - 1)).toBeLessThan(1e-4);
  }, 120_000);

  it('global scope meets the budget with uneven ranks; coefficient fine-tune and L1 run', async () => {
    const parent = await load();
    const out = await basisSelection({
      params: 0.3,
      tokens: 640,
      tokensPerRound: 64,
      rounds: 2,
      newRank: 1,
      scope: 'global',
      l1: 1e-3,
      finetune: 'coefficients',
      coefficientsOnly: true,
    }).apply(parent, await context());
    expect(Number(out.provenance!.achievedFraction)).toBeLessThanOrEqual(0.3);
    // only the bases' coefficients and new bases trained: norms and embeddings are the parent's
    for (const n of ['model.norm.weight', 'model.embed_tokens.weight'])
      expect(out.namedParameters().get(n)!.value.toF32(), n).toEqual(
        parent.namedParameters().get(n)!.value.toF32(),
      );
    const ranks = decomposableLayers(out).map(([, l]) => (l as LowRankLinear).rank);
    expect(new Set(ranks).size).toBeGreaterThan(1);
    expect(Math.min(...ranks)).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it('bad input: one-line errors before any work', async () => {
    expect(() => basisSelection({ params: 1.5, tokens: 100 })).toThrow(/basis: params must be in \(0, 1\)/);
    expect(() => basisSelection({ params: 0, tokens: 100 })).toThrow(/must be in \(0, 1\)/);
    expect(() => basisSelection({ params: 0.5, tokens: 100, rounds: 4, tokensPerRound: 25 })).toThrow(
      /do not cover 4 rounds/,
    );
    const parent = await load();
    let trained = false;
    const recover = async (m: LlamaModel) => {
      trained = true;
      return m;
    };
    const ctx = { ...(await context()), recover };
    // stories260K's 64×64 layers have room for rank 16 at half size: 16 new bases leave none
    await expect(
      basisSelection({ params: 0.5, tokens: 1000, newRank: 16, scope: 'layer' }).apply(parent, ctx),
    ).rejects.toThrow(/basis: newRank 16: saves nothing.*rank 16/);
    await expect(
      basisSelection({ params: 0.1, tokens: 1000, newRank: 4, scope: 'global' }).apply(parent, ctx),
    ).rejects.toThrow(/basis: newRank 4: saves nothing/);
    expect(trained).toBe(false);
  });
});

describe('basisFamily', () => {
  it('makes one member per size from the parent, each at its size', async () => {
    const family = basisFamily({ sizes: [0.5, 0.3], tokens: 256, tokensPerRound: 64, rounds: 2, newRank: 1 });
    const members = (await family.apply(await load(), await context())) as LlamaModel[];
    expect(members).toHaveLength(2);
    members.forEach((m, i) => {
      expect(m.provenance!.step).toBe(i + 1);
      expect(Number(m.provenance!.achievedFraction)).toBeLessThanOrEqual([0.5, 0.3][i]!);
    });
    expect(members[1]!.stats().params).toBeLessThan(members[0]!.stats().params);
    expect(() => basisFamily({ sizes: [0.3, 0.5], tokens: 256 })).toThrow(/basis: sizes must be decreasing/);
  }, 120_000);
});

describe('BasisLinear in a model', () => {
  it('a model of basis layers clones with U and V frozen', async () => {
    const m = await load();
    for (const [n, l] of decomposableLayers(m)) m.setLinear(n, basisOf(l).withNewBases(1, 0));
    const c = m.clone();
    const [, l] = decomposableLayers(c)[0]!;
    expect(l).toBeInstanceOf(BasisLinear);
    expect((l as BasisLinear).U.trainable).toBe(false);
    expect((l as BasisLinear).w.trainable).toBe(true);
  });
});

describeMethod('basis (50%, 2 rounds, 2 new bases)', {
  create: () => basisSelection({ params: 0.5, tokens: 384, tokensPerRound: 128, rounds: 2, newRank: 2 }),
  model: load,
  context: () => context(3),
  timeout: 120_000,
});
