import { JsBackend, loadModel, methodContext } from '@lineage/core';
import { countingTokenizer, sharedPath } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { withRecover } from './recover.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const SEP = '<|endoftext|>';

describe('data of successive recoveries', () => {
  it('is tokenized once: the second recovery of a pipeline re-uses the first one’s tokens', async () => {
    const { model } = await loadModel(MODEL);
    const { tokenizer, calls } = countingTokenizer(model.tokenizer!);
    model.tokenizer = tokenizer;
    const js = new JsBackend();
    const ctx = withRecover(methodContext(js), {
      data: { path: DEV, separator: SEP, documents: [0, 100] },
      holdout: 10,
      evalEvery: 1,
      evalLimit: 4,
      seqLen: 32,
      batchSize: 2,
    });
    const first = await ctx.recover!(model, { tokens: 128 });
    const afterFirst = calls();
    // 90 training documents and 4 held-out ones (evaluated at every step), each tokenized once
    expect(afterFirst).toBe(94);
    await ctx.recover!(first, { tokens: 128 });
    expect(calls()).toBe(afterFirst);
  }, 120_000);
});
