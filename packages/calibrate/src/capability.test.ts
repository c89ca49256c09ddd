import { JsBackend, loadModel, methodContext } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { computeStats } from './calibrate.js';
import { calibrationCapability, withCalibration } from './capability.js';
import { loadDataset, sampleSequences } from './dataset.js';

const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');

describe('the calibrate capability of a method context', () => {
  it('gives the statistics computeStats gives on the same seeded sample, for any model it is handed', async () => {
    const js = new JsBackend();
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const calibrate = calibrationCapability({ data: TRAIN, samples: 8, seqLen: 64, seed: 3, backend: js });
    const got = (await calibrate(model, { statistics: ['hessian'] })) as Awaited<
      ReturnType<typeof computeStats>
    >;
    const ds = await loadDataset(TRAIN);
    const sample = sampleSequences(ds, model.tokenizer!, { samples: 8, seqLen: 64, seed: 3 });
    const want = await computeStats(model, js, sample, { statistics: ['hessian'] });
    const name = 'model.layers.1.mlp.down_proj';
    expect(await got.hessian(name)).toEqual(await want.hessian(name));
    expect(got.info.tokens).toBe(want.info.tokens);
  }, 120_000);

  it('calibrates on a range of documents only (held-out documents left out)', async () => {
    const js = new JsBackend();
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const dev = sharedPath('data', 'tinystories', 'valid-dev.txt');
    const sep = '<|endoftext|>';
    const calibrate = calibrationCapability({
      data: dev,
      separator: sep,
      documents: [0, 3],
      seqLen: 64,
      backend: js,
    });
    const got = (await calibrate(model, { statistics: ['hessian'] })) as Awaited<
      ReturnType<typeof computeStats>
    >;
    // samples default to every document when there are fewer than 64: here the 3 kept ones
    const docs = (await loadDataset(dev, { separator: sep })).documents().slice(0, 3);
    const tokens = docs.reduce(
      (n, d) => n + Math.min(64, model.tokenizer!.encode(d, { bos: true }).length),
      0,
    );
    expect(got.info.tokens).toBe(tokens);
  }, 120_000);

  it('withCalibration takes the context data file, and needs one', () => {
    const js = new JsBackend();
    expect(() => withCalibration(methodContext(js))).toThrow(/calibration needs text/);
    const ctx = withCalibration(methodContext(js, { data: { text: 'x', path: TRAIN } }));
    expect(typeof ctx.calibrate).toBe('function');
  });
});
