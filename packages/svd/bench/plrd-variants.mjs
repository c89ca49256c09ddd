// PLRD recipe variants against one-shot svd at equal cumulative tokens, on stories260K (BENCHMARKS.md,
// "Session 3: why PLRD trails one-shot here"). Same held-out set, data and recipe as family-bench.mjs.
//
// Run after `pnpm build`, one configuration per process (they run side by side on two cores):
//   node packages/svd/bench/plrd-variants.mjs --mode plrd|oneshot|oneshot-step|last-step [--tokens-per-step 50k]
//     [--lr 2e-3] [--aware none|parent|own] [--substeps n]
// plrd: the family, each step from the previous member (--aware own: whitened by that member's Grams;
// --substeps n: each step lowers the fraction in n equal parts, each recovered for tokens-per-step / n);
// oneshot: svd from the parent to each fraction, recovered with k × tokens-per-step (oneshot-step: with
// tokens-per-step only, PLRD's per-step budget);
// last-step: members 0.8/0.6/0.45 plain, then the 0.45 → 0.3 step under several recipes.
// --smoke (or LINEAGE_BENCH_SMOKE=1): schedule 0.6,0.3 (last-step: 0.6 then 0.3), 128 tokens per step of
// 2 × 32, 8 × 64 calibration tokens, 20 held-out stories; fails unless every perplexity is finite and positive.
import { parseArgs } from 'node:util';
import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import { getBackend } from '@lineage/core';
import { distill } from '@lineage/distill';
import { sane, smoke } from '../../../scripts/bench-kit.mjs';
import { decomposeModel } from '../dist/index.js';
import { data, heldOutPpl, loadParent, tokenCount, trainPath } from './stories-setup.mjs';

const { values: a } = parseArgs({
  options: {
    mode: { type: 'string', default: 'plrd' },
    'tokens-per-step': { type: 'string', default: '50000' },
    lr: { type: 'string', default: '2e-3' },
    aware: { type: 'string', default: 'none' },
    substeps: { type: 'string', default: '1' },
    smoke: { type: 'boolean' },
  },
});
if (smoke) a['tokens-per-step'] = '128';
try {
  await import('@lineage/backend-onnxruntime');
} catch {}
const T = tokenCount(a['tokens-per-step']);
const LR = Number(a.lr);
const schedule = smoke ? [0.6, 0.3] : [0.8, 0.6, 0.45, 0.3];
const backend = await getBackend();
const parent = await loadParent();
const ppl = async (m) => sane('held-out ppl', await heldOutPpl(m, backend));
const recipe = {
  backend,
  data,
  seqLen: smoke ? 32 : 256,
  batchSize: smoke ? 2 : 4,
  lr: LR,
  minLr: LR / 100,
  weightDecay: 0,
  seed: 0,
  hidden: { layers: 'uniform', weight: 1 },
  logEvery: 1e9,
};
const sample = sampleSequences(await loadDataset(trainPath), parent.tokenizer, {
  samples: smoke ? 8 : 64,
  seqLen: smoke ? 64 : 256,
  seed: 0,
});
const gramsOf = (m) => computeStats(m, backend, sample, { statistics: ['hessian'] });
const tag = `${a.mode} ${T} tokens/step lr ${LR} aware ${a.aware}:`;

if (a.mode === 'oneshot' || a.mode === 'oneshot-step') {
  const gram = a.aware === 'none' ? undefined : await gramsOf(parent);
  for (const [i, f] of schedule.entries()) {
    const m = (await decomposeModel(parent, { fraction: f, ...(gram ? { gram } : {}) })).model;
    const tokens = a.mode === 'oneshot' ? (i + 1) * T : T;
    await distill({ ...recipe, student: m, teacher: parent, tokens });
    console.log(`${tag} one-shot ${f} + ${tokens} tokens: ppl ${(await ppl(m)).toFixed(4)}`);
  }
} else {
  // the family; successive recoveries continue the data stream (dataStart)
  let m = parent;
  let position;
  const steps = a.mode === 'last-step' ? schedule.slice(0, -1) : schedule;
  const substeps = Number(a.substeps);
  let from = 1;
  for (const f of steps) {
    for (let j = 1; j <= substeps; j++) {
      const target = from + ((f - from) * j) / substeps;
      const gram = a.aware === 'none' ? undefined : await gramsOf(a.aware === 'own' ? m : parent);
      m = (await decomposeModel(m, { fraction: target, ...(gram ? { gram } : {}) })).model;
      const r = await distill({
        ...recipe,
        student: m,
        teacher: parent,
        tokens: Math.round(T / substeps),
        ...(position ? { dataStart: position } : {}),
      });
      position = r.dataEnd;
    }
    from = f;
    console.log(`${tag} member ${f}: ppl ${(await ppl(m)).toFixed(4)}`);
  }
  if (a.mode === 'last-step') {
    const previous = m;
    const variants = {
      default: {},
      'lr/2': { lr: LR / 2, minLr: LR / 200 },
      'lr×2': { lr: 2 * LR, minLr: LR / 50 },
      'KL only': { hidden: undefined },
      'teacher = previous member': { teacher: previous },
      'no warmup': { warmup: 0 },
      "parent's Grams": { gram: await gramsOf(parent) },
      "member's own Grams": { gram: await gramsOf(previous) },
    };
    for (const [name, { gram, teacher, ...v }] of Object.entries(variants)) {
      const s = (await decomposeModel(previous, { fraction: schedule.at(-1), ...(gram ? { gram } : {}) }))
        .model;
      const before = await ppl(s);
      await distill({
        ...recipe,
        ...v,
        student: s,
        teacher: teacher ?? parent,
        tokens: T,
        dataStart: position,
      });
      console.log(
        `${tag} last step, ${name}: ppl ${before.toFixed(2)} before, ${(await ppl(s)).toFixed(4)} after`,
      );
    }
  }
}
