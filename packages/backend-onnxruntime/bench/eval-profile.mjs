// Where the time of an onnxruntime-cpu evaluation goes (issue #16): the stories42M-shaped synthetic model,
// B × T tokens per forward (default 4 × 512), scored as perplexity() does. Every backend op is timed (wall,
// awaited) and, inside it, the onnxruntime session.run calls by kernel; the rest of an op's time is the
// backend's JS work (feeds, output wrapping, js small-op kernels). The forward is also split into its phases:
// decoder blocks (model.hidden), the tied head (the [tokens × 32000] logits), the cross-entropy and the read.
// Timed calls alternate with the 2048³ MatMul yardstick so the shares can be read against it, ≥ 3 rounds,
// medians (scripts/bench-kit.mjs records the load and writes the JSON).
//
// Run after `pnpm build`: node packages/backend-onnxruntime/bench/eval-profile.mjs
// Env: LINEAGE_BENCH_BATCH × LINEAGE_BENCH_SEQ (default 4 × 512), LINEAGE_BENCH_ROUNDS (default 3).
// Before/after in one run: LINEAGE_BENCH_BASELINE=<another build's dist folder> (e.g. a copy of this
// package's dist made before a change, kept inside the package so it resolves the same dependencies) adds an
// alternated comparison of whole forwards and of the cross-entropy alone, this build against that one.
// --smoke (or LINEAGE_BENCH_SMOKE=1): a tiny model, one round; fails unless every figure is finite and positive.
import { resolve } from 'node:path';
import { initModel, llamaConfig, Ops } from '@lineage/core';
import {
  alternate,
  benchRounds,
  benchShape,
  lcgFloats,
  median,
  perOpNll,
  sane,
  smoke,
  startBench,
  syntheticTokens,
  timeBackendOps,
  yardstickOperands,
  yardstickSize,
} from '../../../scripts/bench-kit.mjs';
import { createOnnxruntimeBackend } from '../dist/index.js';

const B = Number(process.env.LINEAGE_BENCH_BATCH ?? (smoke ? 1 : 4));
const T = Number(process.env.LINEAGE_BENCH_SEQ ?? (smoke ? 16 : 512));
const MM = yardstickSize;
const bench = startBench('onnxruntime-eval-profile');
const rounds = benchRounds();

const backend = await createOnnxruntimeBackend({ device: 'cpu' });
const proto = Object.getPrototypeOf(backend);

// ---- instrumentation: per-op wall time, and session.run time by kernel key
let prof = null; // { ops: Map<name, {n, s}>, kernels: Map<key, {n, s}> }
const add = (m, k, s) => {
  const e = m.get(k) ?? { n: 0, s: 0 };
  e.n++;
  e.s += s;
  m.set(k, e);
};
timeBackendOps(backend, (name, args, _, seconds) => {
  if (!prof) return;
  const label = name === 'binary' || name === 'unary' || name === 'reduce' ? `${name}:${args[0]}` : name;
  add(prof.ops, label, seconds);
});
const runKernel = proto.runKernel;
backend.runKernel = async function (key, build, feeds, location) {
  const t0 = performance.now();
  const r = await runKernel.call(this, key, build, feeds, location);
  if (prof) add(prof.kernels, key.split(':').slice(0, 2).join(':'), (performance.now() - t0) / 1000);
  return r;
};

const cfg = llamaConfig({ ...benchShape, context: Math.max(benchShape.context, T) });
const model = initModel(cfg, { seed: 1 });
const ops = new Ops(backend);
const defaultOps = ops;
const { ids, targets } = syntheticTokens(B * T, cfg.vocabSize);

/** One forward as perplexity() scores it; `phases` (optional) collects the seconds of its phases. */
function forward(phases, ops = defaultOps) {
  let t = performance.now();
  const lap = (k) => {
    const n = performance.now();
    if (phases) phases[k] = (phases[k] ?? 0) + (n - t) / 1000;
    t = n;
  };
  return perOpNll(ops, model, ids, targets, B, lap);
}

const [A, Bm] = yardstickOperands(ops, MM);
await forward(); // warm-up: weights uploaded, sessions built
await ops.tidy(() => ops.matmul(A, Bm));

