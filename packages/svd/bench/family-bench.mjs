// PLRD family vs one-shot SVD vs from-scratch, on the real stories260K.
//
// 1. Held out: the LAST 200 TinyStories dev stories (valid-dev.txt documents 600–799), documents protocol
//    (each story alone with BOS, truncated to 512), never trained on. Training text: train-head.txt (one
//    stream) + the first 600 dev stories.
// 2. PLRD: schedule 0.8 → 0.6 → 0.45 → 0.3 of the decomposable parameters (every block linear), each
//    member derived from the previous one, then recovered for --tokens-per-step tokens by distillation from
//    the parent (forward KL, T = 1, plus the hidden-state MSE of every block when --hidden > 0).
// 3. One-shot `svd` to each fraction, recovered with the SAME TOTAL budget the PLRD member had used (k steps ×
//    tokens per step for the k-th member), same recipe.
// 4. From scratch: the same shape (the parent's config, every block linear factored at the member's ranks),
//    randomly initialised (`initLike` + the same rank plan), trained with the next-token loss on the same
//    total budget.
// 5. Before any recovery: plain vs data-aware (SVD-LLM whitening with calibration Grams from 64 × 256
//    tokens of train-head.txt) one-shot SVD at every fraction.
//
// Run after `pnpm build`:
//   node packages/svd/bench/family-bench.mjs [--backend onnxruntime|js] [--tokens-per-step 200k]
//     [--schedule 0.8,0.6,0.45,0.3] [--hidden 1] [--lr 2e-3] [--min-lr 2e-5] [--batch 4] [--seq-len 256]
//     [--skip-scratch] [--skip-oneshot] [--data-aware] [--json out.json]
// (--data-aware: PLRD and the one-shot baseline both decompose with SVD-LLM whitening; PLRD's step k > 1
// whitens by member k − 1's own Grams, from the same 64 × 256 calibration tokens)
// --smoke (or LINEAGE_BENCH_SMOKE=1): schedule 0.6,0.3, 128 tokens per step of 2 × 32, 8 × 64 calibration
// tokens, 20 held-out stories; fails unless every perplexity is finite and positive.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { calibrationCapability, computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import { applyMethod, getBackend, methodContext } from '@lineage/core';
import { initLike, recoverCapability, train } from '@lineage/distill';
import { sane, smoke } from '../../../scripts/bench-kit.mjs';
import { decomposeModel, plrd, svd } from '../dist/index.js';
import { data, heldOutPpl, loadParent, tokenCount, trainPath } from './stories-setup.mjs';

const { values: a } = parseArgs({
  options: {
    backend: { type: 'string' },
    'tokens-per-step': { type: 'string', default: '200000' },
    schedule: { type: 'string', default: '0.8,0.6,0.45,0.3' },
    hidden: { type: 'string', default: '1' },
    lr: { type: 'string', default: '2e-3' },
    'min-lr': { type: 'string', default: '2e-5' },
    'scratch-lr': { type: 'string', default: '3e-3' },
    batch: { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '256' },
    'skip-scratch': { type: 'boolean', default: false },
    'skip-oneshot': { type: 'boolean', default: false },
    'data-aware': { type: 'boolean', default: false },
    json: { type: 'string' },
    smoke: { type: 'boolean' },
  },
});
if (smoke) Object.assign(a, { 'tokens-per-step': '128', schedule: '0.6,0.3', batch: '2', 'seq-len': '32' });
const [calSamples, calSeqLen] = smoke ? [8, 64] : [64, 256];

const tokensPerStep = tokenCount(a['tokens-per-step']);
const schedule = a.schedule.split(',').map(Number);

let backend;
if (a.backend !== 'js') {
  try {
    await import('@lineage/backend-onnxruntime');
  } catch {}
}
backend = await getBackend(a.backend);
console.error(`backend: ${backend.name} (${backend.device})`);

const parent = await loadParent();
const ppl = (m) => heldOutPpl(m, backend);

const recipe = {
  backend,
  data,
  seqLen: Number(a['seq-len']),
  batchSize: Number(a.batch),
  lr: Number(a.lr),
  minLr: Number(a['min-lr']),
  weightDecay: 0,
  seed: 0,
  ...(Number(a.hidden) > 0 ? { hidden: { layers: 'uniform', weight: Number(a.hidden) } } : {}),
};
const log = { info: (m) => console.error(m), warn: (m) => console.error(`warning: ${m}`), debug() {} };
const t0 = performance.now();
const results = {
  parent: await ppl(parent),
  schedule,
  tokensPerStep,
  recipe: { ...recipe, backend: backend.name, data: 'train-head.txt + dev stories 0–599' },
  members: [],
};
console.error(`parent held-out ppl ${results.parent.toFixed(4)}`);

