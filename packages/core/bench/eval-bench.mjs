// Eval throughput of the `js` backend on the real stories260K and on a synthetic checkpoint with the shape
// of stories42M (dim 512, 8 layers, 8 heads, hidden 1376, vocab 32000), written to disk and loaded back like
// a user's model. GFLOP/s counts 2·(linear params) per token plus causal attention (4·layers·dim per attended
// position). Beside it, the same run measures a large js matmul and numpy's matmul as yardsticks (the numpy
// row is skipped, with the reason, where python3 or numpy is missing). The stories42M eval and the js
// gate-projection matmul alternate for ≥ 3 rounds (LINEAGE_BENCH_ROUNDS) and are quoted as medians, with
// their ratio; the load before/after decides whether figures are quotable (scripts/bench-kit.mjs, JSON to
// --json <file> or bench-results/).
//
// Run after `pnpm build`: pnpm --filter @lineage/core bench
// --smoke (or LINEAGE_BENCH_SMOKE=1): a tiny synthetic model, 4 dev documents, small matmuls, a fraction of a
// second per figure; fails unless every figure is finite and positive (scripts/bench-smoke.mjs runs it in CI).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  alternate,
  benchRounds,
  benchShape,
  median,
  pythonMissing,
  sane,
  smoke,
  startBench,
} from '../../../scripts/bench-kit.mjs';
import {
  getBackend,
  initModel,
  llamaConfig,
  loadModel,
  Ops,
  perplexity,
  readTextFile,
  saveModel,
  sharedPath,
} from '../dist/index.js';

const SECONDS = smoke ? 0.05 : 1; // minimum timed seconds per measurement
const bench = startBench('core-eval');
const rounds = benchRounds();

const backendName = process.env.LINEAGE_BENCH_BACKEND ?? 'js';
const backend = await getBackend(backendName);

function linearParams(model) {
  let n = 0;
  for (const [, l] of model.linearLayers()) n += l.inFeatures * l.outFeatures;
  if (!model.lmHead) n += model.config.vocabSize * model.config.hiddenSize;
  return n;
}

/** Forward FLOPs of scoring sequences of the given lengths (causal attention). */
function forwardFlops(model, lengths) {
  const c = model.config;
  const lin = linearParams(model);
  let f = 0;
  for (const T of lengths) f += 2 * lin * T + 4 * c.numLayers * c.numHeads * c.headDim * ((T * (T + 1)) / 2);
  return f;
}

async function timeIt(fn, minSeconds = SECONDS) {
  await fn();
  let n = 0;
  const t0 = performance.now();
  do {
    await fn();
    n++;
  } while ((performance.now() - t0) / 1000 < minSeconds);
  return (performance.now() - t0) / 1000 / n;
}

async function matmulGflops(m, k, n) {
  const ops = new Ops(backend);
  const a = ops.upload(
    Float32Array.from({ length: m * k }, () => Math.random() - 0.5),
    [m, k],
  );
  const b = ops.upload(
    Float32Array.from({ length: n * k }, () => Math.random() - 0.5),
    [n, k],
  );
  const s = await timeIt(() => ops.tidy(() => ops.matmul(a, b, { transposeB: true })));
  ops.dispose(a, b);
  return (2 * m * k * n) / s / 1e9;
}

function numpyGflops(n) {
  try {
    const out = execFileSync(
      'python3',
      [
        '-c',
        `
import numpy as np, time
a=np.random.rand(${n},${n}).astype(np.float32); b=np.random.rand(${n},${n}).astype(np.float32)
a@b; t=time.perf_counter(); k=0
while time.perf_counter()-t<${SECONDS}: a@b; k+=1
print(2*${n}**3*k/(time.perf_counter()-t)/1e9)`,
      ],
      { encoding: 'utf8' },
    );
    return Number(out.trim());
  } catch {
    return undefined;
  }
}

const results = {};

// 1. The real model on real text (documents protocol, first 100 dev stories).
{
  const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
  const text = await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'));
  const opts = { protocol: 'documents', separator: '<|endoftext|>', limit: smoke ? 4 : 100, batchSize: 8 };
  await perplexity(model, backend, text, { ...opts, limit: smoke ? 2 : 8 });
  const t0 = performance.now();
  const r = await perplexity(model, backend, text, opts);
  const s = (performance.now() - t0) / 1000;
  const { evalSequences } = await import('../dist/index.js');
  const lengths = evalSequences(model, text, opts).map((x) => x.length);
  const tokens = lengths.reduce((a, b) => a + b, 0);
  results.stories260K = {
    tokensPerSecond: tokens / s,
    gflops: forwardFlops(model, lengths) / s / 1e9,
    ppl: r.ppl,
    seconds: s,
  };
}

