import { computeStats, loadDataset, sampleSequences, withCalibration } from '@lineage/calibrate';
import { JsBackend, loadModel, methodContext, readTextFile } from '@lineage/core';
import { describeMethod, sharedPath } from '@lineage/core/testing';
import { withRecover } from '@lineage/distill';
import { plrd, svd } from './methods.js';

// The method suite on the real stories260K with small budgets (seconds on the js backend).
const backend = new JsBackend();
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const model = async () => (await loadModel(MODEL)).model;

let parentStats: ReturnType<typeof computeStats> | undefined;
async function stats() {
  parentStats ??= (async () => {
    const parent = await model();
    const sample = sampleSequences(await loadDataset(TRAIN), parent.tokenizer!, {
      samples: 8,
      seqLen: 64,
      seed: 0,
    });
    return computeStats(parent, backend, sample, { statistics: ['hessian'] });
  })();
  return parentStats;
}

describeMethod('svd (data-aware, 50%)', {
  create: () => svd({ params: 0.5, dataAware: true }),
  model,
  context: async () => methodContext(backend, { stats: await stats() }),
  timeout: 120_000,
});

describeMethod('plrd (data-aware, recovered, 80% → 50%)', {
  create: () => plrd({ schedule: [0.8, 0.5], recoverTokens: 512, dataAware: true }),
  model,
  context: async () => {
    const ctx = methodContext(backend, { data: { text: await readTextFile(TRAIN), path: TRAIN }, seed: 3 });
    return withCalibration(withRecover(ctx, { batchSize: 2, seqLen: 32, lr: 1e-3 }), {
      samples: 8,
      seqLen: 64,
    });
  },
  timeout: 120_000,
});
