// Minitron on the real stories260K: pruned + distilled vs from scratch, vs random importance, vs one-shot SVD at
// the same parameter count and tokens, and the paper's axis ablation.
//
// 1. Held out: the LAST 200 TinyStories dev stories (valid-dev.txt documents 600–799), documents protocol
//    (each story alone with BOS, truncated to 512), never trained on. Training text: train-head.txt (one
//    stream) + the first 600 dev stories. Importance: `computeStats(…, ['importance'])` on 64 × 256 tokens of
//    train-head.txt. Every distillation: forward KL to the parent at T = 1 (no hidden-state loss: widths
//    differ), AdamW (0.9, 0.95, no decay), clip 1, cosine --lr → --min-lr after a 5% warmup, --batch × --seq-len
//    tokens per step; each run starts at the beginning of the data stream (same tokens for every row).
// 2. minitron --params P: search over --search shapes (the largest within the budget, width-only and
//    depth-only among them), each distilled --search-tokens and ranked by loss on dev stories 550–599
//    (inside the training text: the search's own held-out), then the best re-pruned and distilled --tokens.
// 3. The same shape with `random` importance, distilled the same; a from-scratch model of the same shape
//    (`initLike`, next-token training, --scratch-lr) on the same tokens; one-shot `svd` at the same total
//    parameter count, distilled the same; PLRD in --plrd-steps equal steps to that count, the same total
//    tokens split over the steps (data stream continued, each step distilled from the parent).
// 4. Axis ablation at --ablation-params: attention only (heads + kv-heads), FFN only, hidden only, depth only,
//    and the searched mix; held-out ppl right after pruning and after --ablation-tokens of distillation.
//
// Run after `pnpm build`:
//   node packages/prune/bench/minitron-stories.mjs [--backend onnxruntime|js] [--params 0.5] [--tokens 200k]
//     [--search 4] [--search-tokens 10k] [--ablation-params 0.85] [--ablation-tokens 50k] [--skip-svd]
//     [--plrd-steps 3] [--skip-plrd] [--match-params <n>: PLRD alone (with --skip-main)]
//     [--magnitude] [--skip-ablation] [--skip-main] [--json out.json]
// --smoke (or LINEAGE_BENCH_SMOKE=1): 128 tokens of 2 × 32 per run, 8 × 64 calibration tokens, 20 held-out
// stories; fails unless every perplexity is finite and positive.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import {
  applyMethod,
  getBackend,
  methodContext,
  readTextFile,
  sharedPath,
  splitDocuments,
} from '@lineage/core';
import { initLike, recoverCapability, train } from '@lineage/distill';
import { plrd, svd } from '@lineage/svd';
import { sane, smoke } from '../../../scripts/bench-kit.mjs';
import { data, heldOutPpl, loadParent, SEP, tokenCount, trainPath } from '../../svd/bench/stories-setup.mjs';
import { denseParams, minitron } from '../dist/index.js';

const { values: a } = parseArgs({
  options: {
    backend: { type: 'string' },
    params: { type: 'string', default: '0.5' },
    tokens: { type: 'string', default: '200000' },
    search: { type: 'string', default: '4' },
    'search-tokens': { type: 'string', default: '10000' },
    'ablation-params': { type: 'string', default: '0.85' },
    'ablation-tokens': { type: 'string', default: '50000' },
    lr: { type: 'string', default: '2e-3' },
    'min-lr': { type: 'string', default: '2e-5' },
    'scratch-lr': { type: 'string', default: '3e-3' },
    batch: { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '256' },
    'skip-svd': { type: 'boolean', default: false },
    'plrd-steps': { type: 'string', default: '3' },
    'skip-plrd': { type: 'boolean', default: false },
    'match-params': { type: 'string' },
    magnitude: { type: 'boolean', default: false },
    'skip-ablation': { type: 'boolean', default: false },
    'skip-main': { type: 'boolean', default: false },
    json: { type: 'string' },
    smoke: { type: 'boolean' },
  },
});
if (smoke)
  Object.assign(a, {
    tokens: '128',
    'search-tokens': '64',
    'ablation-tokens': '64',
    search: '2',
    batch: '2',
    'seq-len': '32',
  });
const [calSamples, calSeqLen] = smoke ? [8, 64] : [64, 256];
const tokens = tokenCount(a.tokens);
const ablationTokens = tokenCount(a['ablation-tokens']);

if (a.backend !== 'js') {
  try {
    await import('@lineage/backend-onnxruntime');
  } catch {}
}
const backend = await getBackend(a.backend);
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
  continueData: false,
};
const log = { info: (m) => console.error(m), warn: (m) => console.error(`warning: ${m}`), debug() {} };
const t0 = performance.now();
const parentParams = parent.stats().params;
const results = {
  parent: { ppl: await ppl(parent), params: parentParams },
  recipe: { ...recipe, backend: backend.name, data: 'train-head.txt + dev stories 0–599' },
};
console.error(`parent held-out ppl ${results.parent.ppl.toFixed(4)}`);