// 5. before recovery: plain vs data-aware
const ds = await loadDataset(trainPath);
const sample = sampleSequences(ds, parent.tokenizer, { samples: calSamples, seqLen: calSeqLen, seed: 0 });
const stats = await computeStats(parent, backend, sample, { statistics: ['hessian'] });
const plain = {};
const aware = {};
for (const f of schedule) {
  plain[f] = await ppl((await decomposeModel(parent, { fraction: f })).model);
  aware[f] = await ppl((await decomposeModel(parent, { fraction: f, gram: stats })).model);
  console.error(
    `fraction ${f}: before recovery, plain svd ppl ${plain[f].toFixed(3)}, data-aware ${aware[f].toFixed(3)}`,
  );
}

// 2. PLRD
const preRecovery = [];
const recover = recoverCapability({ ...recipe, log, logEvery: 50 });
const calibrate = calibrationCapability({
  data: ds,
  samples: calSamples,
  seqLen: calSeqLen,
  seed: 0,
  backend,
});
const ctx = methodContext(backend, {
  log,
  calibrate,
  recover: async (m, budget) => {
    preRecovery.push(await ppl(m));
    return recover(m, budget);
  },
});
const tPlrd = performance.now();
const lowRank = a['data-aware'] ? { dataAware: true } : {};
results.dataAware = a['data-aware'];
const family = await applyMethod(plrd({ schedule, recoverTokens: tokensPerStep, ...lowRank }), parent, ctx);
const plrdSeconds = (performance.now() - tPlrd) / 1000;
for (const [i, m] of family.entries()) {
  const f = schedule[i];
  const row = {
    fraction: f,
    params: m.stats().params,
    bytes: m.stats().bytes,
    tokens: (i + 1) * tokensPerStep,
    plainBefore: plain[f],
    dataAwareBefore: aware[f],
    plrdBefore: preRecovery[i],
    plrd: await ppl(m),
  };
  console.error(
    `PLRD member ${i + 1} (${f}): ppl ${row.plrd.toFixed(4)} (${row.plrdBefore.toFixed(3)} before recovery)`,
  );
  results.members.push(row);
}
results.plrdSeconds = plrdSeconds;

// 3. one-shot svd with the same total budget
if (!a['skip-oneshot']) {
  for (const row of results.members) {
    const m = await applyMethod(
      svd({ params: row.fraction, ...lowRank }),
      parent,
      methodContext(backend, { calibrate }),
    );
    const r = recoverCapability({ ...recipe, log, logEvery: 100 });
    await r(m, { tokens: row.tokens, teacher: parent });
    row.oneShot = await ppl(m);
    console.error(`one-shot svd ${row.fraction} + ${row.tokens} tokens: ppl ${row.oneShot.toFixed(4)}`);
  }
}

// 4. from scratch, same shape, same total budget
if (!a['skip-scratch']) {
  for (const [i, row] of results.members.entries()) {
    const random = initLike(parent, {}, { seed: 1 });
    const ranks = family[i].provenance.ranks;
    const shaped = (await decomposeModel(random, { fraction: row.fraction })).model;
    // the same ranks as the member (uniform allocation gives the same plan; check it)
    for (const [name, l] of shaped.linearLayers())
      if (ranks[name] !== undefined && ranks[name] !== (l.rank ?? 'dense'))
        throw new Error(`rank mismatch at ${name}`);
    await train({
      ...recipe,
      hidden: undefined,
      lr: Number(a['scratch-lr']),
      minLr: Number(a['scratch-lr']) / 100,
      model: shaped,
      tokens: row.tokens,
      log,
      logEvery: 100,
    });
    row.scratch = await ppl(shaped);
    console.error(
      `from scratch, shape of member ${i + 1}, ${row.tokens} tokens: ppl ${row.scratch.toFixed(4)}`,
    );
  }
}
results.seconds = (performance.now() - t0) / 1000;
sane('parent ppl', results.parent);
for (const r of results.members)
  for (const k of ['plainBefore', 'dataAwareBefore', 'plrdBefore', 'plrd', 'oneShot', 'scratch'])
    if (r[k] !== undefined) sane(`${r.fraction} ${k}`, r[k]);

const f = (x) => (x === undefined ? '—' : x.toFixed(3));
console.log(`parent (dense): ${results.parent.toFixed(4)}`);
console.log(
  '| fraction | params | bytes | recovery tokens (total) | plain svd, no recovery | data-aware svd, no recovery | PLRD before recovery | **PLRD** | one-shot svd + same tokens | from scratch, same shape + same tokens |',
);
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of results.members)
  console.log(
    `| ${r.fraction} | ${r.params} | ${r.bytes} | ${r.tokens} | ${f(r.plainBefore)} | ${f(r.dataAwareBefore)} | ${f(r.plrdBefore)} | **${f(r.plrd)}** | ${f(r.oneShot)} | ${f(r.scratch)} |`,
  );
console.log(`total ${results.seconds.toFixed(0)} s (PLRD ${plrdSeconds.toFixed(0)} s) on ${backend.name}`);
if (a.json) writeFileSync(a.json, JSON.stringify(results, null, 2));
