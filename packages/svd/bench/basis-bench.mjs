// Basis Selection against one-shot svd (plain and whitened on the target data) on stories260K, with
// WikiText-2 as the target application (BENCHMARKS.md, "Basis Selection"). Every method gets the same
// target-domain token budget: svd rows are fine-tuned (all factors, LM loss) on it, basis spends it on its
// relearning rounds and final fine-tune.
//
// Target data: ../shared/data/wikitext2/wiki.test.noblank.txt, its first 80% of lines for training and
// calibration, its last 20% held out (stream protocol, seq 256); nothing is tuned on the held-out part.
// General-domain cost: the TinyStories held-out set of the other svd benches (last 200 dev stories,
// documents protocol, seq 512).
//
// Run after `pnpm build`:
//   node packages/svd/bench/basis-bench.mjs [--fractions 0.5,0.3] [--tokens 60k] [--rows basis,svd,...]
// --validate: train on lines 0–70%, score on 70–80% (for choosing settings; never on the held-out 20%).
// rows: parent, svd, svd-aware, basis, basis-nonew (newRank 0), basis-new (4 new bases per layer),
// basis-oneshot (one prune round).
// Basis rows: the method's defaults (global scope, 4 rounds on 7% of --tokens, no new bases, coefficients at
// lr 2e-2, the rest of the model at --lr), whitened on the target (--plain: not), then the exported factors
// fine-tuned on the rest of --tokens; --rounds, --new-rank, --scope, --tokens-per-round, --basis-lr,
// --finetune and --opts '<json of other basis options>' override them.
// --smoke (or LINEAGE_BENCH_SMOKE=1): fraction 0.5, 512 tokens of 2 × 32 (64 per round), 20 held-out stories, 1/10 of
// the WikiText held-out text; fails unless every perplexity is finite and positive.
import { parseArgs } from 'node:util';
import { withCalibration } from '@lineage/calibrate';
import { getBackend, methodContext, perplexity, readTextFile, sharedPath, TextDataset } from '@lineage/core';
import { withRecover } from '@lineage/distill';
import { sane, smoke } from '../../../scripts/bench-kit.mjs';
import { basisSelection, svd } from '../dist/index.js';
import { heldOutPpl, loadParent, tokenCount } from './stories-setup.mjs';

const { values: a } = parseArgs({
  options: {
    fractions: { type: 'string', default: '0.5,0.3' },
    tokens: { type: 'string', default: '60k' },
    rows: { type: 'string', default: 'parent,svd,svd-aware,basis,basis-new,basis-oneshot' },
    plain: { type: 'boolean' },
    lr: { type: 'string', default: '2e-3' },
    'basis-lr': { type: 'string' },
    rounds: { type: 'string' },
    'new-rank': { type: 'string' },
    scope: { type: 'string' },
    'tokens-per-round': { type: 'string' },
    finetune: { type: 'string' },
    tag: { type: 'string', default: '' },
    'no-others': { type: 'boolean' },
    validate: { type: 'boolean' },
    opts: { type: 'string', default: '{}' },
    smoke: { type: 'boolean' },
  },
});
try {
  await import('@lineage/backend-onnxruntime');
} catch {}
const fractions = smoke ? [0.5] : a.fractions.split(',').map(Number);
const tokens = smoke ? 512 : tokenCount(a.tokens);
const rows = a.rows.split(',');
const seqLen = smoke ? 32 : 256;
const LR = Number(a.lr);

const wikiPath = sharedPath('data', 'wikitext2', 'wiki.test.noblank.txt');
const lines = (await readTextFile(wikiPath)).split('\n').filter((l) => l.trim());
const cut = Math.floor(lines.length * 0.8);
// --validate: choose settings on lines 70–80% (a validation part of the training text), training on the
// first 70%, so the held-out 20% is never looked at while tuning
const trainEnd = a.validate ? Math.floor(lines.length * 0.7) : cut;
const wikiTrain = lines.slice(0, trainEnd).join('\n');
const heldStart = a.validate ? trainEnd : cut;
const heldEnd = a.validate ? cut : lines.length;
const wikiHeld = lines
  .slice(heldStart, smoke ? heldStart + Math.ceil((heldEnd - heldStart) / 10) : heldEnd)
  .join('\n');

