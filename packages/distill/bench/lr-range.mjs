// The learning-rate range test (`lr: 'auto'`) on the damaged stories260K of the recovery bench: which peak
// rate it picks for the default recovery objective (KL + hidden-state loss), to set beside the width rule's
// 2e-3 and the recovery sweep in BENCHMARKS.md ("Training defaults").
//
// node packages/distill/bench/lr-range.mjs [--seq-len 256] [--batch 4] [--steps 100] [--backend js|onnxruntime]
// --smoke: 6 steps of 2 × 32 tokens on js.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { getBackend, JsBackend, loadModel, Ops, sharedPath } from '@lineage/core';
import { sane, smoke } from '../../../scripts/bench-kit.mjs';
import { loadSources, lrRangeTest, perturbLinearWeights, tokenizeSources } from '../dist/index.js';

const { values: a } = parseArgs({
  options: {
    'seq-len': { type: 'string', default: '256' },
    batch: { type: 'string', default: '4' },
    steps: { type: 'string', default: '100' },
    backend: { type: 'string' },
    smoke: { type: 'boolean' },
  },
});
if (smoke) Object.assign(a, { 'seq-len': '32', batch: '2', steps: '6', backend: 'js' });
const here = dirname(fileURLToPath(import.meta.url));
async function pickBackend(name) {
  const dist = join(here, '..', '..', 'backend-onnxruntime', 'dist', 'index.js');
  if (name === 'js' || !existsSync(dist)) return new JsBackend();
  await import(dist);
  return getBackend('onnxruntime');
}
const backend = await pickBackend(a.backend);
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const teacher = (await loadModel(MODEL)).model;
const student = perturbLinearWeights((await loadModel(MODEL)).model, 0.3, 1);
const SEP = '<|endoftext|>';
const sources = await loadSources([
  sharedPath('data', 'tinystories', 'train-head.txt'),
  { path: sharedPath('data', 'tinystories', 'valid-dev.txt'), separator: SEP, documents: [0, 600] },
]);
const tokens = tokenizeSources(sources, student.tokenizer);
const layers = [...Array(student.config.numLayers).keys()];
const seqLen = Number(a['seq-len']);
const batchSize = Number(a.batch);
const t0 = performance.now();
const r = await lrRangeTest({
  model: student,
  step: {
    backend,
    teacher: { model: teacher, ops: new Ops(backend), layers },
    loss: { loss: 'kl', temperature: 1, ceWeight: 1, hiddenWeight: 1, studentLayers: layers },
    seqLen,
    batchSize,
    micro: batchSize,
    clip: 1,
  },
  options: { data: [], tokens: 0 },
  weightDecay: 0.01,
  betas: [0.9, 0.95],
  tokens,
  seed: 0,
  name: 'train-head + dev 0..599',
  log: { info: (m) => console.log(m), warn() {}, debug() {} },
  range: { steps: Number(a.steps) },
});
const seconds = (performance.now() - t0) / 1000;
sane('lr', r.lr);
console.log(
  JSON.stringify({ backend: backend.name, lr: r.lr, steps: r.curve.length, seqLen, batchSize, seconds }),
);
