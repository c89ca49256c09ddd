// Sequential (GPTQ-style) calibration against one-shot on stories260K: LDLQ-2 (groups of 64) and CALDERA
// q2 · lr4 · rank 4, each with the parent's Hessians (one-shot, the default) and with `sequential: true`
// (`--sequential`: block i compressed from Hessians of inputs that went through the already compressed
// blocks 0..i−1). Held-out perplexity, bits per parameter and wall time of each.
//
// Held out: the LAST 200 TinyStories dev stories (documents 600–799), documents protocol, truncated to 512
// (see stories-setup.mjs). Calibration: 64 × 256 tokens of train-head.txt (seed 0) for both — the one-shot
// rows through `computeStats` on the parent, the sequential ones through calibrate's `calibrationWalk` on the
// same sample.
//
// Run after `pnpm build`: node packages/svd/bench/sequential-stories.mjs [--backend js|onnxruntime]
//   [--outer-iters 20] [--lplr-iters 5] [--only ldlq|caldera] [--seed 0] [--json out.json]
// --smoke: 2 × 2 iterations, 8 × 64 calibration tokens, 20 held-out stories.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { computeStats, loadDataset, sampleSequences, withCalibration } from '@lineage/calibrate';
import { applyMethod, getBackend, methodContext } from '@lineage/core';
import { ldlqMethod } from '@lineage/quant';
import { sane, smoke, startBench } from '../../../scripts/bench-kit.mjs';
import { caldera } from '../dist/index.js';
import { heldOutPpl, loadParent, trainPath } from './stories-setup.mjs';

const bench = startBench('sequential-stories');
const { values: a } = parseArgs({
  options: {
    backend: { type: 'string' },
    'outer-iters': { type: 'string', default: '20' },
    'lplr-iters': { type: 'string', default: '5' },
    only: { type: 'string' },
    // the calibration sample's seed (both rows of a pair use the same sample)
    seed: { type: 'string', default: '0' },
    json: { type: 'string' },
    smoke: { type: 'boolean' },
  },
});
if (smoke) Object.assign(a, { 'outer-iters': '2', 'lplr-iters': '2' });
const [samples, seqLen] = smoke ? [8, 64] : [64, 256];

if (a.backend !== 'js') {
  try {
    await import('@lineage/backend-onnxruntime');
  } catch {}
}
const backend = await getBackend(a.backend);
console.error(`backend: ${backend.name} (${backend.device})`);
const quiet = { info() {}, warn: (m) => console.error(`warning: ${m}`), debug() {} };

const parent = await loadParent();
const ppl = (m) => heldOutPpl(m, backend);
const t0 = performance.now();
const seed = Number(a.seed);
const sample = sampleSequences(await loadDataset(trainPath), parent.tokenizer, { samples, seqLen, seed });
const stats = await computeStats(parent, backend, sample, { statistics: ['hessian'] });
const statsSeconds = (performance.now() - t0) / 1000;
// the method seed (Hadamard signs) stays 0; the calibration sample's is --seed
const oneShot = methodContext(backend, { stats, log: quiet, seed: 0 });
const walking = withCalibration(methodContext(backend, { log: quiet, seed: 0 }), {
  data: trainPath,
  samples,
  seqLen,
  seed,
});

const rows = [];
const row = async (name, make, ctx, extraSeconds = 0) => {
  const t = performance.now();
  const m = await applyMethod(make(), parent, ctx);
  const seconds = (performance.now() - t) / 1000 + extraSeconds;
  const p = sane(`${name} ppl`, await ppl(m));
  const bits = m.provenance.bitsPerParam;
  rows.push({ name, bitsPerParam: bits, ppl: p, seconds });
  console.error(
    `${name.padEnd(36)} ${bits.toFixed(3)} bits/param  ppl ${p.toFixed(4)}  ${seconds.toFixed(1)} s`,
  );
};
rows.push({ name: 'parent (f32)', bitsPerParam: 32, ppl: sane('parent ppl', await ppl(parent)) });
console.error(`parent ppl ${rows[0].ppl.toFixed(4)}; one-shot statistics ${statsSeconds.toFixed(1)} s`);

const iters = { outerIters: Number(a['outer-iters']), lplrIters: Number(a['lplr-iters']) };
// one-shot rows count the parent's statistics in their time; sequential ones walk (and calibrate) themselves
if (a.only !== 'caldera') {
  await row('LDLQ-2 g64, one-shot', () => ldlqMethod({ bits: 2, groupSize: 64 }), oneShot, statsSeconds);
  await row(
    'LDLQ-2 g64, sequential',
    () => ldlqMethod({ bits: 2, groupSize: 64, sequential: true }),
    walking,
  );
}
if (a.only !== 'ldlq') {
  const c = (sequential) => () => caldera({ qBits: 2, lrBits: 4, rank: 4, ...iters, sequential });
  await row('CALDERA q2 lr4 rank 4, one-shot', c(false), oneShot, statsSeconds);
  await row('CALDERA q2 lr4 rank 4, sequential', c(true), walking);
}

const result = { backend: backend.name, calibration: `${samples} × ${seqLen}, seed ${seed}`, ...iters, rows };
if (a.json) writeFileSync(a.json, `${JSON.stringify(result, null, 2)}\n`);
bench.finish(result);