// 2. Synthetic stories42M-shaped checkpoint, saved as a HF directory and loaded back.
{
  const dir = mkdtempSync(join(tmpdir(), 'lineage-bench-'));
  try {
    const cfg = llamaConfig(benchShape);
    const src = initModel(cfg, { seed: 1 });
    await saveModel(src, join(dir, 'm'), { format: 'hf' });
    const { model } = await loadModel(join(dir, 'm'), { tokenizerOptional: true });
    const B = Number(process.env.LINEAGE_BENCH_BATCH ?? (smoke ? 1 : 2));
    const T = Number(process.env.LINEAGE_BENCH_SEQ ?? (smoke ? 16 : 256));
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % cfg.vocabSize);
    const ops = new Ops(backend);
    // alternated with the js matmul of the model's gate projection (the same kernel at full efficiency)
    const { dim, hidden } = benchShape;
    const samples = await alternate(rounds, {
      eval: () =>
        timeIt(() => ops.tidy(async () => ops.readF32(await model.forward(ops, ids, B))), 5 * SECONDS),
      matmul: () => matmulGflops(dim, dim, hidden),
    });
    const s = median(samples.eval);
    const lengths = Array.from({ length: B }, () => T);
    const flops = forwardFlops(model, lengths);
    bench.ratio(
      `${smoke ? 'tiny' : 'stories42M'} eval GFLOP/s / js ${dim}x${dim}x${hidden} matmul`,
      samples.eval.map((x) => flops / x / 1e9),
      samples.matmul,
    );
    results.stories42M = {
      batch: B,
      seqLen: T,
      tokensPerSecond: (B * T) / s,
      gflops: forwardFlops(model, lengths) / s / 1e9,
      seconds: s,
      samples,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// 3. Yardsticks in the same run.
// The model's two matmul shapes on as many tokens as its width: a gate projection and the tied head.
const { dim, hidden, vocab } = benchShape;
const np = smoke ? 256 : 2048;
const noNumpy = pythonMissing(['numpy']);
results.matmul = {
  [`js ${dim}x${dim}x${hidden} (x·Wᵀ)`]: await matmulGflops(dim, dim, hidden),
  [`js ${dim}x${dim}x${vocab} (x·Wᵀ)`]: await matmulGflops(dim, dim, vocab),
  [`numpy ${np}³ (multithreaded BLAS)`]: noNumpy ? `skipped: ${noNumpy}` : numpyGflops(np),
};
sane('stories260K tokensPerSecond', results.stories260K.tokensPerSecond);
sane('stories260K gflops', results.stories260K.gflops);
sane('stories260K ppl', results.stories260K.ppl);
sane('synthetic tokensPerSecond', results.stories42M.tokensPerSecond);
sane('synthetic gflops', results.stories42M.gflops);
for (const [k, v] of Object.entries(results.matmul)) if (typeof v !== 'string') sane(`matmul ${k}`, v);

const f = (x) => (x === undefined ? 'n/a' : typeof x === 'string' ? x : x.toFixed(2));
console.log(`backend ${backend.name} (${backend.device}), node ${process.version}`);
console.log(
  `stories260K eval (${smoke ? 4 : 100} dev docs): ${results.stories260K.tokensPerSecond.toFixed(0)} tokens/s, ${f(results.stories260K.gflops)} GFLOP/s, ppl ${results.stories260K.ppl.toFixed(4)}`,
);
console.log(
  `${smoke ? 'tiny' : 'stories42M'}-shape eval (${results.stories42M.batch}×${results.stories42M.seqLen}): ${results.stories42M.tokensPerSecond.toFixed(1)} tokens/s, ${f(results.stories42M.gflops)} GFLOP/s`,
);
for (const [k, v] of Object.entries(results.matmul))
  console.log(`matmul ${k}: ${f(v)}${typeof v === 'string' ? '' : ' GFLOP/s'}`);
bench.finish(results);
