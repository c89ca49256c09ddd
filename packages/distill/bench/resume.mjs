// Exact resume on a given backend: distil a damaged stories260K from the original for 8 steps without
// interruption; then again, interrupted after step 5 (the checkpoint of step 4 is the last one written) and
// resumed in a fresh model. Reports the largest difference between the two runs' final weights and loss
// curves (bitwise on js; onnxruntime's kernels may not be bit-reproducible run to run).
//
// Run after `pnpm build`: node packages/distill/bench/resume.mjs [--backend js|onnxruntime] [--smoke]
// --smoke (or LINEAGE_BENCH_SMOKE=1): the same 8 steps at 2 × 32 tokens each; fails unless the run resumed
// from step 4 and, on js, came out bitwise equal.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { getBackend, JsBackend, loadModel, namedParameters, sharedPath } from '@lineage/core';
import { sane, saneNonNegative, smoke } from '../../../scripts/bench-kit.mjs';
import { distill, perturbLinearWeights } from '../dist/index.js';

const { values: a } = parseArgs({
  options: { backend: { type: 'string', default: 'js' }, smoke: { type: 'boolean' } },
});
const [B_, T_] = smoke ? [2, 32] : [8, 128]; // tokens per step
const here = dirname(fileURLToPath(import.meta.url));
let backend;
if (a.backend === 'js') backend = new JsBackend();
else {
  const dist = join(here, '..', '..', `backend-${a.backend}`, 'dist', 'index.js');
  if (!existsSync(dist)) throw new Error(`@lineage/backend-${a.backend} is not built`);
  await import(dist);
  backend = await getBackend(a.backend);
}
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const { model: teacher } = await loadModel(MODEL);
const student = async () => perturbLinearWeights((await loadModel(MODEL)).model, 0.3, 1);
const tmp = mkdtempSync(join(tmpdir(), 'lineage-resume-'));
const base = {
  teacher,
  data: sharedPath('data', 'tinystories', 'train-head.txt'),
  tokens: 8 * B_ * T_,
  seqLen: T_,
  batchSize: B_,
  lr: 2e-3,
  backend,
  teacherBackend: backend,
  checkpointEvery: 2,
};
try {
  const lossesA = [];
  const A = await student();
  await distill({ ...base, student: A, checkpointDir: join(tmp, 'a'), onStep: (s) => lossesA.push(s.loss) });
  const lossesB = [];
  const ac = new AbortController();
  const cut = await distill({
    ...base,
    student: await student(),
    checkpointDir: join(tmp, 'b'),
    signal: ac.signal,
    checkpointOnStop: false,
    onStep: (s) => {
      lossesB.push(s.loss);
      if (s.step === 5) ac.abort();
    },
  });
  const B = await student();
  const resumed = await distill({
    ...base,
    student: B,
    checkpointDir: join(tmp, 'b'),
    resume: true,
    onStep: (s) => {
      lossesB[s.step - 1] = s.loss;
    },
  });
  let maxDiff = 0;
  let maxAbs = 0;
  let bitwise = true;
  const pb = namedParameters(B);
  for (const [name, p] of namedParameters(A)) {
    const x = p.value.toF32();
    const y = pb.get(name).value.toF32();
    for (let i = 0; i < x.length; i++) {
      if (!Object.is(x[i], y[i])) bitwise = false;
      maxDiff = Math.max(maxDiff, Math.abs(x[i] - y[i]));
      maxAbs = Math.max(maxAbs, Math.abs(x[i]));
    }
  }
  const lossDiff = Math.max(...lossesA.map((l, i) => Math.abs(l - lossesB[i])));
  saneNonNegative('maxWeightDifference', maxDiff);
  saneNonNegative('maxLossDifference', lossDiff);
  sane('largestWeight', maxAbs);
  if (resumed.steps !== 8 || lossesA.length !== 8) throw new Error(`expected 8 steps, ran ${resumed.steps}`);
  if (backend.name === 'js' && !bitwise) throw new Error('resume on js is not bitwise exact');
  console.log(
    JSON.stringify(
      {
        backend: `${backend.name} (${backend.device})`,
        interruptedAt: cut.steps,
        resumedFrom: resumed.resumedFrom,
        steps: resumed.steps,
        bitwiseEqualWeights: bitwise,
        maxWeightDifference: maxDiff,
        largestWeight: maxAbs,
        maxLossDifference: lossDiff,
      },
      null,
      2,
    ),
  );
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