const runs = [];
const samples = await alternate(rounds, {
  matmul: async () => {
    const t0 = performance.now();
    await ops.tidy(() => ops.matmul(A, Bm));
    return (2 * MM ** 3) / ((performance.now() - t0) / 1000) / 1e9;
  },
  eval: async () => {
    prof = { ops: new Map(), kernels: new Map() };
    const phases = {};
    const t0 = performance.now();
    await forward(phases);
    const wall = (performance.now() - t0) / 1000;
    runs.push({ wall, phases, ops: Object.fromEntries(prof.ops), kernels: Object.fromEntries(prof.kernels) });
    prof = null;
    return wall;
  },
});
const wall = median(samples.eval);
// the median run's breakdown
const run = runs.reduce((a, r) => (Math.abs(r.wall - wall) < Math.abs(a.wall - wall) ? r : a));
const opTotal = Object.values(run.ops).reduce((a, e) => a + e.s, 0);
const kernelTotal = Object.values(run.kernels).reduce((a, e) => a + e.s, 0);
const matmulKernel = run.kernels['matmul:2'] ?? { n: 0, s: 0 };
const mmGflops = median(samples.matmul);
// FLOPs of the matmuls alone (linear layers + tied head), to compare the matmul kernels' rate with the yardstick
let lin = 0;
for (const [, l] of model.linearLayers()) lin += l.inFeatures * l.outFeatures;
lin += cfg.vocabSize * cfg.hiddenSize;
const linFlops = 2 * lin * B * T;
const pct = (s) => `${((100 * s) / run.wall).toFixed(1)}%`;
console.log(
  `onnxruntime-cpu eval profile, ${smoke ? 'tiny' : 'stories42M'} shape, ${B}×${T} tokens per forward; median forward ${wall.toFixed(3)} s (${((B * T) / wall).toFixed(0)} tokens/s); ${MM}³ MatMul ${mmGflops.toFixed(1)} GFLOP/s (medians of ${rounds} rounds)`,
);
console.log(
  'phases:',
  Object.entries(run.phases)
    .map(([k, s]) => `${k} ${s.toFixed(3)} s (${pct(s)})`)
    .join(', '),
);
console.log(
  `backend ops ${opTotal.toFixed(3)} s (${pct(opTotal)}), of which onnxruntime session.run ${kernelTotal.toFixed(3)} s (${pct(kernelTotal)}); outside the backend (model code, tidy, Ops) ${(run.wall - opTotal).toFixed(3)} s (${pct(run.wall - opTotal)})`,
);
console.log(
  `linear/head MatMul kernels: ${matmulKernel.n} runs, ${matmulKernel.s.toFixed(3)} s (${pct(matmulKernel.s)}), ${(linFlops / matmulKernel.s / 1e9).toFixed(1)} GFLOP/s = ${((100 * linFlops) / matmulKernel.s / 1e9 / mmGflops).toFixed(0)}% of the yardstick`,
);
console.log('per op (wall, awaited; n calls):');
for (const [k, e] of Object.entries(run.ops).sort((a, b) => b[1].s - a[1].s))
  console.log(`  ${k.padEnd(20)} ${e.s.toFixed(3)} s ${pct(e.s).padStart(6)}  n=${e.n}`);
console.log('per onnxruntime kernel (session.run):');
for (const [k, e] of Object.entries(run.kernels).sort((a, b) => b[1].s - a[1].s))
  console.log(
    `  ${k.padEnd(20)} ${e.s.toFixed(3)} s ${pct(e.s).padStart(6)}  n=${e.n}, ${((1e6 * e.s) / e.n).toFixed(0)} µs/run`,
  );
sane('forward seconds', wall);
sane('matmul gflops', mmGflops);
bench.ratio(
  'eval GFLOP/s (matmuls only) / MatMul',
  samples.eval.map((s) => linFlops / s / 1e9),
  samples.matmul,
);
// ---- this build against a baseline build, alternated (LINEAGE_BENCH_BASELINE)
let compare;
if (process.env.LINEAGE_BENCH_BASELINE) {
  const dir = resolve(process.env.LINEAGE_BENCH_BASELINE);
  const { createOnnxruntimeBackend: createBaseline } = await import(
    resolve(dir, 'base.js') // base.js: the backend without registering it (index.js would register it twice)
  );
  const base = await createBaseline({ device: 'cpu' });
  const opsBase = new Ops(base);
  const V = cfg.vocabSize;
  const logitsData = lcgFloats(B * T * V, 3);
  const lCur = ops.upload(logitsData.slice(), [B * T, V]);
  const lBase = opsBase.upload(logitsData.slice(), [B * T, V]);
  const tCur = ops.upload(targets.slice(), [B * T]);
  const tBase = opsBase.upload(targets.slice(), [B * T]);
  const ce = (o, l, t) => o.tidy(async () => o.readF32(await o.crossEntropy(l, t)));
  const [a, b] = [await ce(ops, lCur, tCur), await ce(opsBase, lBase, tBase)];
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  await forward(undefined, opsBase); // warm-up of the baseline
  const timed = async (fn) => {
    const t0 = performance.now();
    await fn();
    return (performance.now() - t0) / 1000;
  };
  const s2 = await alternate(rounds, {
    baseline: () => timed(() => forward(undefined, opsBase)),
    current: () => timed(() => forward(undefined, ops)),
    ceBaseline: () => timed(() => ce(opsBase, lBase, tBase)),
    ceCurrent: () => timed(() => ce(ops, lCur, tCur)),
  });
  // speedups: baseline seconds / this build's seconds
  const fwd = bench.ratio('forward: baseline build s / this build s', s2.baseline, s2.current);
  const ceR = bench.ratio(
    'cross-entropy alone: baseline build s / this build s',
    s2.ceBaseline,
    s2.ceCurrent,
  );
  compare = {
    baseline: dir,
    samples: s2,
    forwardSpeedup: fwd,
    crossEntropySpeedup: ceR,
    crossEntropyMaxAbsDiff: maxDiff,
  };
  console.log(
    `against ${dir}: forward ${median(s2.baseline).toFixed(3)} → ${median(s2.current).toFixed(3)} s (×${fwd.toFixed(3)}), cross-entropy of [${B * T}, ${V}] ${median(s2.ceBaseline).toFixed(3)} → ${median(s2.ceCurrent).toFixed(3)} s (×${ceR.toFixed(2)}), max |Δ nll| ${maxDiff.toExponential(2)}`,
  );
  await base.close();
}
bench.finish({ batch: B, seqLen: T, wall, samples, runs, ...(compare ? { compare } : {}) });
await backend.close();