const backend = await getBackend();
const parent = await loadParent();
const wikiPpl = async (m) =>
  sane('wiki ppl', (await perplexity(m, backend, wikiHeld, { protocol: 'stream', seqLen: 256 })).ppl);
const storiesPpl = async (m) => sane('stories ppl', await heldOutPpl(m, backend));

/** A fresh context per row: target training text, recovery (LM loss) and calibration on it. */
function context() {
  const data = { text: wikiTrain, path: 'wikitext2-train80' };
  const ctx = methodContext(backend, { data, seed: 0 });
  const recovered = withRecover(ctx, {
    batchSize: smoke ? 2 : 4,
    seqLen,
    lr: LR,
    minLr: LR / 10,
    weightDecay: 0,
    logEvery: 1e9,
  });
  return withCalibration(recovered, {
    data: TextDataset.fromText(wikiTrain, { path: 'wikitext2-train80' }),
    samples: smoke ? 8 : 64,
    seqLen: smoke ? 64 : 256,
  });
}

// the method's defaults unless a flag says otherwise
const given = (flag, key, parse = (x) => x) => (a[flag] !== undefined ? { [key]: parse(a[flag]) } : {});
const basisCommon = {
  tokens,
  ...given('rounds', 'rounds', Number),
  ...given('new-rank', 'newRank', Number),
  ...given('basis-lr', 'lr', Number),
  ...given('scope', 'scope'),
  ...given('finetune', 'finetune'),
  ...(a['no-others'] ? { coefficientsOnly: true } : {}),
  dataAware: !a.plain,
  ...(smoke ? { tokensPerRound: 64 } : given('tokens-per-round', 'tokensPerRound', tokenCount)),
  // any other basis option, as JSON (for trying settings on the validation split)
  ...JSON.parse(a.opts),
};
const makers = {
  svd: (f) => ({ method: svd({ params: f }), finetune: true }),
  'svd-aware': (f) => ({ method: svd({ params: f, dataAware: true }), finetune: true }),
  basis: (f) => ({ method: basisSelection({ params: f, ...basisCommon }) }),
  'basis-nonew': (f) => ({ method: basisSelection({ params: f, ...basisCommon, newRank: 0 }) }),
  'basis-new': (f) => ({ method: basisSelection({ params: f, ...basisCommon, newRank: 4 }) }),
  'basis-oneshot': (f) => ({ method: basisSelection({ params: f, ...basisCommon, rounds: 1 }) }),
};

const table = [];
const report = (row) => {
  table.push(row);
  console.log(
    `| ${row.name}${a.tag} | ${row.fraction} | ${row.achieved} | ${row.tokens} | ${row.wiki.toFixed(2)} | ${row.stories.toFixed(3)} | ${row.seconds.toFixed(0)} |`,
  );
};
console.log(
  `tokens ${tokens} (batch ${smoke ? 2 : 4} × ${seqLen}), fine-tune lr ${LR}, basis options ${JSON.stringify(basisCommon)}`,
);
console.log('| row | params | achieved | target tokens | WikiText ppl | TinyStories ppl | s |');
console.log('|---|---|---|---|---|---|---|');
if (rows.includes('parent'))
  report({
    name: 'parent',
    fraction: 1,
    achieved: 1,
    tokens: 0,
    wiki: await wikiPpl(parent),
    stories: await storiesPpl(parent),
    seconds: 0,
  });
for (const f of fractions)
  for (const name of rows) {
    if (name === 'parent') continue;
    const t0 = performance.now();
    const ctx = context();
    const { method, finetune } = makers[name](f);
    let m = await method.apply(parent, ctx);
    if (finetune) m = await ctx.recover(m, { tokens });
    const seconds = (performance.now() - t0) / 1000;
    report({
      name,
      fraction: f,
      achieved: Number((m.provenance.achievedFraction ?? 0).toFixed(3)),
      tokens,
      wiki: await wikiPpl(m),
      stories: await storiesPpl(m),
      seconds,
    });
  }