const stats = await computeStats(
  parent,
  backend,
  sampleSequences(await loadDataset(trainPath), parent.tokenizer, {
    samples: calSamples,
    seqLen: calSeqLen,
    seed: 0,
  }),
  { statistics: ['importance'] },
);
// the search ranks on the last 50 of the first 600 dev stories (what ctx.data holds)
const dev = splitDocuments(await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt')), SEP);
const ctxData = { text: dev.slice(0, 600).join(`\n${SEP}\n`), separator: SEP, path: 'valid-dev.txt[0:600]' };

/** A context whose recovery starts afresh (same tokens as every other row); `before` sees each recover input. */
function context(before) {
  const recover = recoverCapability({ ...recipe, log, logEvery: 100 });
  return methodContext(backend, {
    log,
    stats,
    data: ctxData,
    seed: 0,
    recover: async (m, budget) => {
      await before?.(m, budget);
      return recover(m, budget);
    },
  });
}

/** Prunes with `options`, returns ppl right after pruning (of the final model) and after distillation. */
async function run(label, options, recoverTokens) {
  let pre;
  const t = performance.now();
  const m = await applyMethod(
    minitron({ ...options, recoverTokens }),
    parent,
    context(async (x, budget) => {
      if (budget.tokens === recoverTokens) pre = await ppl(x);
    }),
  );
  if (recoverTokens === 0) pre = await ppl(m);
  const row = {
    label,
    shape: m.provenance.shape,
    params: m.stats().params,
    before: pre,
    after: recoverTokens > 0 ? await ppl(m) : undefined,
    tokens: recoverTokens,
    candidates: m.provenance.candidates,
    seconds: (performance.now() - t) / 1000,
  };
  console.error(
    `${label}: ${row.shape} (${row.params} params): ppl ${row.before.toFixed(3)} after pruning, ${row.after?.toFixed(4) ?? '—'} after ${recoverTokens} tokens (${row.seconds.toFixed(0)} s)`,
  );
  return { row, model: m };
}

if (!a['skip-main']) {
  const P = Number(a.params);
  const main = await run(
    'minitron (activation importance, searched)',
    { params: P, search: Number(a.search), searchTokens: tokenCount(a['search-tokens']) },
    tokens,
  );
  results.main = main.row;
  results.random = (
    await run('same shape, random importance', { shape: main.row.shape, importance: 'random' }, tokens)
  ).row;
  if (a.magnitude || smoke)
    results.magnitude = (
      await run(
        'same shape, magnitude importance',
        { shape: main.row.shape, importance: 'magnitude' },
        tokens,
      )
    ).row;
  // from scratch: same shape, same tokens
  {
    const t = performance.now();
    const scratch = initLike(main.model, {}, { seed: 1 });
    await train({
      ...recipe,
      lr: Number(a['scratch-lr']),
      minLr: Number(a['scratch-lr']) / 100,
      model: scratch,
      tokens,
      log,
      logEvery: 100,
    });
    results.scratch = {
      params: scratch.stats().params,
      after: await ppl(scratch),
      tokens,
      seconds: (performance.now() - t) / 1000,
    };
    console.error(`from scratch, same shape, ${tokens} tokens: ppl ${results.scratch.after.toFixed(4)}`);
  }
  if (!a['skip-svd']) {
    // one-shot svd to the same total parameter count (the fraction is of the block linears only)
    const t = performance.now();
    let linear = 0;
    for (const [, l] of parent.linearLayers()) linear += l.inFeatures * l.outFeatures;
    const fraction = (main.row.params - (parentParams - linear)) / linear;
    const m = await applyMethod(svd({ params: fraction }), parent, methodContext(backend));
    const before = await ppl(m);
    const r = recoverCapability({ ...recipe, log, logEvery: 100 });
    const out = await r(m, { tokens, teacher: parent });
    results.svd = {
      fraction,
      params: out.stats().params,
      before,
      after: await ppl(out),
      tokens,
      seconds: (performance.now() - t) / 1000,
    };
    console.error(
      `one-shot svd ${fraction.toFixed(3)}: ppl ${before.toFixed(2)} → ${results.svd.after.toFixed(4)}`,
    );
  }
}

if ((!a['skip-main'] || a['match-params']) && !a['skip-plrd']) {
  // PLRD to the same total parameter count: --plrd-steps equal steps down to the fraction one-shot svd
  // uses, the same total tokens split evenly over the steps (each recovered from the parent)
  const t = performance.now();
  let linear = 0;
  for (const [, l] of parent.linearLayers()) linear += l.inFeatures * l.outFeatures;
  const target = a['match-params'] ? Number(a['match-params']) : results.main.params;
  const fraction = (target - (parentParams - linear)) / linear;
  const steps = smoke ? 1 : Number(a['plrd-steps']);
  const schedule = Array.from({ length: steps }, (_, i) => 1 - ((1 - fraction) * (i + 1)) / steps);
  const perStep = Math.floor(tokens / steps);
  const recover = recoverCapability({ ...recipe, continueData: true, log, logEvery: 100 });
  const family = await applyMethod(
    plrd({ schedule, recoverTokens: perStep }),
    parent,
    methodContext(backend, { log, seed: 0, recover }),
  );
  const last = family[family.length - 1];
  results.plrd = {
    schedule,
    params: last.stats().params,
    after: await ppl(last),
    tokens: perStep * steps,
    seconds: (performance.now() - t) / 1000,
  };
  console.error(
    `PLRD ${schedule.map((x) => x.toFixed(3)).join(' → ')}: ppl ${results.plrd.after.toFixed(4)} after ${perStep}×${steps} tokens`,
  );
}

if (!a['skip-ablation']) {
  const P = Number(a['ablation-params']);
  results.ablation = { params: P, budget: Math.floor(P * denseParams(parent.config, false)), rows: [] };
  for (const [label, axes, search] of [
    ['attention only (heads, kv-heads)', 'heads,kv-heads', 1],
    ['FFN only', 'ffn', 1],
    ['hidden only', 'hidden', 1],
    ['depth only', 'layers', 1],
    ['searched mix', 'heads,ffn,hidden,layers', Number(a.search)],
  ]) {
    const { row } = await run(label, { params: P, axes, search, searchTokens: 0 }, ablationTokens);
    results.ablation.rows.push(row);
  }
}
results.seconds = (performance.now() - t0) / 1000;

const rows = [
  results.main,
  results.random,
  results.magnitude,
  results.scratch,
  results.svd,
  results.plrd,
  ...(results.ablation?.rows ?? []),
];
for (const r of rows.filter(Boolean)) {
  if (r.before !== undefined) sane('ppl before', r.before);
  if (r.after !== undefined) sane('ppl after', r.after);
}
const f = (x, d = 3) => (x === undefined ? '—' : x.toFixed(d));
console.log(`parent stories260K: ${parentParams} params, held-out ppl ${f(results.parent.ppl, 4)}`);
if (results.main) {
  console.log(`\n| model | shape | params | ppl after pruning | ppl after ${tokens} tokens |`);
  console.log('| --- | --- | ---: | ---: | ---: |');
  for (const r of [results.main, results.random, results.magnitude].filter(Boolean))
    console.log(`| ${r.label} | ${r.shape} | ${r.params} | ${f(r.before)} | **${f(r.after, 4)}** |`);
  console.log(
    `| from scratch, same shape (next-token) | ${results.main.shape} | ${results.scratch.params} | — | ${f(results.scratch.after, 4)} |`,
  );
  if (results.svd)
    console.log(
      `| one-shot svd (${f(results.svd.fraction)} of the block linears) | low_rank | ${results.svd.params} | ${f(results.svd.before)} | ${f(results.svd.after, 4)} |`,
    );
  if (results.plrd)
    console.log(
      `| PLRD (${results.plrd.schedule.map((x) => f(x)).join(' → ')} of the block linears, ${results.plrd.tokens / results.plrd.schedule.length} tokens per step) | low_rank | ${results.plrd.params} | — | ${f(results.plrd.after, 4)} |`,
    );
  console.log('\nsearch candidates (held-out loss after the search distillation, dev stories 550–599):');
  for (const c of results.main.candidates) console.log(`  ${c.shape}  ${c.params}  ${f(c.heldOutLoss, 4)}`);
}
if (!results.main && results.plrd)
  console.log(
    `PLRD (${results.plrd.schedule.map((x) => f(x)).join(' → ')} of the block linears): ${results.plrd.params} params, held-out ppl ${f(results.plrd.after, 4)} after ${results.plrd.tokens} tokens`,
  );
if (results.ablation) {
  console.log(`\nablation at ${results.ablation.params} of the parameters (≤ ${results.ablation.budget}):`);
  console.log(`| axes | shape | params | ppl after pruning | ppl after ${ablationTokens} tokens |`);
  console.log('| --- | --- | ---: | ---: | ---: |');
  for (const r of results.ablation.rows)
    console.log(`| ${r.label} | ${r.shape} | ${r.params} | ${f(r.before)} | ${f(r.after, 4)} |`);
}
console.log(`\n${results.seconds.toFixed(0)} s`);
if (a.json) writeFileSync(a.json, JSON.stringify(results, null, 1));
