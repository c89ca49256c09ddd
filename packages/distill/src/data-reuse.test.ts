import { JsBackend, loadModel, methodContext, type Tokenizer } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { withRecover } from './recover.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const SEP = '<|endoftext|>';

describe('data of successive recoveries', () => {
  it('is tokenized once: the second recovery of a pipeline re-uses the first one’s tokens', async () => {
    const { model } = await loadModel(MODEL);
    const tok = model.tokenizer!;
    let calls = 0;
    model.tokenizer = {
      vocabSize: tok.vocabSize,
      bosId: tok.bosId,
      eosId: tok.eosId,
      source: tok.source,
      encode: (t, o) => {
        calls++;
        return tok.encode(t, o);
      },
      decode: (ids) => tok.decode(ids),
    } satisfies Tokenizer;
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
    const afterFirst = calls;
    // 90 training documents and 4 held-out ones (evaluated at every step), each tokenized once
    expect(afterFirst).toBe(94);
    await ctx.recover!(first, { tokens: 128 });
    expect(calls).toBe(afterFirst);
  }, 120_000);
});
