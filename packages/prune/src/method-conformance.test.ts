import { computeStats, loadDataset, sampleSequences, withCalibration } from '@lineage/calibrate';
import {
  applyMethod,
  getMethod,
  JsBackend,
  loadModel,
  methodContext,
  readTextFile,
  splitDocuments,
} from '@lineage/core';
import { describeMethod, sharedPath } from '@lineage/core/testing';
import { withRecover } from '@lineage/distill';
import { describe, expect, it } from 'vitest';
import { minitron, minitronFamily, topK } from './index.js';

// The method suite on the real stories260K with small budgets (seconds on the js backend).
const backend = new JsBackend();
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const SEP = '<|endoftext|>';
const model = async () => (await loadModel(MODEL)).model;

let textP: Promise<string> | undefined;
/** The first 400 dev stories: enough to calibrate, distil a few hundred tokens and rank. */
const text = () => {
  textP ??= readTextFile(DEV).then((t) => splitDocuments(t, SEP).slice(0, 400).join(`\n${SEP}\n`));
  return textP;
};

async function context(seed = 3) {
  const ctx = methodContext(backend, { data: { text: await text(), path: DEV, separator: SEP }, seed });
  return withCalibration(withRecover(ctx, { batchSize: 2, seqLen: 32, lr: 1e-3 }), {
    samples: 8,
    seqLen: 64,
  });
}

describeMethod('minitron (--params 0.5, search over 2 shapes, recovered)', {
  create: () => minitron({ params: 0.5, search: 2, searchTokens: 64, searchHoldout: 8, recoverTokens: 256 }),
  model,
  context: () => context(),
  timeout: 120_000,
});

describeMethod('minitron family (0.8 → 0.6, random importance, recovered)', {
  create: () => minitronFamily({ sizes: [0.8, 0.6], importance: 'random', search: 1, recoverTokens: 128 }),
  model,
  context: () => context(),
  timeout: 120_000,
});

describe('minitron', () => {
  it('is registered with its options and a family', () => {
    const d = getMethod('minitron');
    expect(d.package).toBe('@lineage/prune');
    expect(d.family?.replaces).toContain('params');
  });

  it('records the chosen shape, the candidates and the parameter count in provenance', async () => {
    const parent = await model();
    const logs: string[] = [];
    const ctx = {
      ...(await context()),
      log: { info: (m: string) => logs.push(m), warn: () => {}, debug: () => {} },
    };
    const out = await applyMethod(minitron({ params: 0.6, search: 3, searchHoldout: 8 }), parent, ctx);
    const p = out.provenance!;
    expect(p.method).toBe('minitron');
    expect(out.stats().params).toBeLessThanOrEqual(Math.floor(0.6 * parent.stats().params));
    expect(p.candidates).toHaveLength(3);
    expect(p.shape).toMatch(/^layers=\d+,hidden=\d+,heads=\d+,kv-heads=\d+,ffn=\d+$/);
    expect(logs.join('\n')).toMatch(/minitron search: 3 candidates/);
  });

  it('a depth cut distils with the hidden-state loss between each kept layer and the same parent layer', async () => {
    const parent = await model();
    const ctx = await context();
    const budgets: { hidden?: { layers: readonly (readonly [number, number])[] } }[] = [];
    const recover = ctx.recover!;
    const spy = {
      ...ctx,
      recover: (m: Parameters<typeof recover>[0], b: Parameters<typeof recover>[1]) => {
        budgets.push(b);
        return recover(m, b);
      },
    };
    const out = await applyMethod(
      minitron({ shape: 'layers=3', hiddenLoss: 1, recoverTokens: 64, depth: 'block' }),
      parent,
      spy,
    );
    const kept = out.provenance!.parentLayers as number[];
    expect(kept).toHaveLength(3);
    expect(budgets[0]!.hidden!.layers).toEqual(kept.map((t, s) => [s, t]));
    // the mapping is of the kept layers (not the uniform one), and the run used it to the end
    const blocks = await (
      ctx.stats ?? (await ctx.calibrate!(parent, { statistics: ['importance'] }))
    ).blockImportance();
    expect(kept).toEqual([...topK(blocks, 3)]);
  });

  it('refuses statistics of another model, options that conflict, and a budget at the parent size', async () => {
    const parent = await model();
    const other = await model(); // a separate load: same shape, one weight changed
    const w = other.embed.value.data as Float32Array;
    w[0] = w[0]! + 1;
    const sample = sampleSequences(await loadDataset(TRAIN), other.tokenizer!, {
      samples: 4,
      seqLen: 32,
      seed: 0,
    });
    const stats = await computeStats(other, backend, sample, { statistics: ['importance'] });
    await expect(
      applyMethod(minitron({ params: 0.5, search: 1 }), parent, methodContext(backend, { stats })),
    ).rejects.toThrow(/statistics were computed for another model/);
    expect(() => minitron({ params: 0.5, shape: 'layers=3' })).toThrow(/either params .* or shape/);
    expect(() => minitron({})).toThrow(/either params/);
    expect(() => minitron({ shape: 'layers=3,depth=2' })).toThrow(/'depth=2' is not one of/);
    await expect(
      applyMethod(
        minitron({ params: parent.stats().params, importance: 'random' }),
        parent,
        methodContext(backend),
      ),
    ).rejects.toThrow(/not below the parent's/);
    await expect(
      applyMethod(minitron({ shape: 'layers=0', importance: 'random' }), parent, methodContext(backend)),
    ).rejects.toThrow(/keeps no layer/);
  });
});
