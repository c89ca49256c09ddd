import { getBackend, loadModel, perplexity, readTextFile, sharedPath, splitDocuments } from '@lineage/core';

await import('../backend-onnxruntime/dist/index.js');

import { distill, perturbLinearWeights } from './dist/index.js';

const be = process.env.JS ? await getBackend('js') : await getBackend('onnxruntime');
const SEP = '<|endoftext|>';
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const { model: teacher } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
const { model: student } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
perturbLinearWeights(student, 0.3, 1);
const e = (k, d) => process.env[k] ?? d;
const hidden = e('HIDDEN') ? { layers: 'uniform', weight: Number(e('HIDDEN')) } : undefined;
const t0 = performance.now();
const r = await distill({
  teacher,
  student,
  data: [
    sharedPath('data', 'tinystories', 'train-head.txt'),
    { path: DEV, separator: SEP, documents: [0, 600] },
  ],
  evalData: { path: DEV, separator: SEP, documents: [600, 800] },
  evalSeqLen: 512,
  ...(e('EVERY') ? { evalEvery: Number(e('EVERY')) } : {}),
  tokens: Number(e('TOK', 300000)),
  seqLen: Number(e('T', 256)),
  batchSize: Number(e('B', 4)),
  lr: Number(e('LR', 3e-3)),
  minLr: Number(e('LR', 3e-3)) / Number(e('MINDIV', 10)),
  betas: [0.9, Number(e('BETA2', 0.95))],
  weightDecay: Number(e('WD', 0)),
  loss: e('LOSS', 'kl'),
  ...(hidden ? { hidden } : {}),
  seed: Number(e('SEED', 0)),
  backend: be,
  teacherBackend: be,
  logEvery: 40,
  log: { info: (m) => console.log(m), warn: console.log, debug() {} },
});
console.log(
  'RESULT',
  JSON.stringify({
    env: Object.fromEntries(
      Object.entries(process.env).filter(([k]) =>
        ['LR', 'B', 'T', 'HIDDEN', 'MINDIV', 'BETA2', 'LOSS', 'WD', 'TOK', 'SEED'].includes(k),
      ),
    ),
    noised: r.evals[0].ppl,
    recovered: r.evals.at(-1).ppl,
    evals: r.evals.map((x) => [x.step, +x.ppl.toFixed(3)]),
    s: ((performance.now() - t0) / 1000).toFixed(0),
  }),
);
