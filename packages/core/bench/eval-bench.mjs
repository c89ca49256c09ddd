// Eval throughput of the `js` backend on the real stories260K and on a synthetic checkpoint with the shape
// of stories42M (dim 512, 8 layers, 8 heads, hidden 1376, vocab 32000), written to disk and loaded back like
// a user's model. GFLOP/s counts 2·(linear params) per token plus causal attention (4·layers·dim per attended
// position). Beside it, the same run measures a large js matmul and numpy's matmul as yardsticks.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

async function timeIt(fn, minSeconds = 1) {
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
while time.perf_counter()-t<1: a@b; k+=1
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
  const opts = { protocol: 'documents', separator: '<|endoftext|>', limit: 100, batchSize: 8 };
  await perplexity(model, backend, text, { ...opts, limit: 8 });
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
    const cfg = llamaConfig({ dim: 512, layers: 8, heads: 8, hidden: 1376, vocab: 32000, context: 1024 });
    const src = initModel(cfg, { seed: 1 });
    await saveModel(src, join(dir, 'm'), { format: 'hf' });
    const { model } = await loadModel(join(dir, 'm'), { tokenizerOptional: true });
    const B = Number(process.env.LINEAGE_BENCH_BATCH ?? 2);
    const T = Number(process.env.LINEAGE_BENCH_SEQ ?? 256);
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % cfg.vocabSize);
    const ops = new Ops(backend);
    const s = await timeIt(() => ops.tidy(async () => ops.readF32(await model.forward(ops, ids, B))), 5);
    const lengths = Array.from({ length: B }, () => T);
    results.stories42M = {
      batch: B,
      seqLen: T,
      tokensPerSecond: (B * T) / s,
      gflops: forwardFlops(model, lengths) / s / 1e9,
      seconds: s,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// 3. Yardsticks in the same run.
results.matmul = {
  'js 512x512x1376 (x·Wᵀ)': await matmulGflops(512, 512, 1376),
  'js 512x512x32000 (x·Wᵀ)': await matmulGflops(512, 512, 32000),
  'numpy 2048³ (multithreaded BLAS)': numpyGflops(2048),
};

const f = (x) => (x === undefined ? 'n/a' : x.toFixed(2));
console.log(`backend ${backend.name} (${backend.device}), node ${process.version}`);
console.log(
  `stories260K eval (100 dev docs): ${results.stories260K.tokensPerSecond.toFixed(0)} tokens/s, ${f(results.stories260K.gflops)} GFLOP/s, ppl ${results.stories260K.ppl.toFixed(4)}`,
);
console.log(
  `stories42M-shape eval (${results.stories42M.batch}×${results.stories42M.seqLen}): ${results.stories42M.tokensPerSecond.toFixed(1)} tokens/s, ${f(results.stories42M.gflops)} GFLOP/s`,
);
for (const [k, v] of Object.entries(results.matmul)) console.log(`matmul ${k}: ${f(v)} GFLOP/s`);
console.log(JSON.stringify(results));
