// Recovery of a damaged real model by distillation from the original.
//
// 1. Load stories260K twice; multiply every linear weight of the copy elementwise by (1 + σ·N(0,1))
//    (σ = 0.3, seeded: perturbLinearWeights).
// 2. Held-out perplexity of both on the LAST 200 TinyStories dev stories (valid-dev.txt documents 600..799),
//    documents protocol (each story alone with BOS, truncated to 512 tokens) — stories never trained on.
// 3. Distil the copy from the original for at most --tokens training tokens sampled from train-head.txt (one
//    stream) + the FIRST 600 dev stories (documents, BOS each): forward KL at T = 1 plus (--hidden, weight 1;
//    0 disables) the hidden-state MSE of every block against the same block of the original; AdamW (betas
//    0.9/0.95, no weight decay), 14 warmup steps, cosine 2e-3 → 2e-5, 4 × 256 tokens per step, clip 1.
// 4. Held-out perplexity again; the goal is within 10% of the original's.
//
// Run after `pnpm build`: node packages/distill/bench/recovery.mjs [--backend js|onnxruntime] [--tokens 300k]
//   [--lr 2e-3] [--min-lr 2e-5] [--hidden 1] [--loss kl|ce|kl+ce] [--batch 4] [--seq-len 256] [--sigma 0.3]
//   [--seed 0] [--eval-every n] [--weight-decay 0]
// Default backend: onnxruntime when @lineage/backend-onnxruntime is built, else js.
// --smoke (or LINEAGE_BENCH_SMOKE=1): 4 steps of 2 × 32 tokens, held out on 20 stories (600..619); fails
// unless every figure is finite and positive (scripts/bench-smoke.mjs runs it in CI).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  getBackend,
  JsBackend,
  loadModel,
  perplexity,
  readTextFile,
  sharedPath,
  splitDocuments,
} from '@lineage/core';
import { sane, smoke } from '../../../scripts/bench-kit.mjs';
import { distill, perturbLinearWeights } from '../dist/index.js';

const { values: a } = parseArgs({
  options: {
    backend: { type: 'string' },
    tokens: { type: 'string', default: '300000' },
    lr: { type: 'string', default: '2e-3' },
    'min-lr': { type: 'string', default: '2e-5' },
    'weight-decay': { type: 'string', default: '0' },
    hidden: { type: 'string', default: '1' },
    loss: { type: 'string', default: 'kl' },
    batch: { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '256' },
    sigma: { type: 'string', default: '0.3' },
    seed: { type: 'string', default: '0' },
    'eval-every': { type: 'string' },
    smoke: { type: 'boolean' },
  },
});
if (smoke) Object.assign(a, { tokens: '256', batch: '2', 'seq-len': '32' });
const here = dirname(fileURLToPath(import.meta.url));

async function pickBackend(name) {
  if (name === 'js') return new JsBackend();
  const dist = join(here, '..', '..', 'backend-onnxruntime', 'dist', 'index.js');
  if (!existsSync(dist)) {
    if (name) throw new Error('@lineage/backend-onnxruntime is not built');
    return new JsBackend();
  }
  await import(dist);
  return getBackend('onnxruntime');
}

const backend = await pickBackend(a.backend);
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const SEP = '<|endoftext|>';
const HELD_OUT_END = smoke ? 620 : 800;
const heldOut = { path: DEV, separator: SEP, documents: [600, HELD_OUT_END] };
const ndocs = splitDocuments(await readTextFile(DEV), SEP).length;
if (ndocs !== 800) throw new Error(`expected 800 dev stories, found ${ndocs}`);

const { model: teacher } = await loadModel(MODEL);
const { model: student } = await loadModel(MODEL);
const sigma = Number(a.sigma);
perturbLinearWeights(student, sigma, 1);

const evalText = splitDocuments(await readTextFile(DEV), SEP)
  .slice(600, HELD_OUT_END)
  .join(`\n${SEP}\n`);
const ppl = async (m) =>
  (await perplexity(m, backend, evalText, { protocol: 'documents', separator: SEP, seqLen: 512 })).ppl;
const original = await ppl(teacher);
console.log(
  `backend ${backend.name} (${backend.device}); held-out: dev stories 600..${HELD_OUT_END - 1}, documents protocol, seq 512`,
);
console.log(`original ppl ${original.toFixed(4)}`);

const t0 = performance.now();
const r = await distill({
  teacher,
  student,
  data: [TRAIN, { path: DEV, separator: SEP, documents: [0, 600] }],
  evalData: heldOut,
  evalSeqLen: 512,
  ...(a['eval-every'] ? { evalEvery: Number(a['eval-every']) } : {}),
  tokens: Number(a.tokens.replace(/k$/, '000')),
  seqLen: Number(a['seq-len']),
  batchSize: Number(a.batch),
  lr: Number(a.lr),
  minLr: Number(a['min-lr']),
  weightDecay: Number(a['weight-decay']),
  loss: a.loss,
  hidden: Number(a.hidden) > 0 ? { layers: 'uniform', weight: Number(a.hidden) } : false,
  seed: Number(a.seed),
  backend,
  teacherBackend: backend,
  logEvery: 20,
  log: { info: (m) => console.log(m), warn: (m) => console.log(`warning: ${m}`), debug() {} },
});
const seconds = (performance.now() - t0) / 1000;
const noised = r.evals[0].ppl;
const recovered = r.evals[r.evals.length - 1].ppl;
const gap = (Math.log(noised) - Math.log(recovered)) / (Math.log(noised) - Math.log(original));
const summary = {
  backend: `${backend.name} (${backend.device})`,
  sigma,
  original,
  noised,
  recovered,
  ratio: recovered / original,
  withinTenPercent: recovered <= 1.1 * original,
  logGapRecovered: gap,
  tokens: r.tokens,
  steps: r.steps,
  batch: `${a.batch}×${a['seq-len']}`,
  lr: Number(a.lr),
  minLr: Number(a['min-lr']),
  loss: a.loss,
  hiddenWeight: Number(a.hidden),
  seed: Number(a.seed),
  trainingSeconds: r.seconds,
  totalSeconds: seconds,
  tokensPerSecond: r.tokensPerSecond,
};
for (const k of ['original', 'noised', 'recovered', 'trainingSeconds', 'tokensPerSecond'])
  sane(k, summary[k]);
console.log(JSON.stringify(summary, null, 2));
