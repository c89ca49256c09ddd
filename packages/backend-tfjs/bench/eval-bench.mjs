// Eval throughput of the `tfjs` backend per engine on a synthetic checkpoint with the shape of stories42M
// (dim 512, 8 layers, 8 heads, hidden 1376, vocab 32000): one eval step is what `perplexity` runs per batch
// (hidden states, logits, cross-entropy, read back). GFLOP/s counts 2·(linear params) per token plus causal
// attention (4·layers·dim per attended position), as packages/core/bench does. In the same run: the `js`
// backend on the same model (the 3× target), one 2048³ onnxruntime MatMul (through
// @lineage/backend-onnxruntime when it is built beside this package), and the wasm matmul trap.
//
//   node bench/eval-bench.mjs                       (after `pnpm --filter @lineage/backend-tfjs build`)
//   LINEAGE_BENCH_ENGINES=wasm,cpu,webgpu           engines to run (default: all that start)
//   LINEAGE_BENCH_SECONDS=3                         minimum timed seconds per measurement
//   --smoke (or LINEAGE_BENCH_SMOKE=1)             wasm and cpu engines, a tiny model, 256³ matmuls, a fraction
//                                                   of a second each; fails unless every figure is finite and positive
import { getBackend, initModel, llamaConfig, Ops } from '@lineage/core';
import {
  benchShape,
  forwardFlops,
  lcgFloats,
  perOpNll,
  sane,
  smoke,
  startBench,
  syntheticTokens,
  yardstickSize,
} from '../../../scripts/bench-kit.mjs';

// load before/after, the verdict and the JSON record (scripts/bench-kit.mjs)
const bench = startBench('tfjs-eval');

import { createTfjsBackend } from '../dist/base.js';

const SECONDS = Number(process.env.LINEAGE_BENCH_SECONDS ?? (smoke ? 0.05 : 3));
const ENGINES = (process.env.LINEAGE_BENCH_ENGINES ?? (smoke ? 'wasm,cpu' : 'wasm,webgpu,cpu'))
  .split(',')
  .filter(Boolean);
const MM = yardstickSize; // the MatMul yardstick's size
// Tokens per eval step: [B, T] on fast engines and on slow ones (pure-JS cpu, software WebGPU).
const [FAST, SLOW] = smoke
  ? [
      [1, 16],
      [1, 16],
    ]
  : [
      [2, 256],
      [1, 64],
    ];
// The wasm matmul trap's x·Wᵀ shape (stories42M's gate projection on 512 tokens).
const TRAP = smoke ? [64, 64, 172] : [512, 512, 1376];

/** Seconds per call: one warm-up call, then calls until `SECONDS` have passed (at least one). */
async function timeIt(fn, seconds = SECONDS) {
  await fn();
  let n = 0;
  const t0 = performance.now();
  do {
    await fn();
    n++;
  } while ((performance.now() - t0) / 1000 < seconds);
  return (performance.now() - t0) / 1000 / n;
}

const cfg = llamaConfig(benchShape);
const model = initModel(cfg, { seed: 1 });

function evalFlops(B, T) {
  return forwardFlops(
    model,
    Array.from({ length: B }, () => T),
  );
}

/** One eval step per call, as `perplexity` runs it. */
async function evalSynthetic(backend, B, T) {
  const ops = new Ops(backend);
  const { ids, targets } = syntheticTokens(B * T, cfg.vocabSize);
  let nll = 0;
  const s = await timeIt(async () => {
    const v = await perOpNll(ops, model, ids, targets, B);
    nll = v.reduce((p, x) => p + x, 0) / v.length;
  });
  model.release();
  return {
    batch: B,
    seqLen: T,
    tokensPerSecond: (B * T) / s,
    gflops: evalFlops(B, T) / s / 1e9,
    seconds: s,
    nll,
  };
}

async function matmulGflops(backend, m, k, n, transposeB = false) {
  const ops = new Ops(backend);
  const a = ops.upload(lcgFloats(m * k, 1), [m, k]);
  const b = ops.upload(lcgFloats(k * n, 2), transposeB ? [n, k] : [k, n]);
  const s = await timeIt(() =>
    ops.tidy(async () => {
      const y = await ops.matmul(a, b, { transposeB });
      await ops.read(await ops.slice(y, [0, 0], [1, 1])); // wait for a GPU
    }),
  );
  ops.dispose(a, b);
  return (2 * m * k * n) / s / 1e9;
}

const results = { node: process.version, engines: {} };
const f = (x, d = 1) => (x === undefined ? 'n/a' : x.toFixed(d));

// 1. Yardstick: one 2048³ (smoke: 256³) onnxruntime MatMul, through @lineage/backend-onnxruntime (built beside us).
try {
  const ort = await import('../../backend-onnxruntime/dist/base.js');
  const be = await ort.createOnnxruntimeBackend({ device: 'cpu' });
  results.ort2048 = await matmulGflops(be, MM, MM, MM);
  await be.close?.();
} catch (e) {
  results.ort2048 = undefined;
  results.ort2048Error = String(e?.message ?? e).split('\n')[0];
}
console.log(
  `onnxruntime ${MM}³ MatMul: ${f(results.ort2048)} GFLOP/s${results.ort2048Error ? ` (${results.ort2048Error})` : ''}`,
);

// 2. The js reference backend on the same model.
{
  const js = await getBackend('js');
  results.js = await evalSynthetic(js, ...FAST);
  sane('js eval tokensPerSecond', results.js.tokensPerSecond);
  sane('js eval gflops', results.js.gflops);
  console.log(
    `js          eval ${FAST.join('×')}: ${f(results.js.tokensPerSecond)} tokens/s, ${f(results.js.gflops, 2)} GFLOP/s`,
  );
}

// 3. Each tfjs engine. Slow engines (pure-JS cpu, software WebGPU) score 1×64 tokens per step.
for (const engine of ENGINES) {
  let be;
  try {
    be = await createTfjsBackend({ engine });
  } catch (e) {
    results.engines[engine] = { skipped: String(e?.message ?? e).split('\n')[0] };
    console.log(`tfjs ${engine.padEnd(7)} skipped: ${results.engines[engine].skipped}`);
    continue;
  }
  const slow =
    engine === 'cpu' || (engine === 'webgpu' && /llvmpipe|lavapipe|swiftshader/i.test(be.engineDescription));
  const [B, T] = slow ? SLOW : FAST;
  const r = await evalSynthetic(be, B, T);
  r.description = be.engineDescription;
  r.matmul2048 = slow ? undefined : await matmulGflops(be, MM, MM, MM);
  for (const k of ['tokensPerSecond', 'gflops', 'nll']) sane(`tfjs ${engine} eval ${k}`, r[k]);
  if (r.matmul2048 !== undefined) sane(`tfjs ${engine} matmul`, r.matmul2048);
  r.vsJs = r.gflops / results.js.gflops;
  r.vsOrt2048 = results.ort2048 ? r.gflops / results.ort2048 : undefined;
  results.engines[engine] = r;
  // one measurement each, not alternated: the kit still refuses the verdict when the machine was loaded
  bench.ratio(`tfjs ${engine} eval GFLOP/s / js eval GFLOP/s`, [r.gflops], [results.js.gflops], {
    note: 'one round, not alternated',
    ...(engine === 'wasm' ? { min: 3 } : {}),
  });
  console.log(
    `tfjs ${engine.padEnd(7)} eval ${B}×${T}: ${f(r.tokensPerSecond)} tokens/s, ${f(r.gflops, 2)} GFLOP/s ` +
      `= ${f(r.vsJs, 2)}× js, ${r.vsOrt2048 === undefined ? 'n/a' : `${f(100 * r.vsOrt2048, 0)}%`} of the ORT MatMul` +
      `${r.matmul2048 === undefined ? '' : `; its own ${MM}³ matmul ${f(r.matmul2048)} GFLOP/s`} [${be.engineDescription}]`,
  );
  if (engine === 'wasm') {
    // Fused attention against core's composite, and the matmul trap (tfjs's own kernel on x·Wᵀ).
    const comp = await createTfjsBackend({ engine, fusedAttention: false });
    const rc = await evalSynthetic(comp, B, T);
    sane('tfjs wasm composite-attention eval tokensPerSecond', rc.tokensPerSecond);
    results.engines['wasm (composite attention)'] = rc;
    console.log(
      `tfjs wasm, composite attention instead of fused: ${f(rc.tokensPerSecond)} tokens/s (fused: ${f(r.tokensPerSecond)})`,
    );
    const tf = be.tf;
    const [tm, tk, tn] = TRAP;
    const x = tf.tensor2d(lcgFloats(tm * tk, 3), [tm, tk]);
    const w = tf.tensor2d(lcgFloats(tn * tk, 4), [tn, tk]);
    const s = await timeIt(
      async () => {
        const y = tf.matMul(x, w, false, true);
        await y.data();
        y.dispose();
      },
      Math.min(1, SECONDS),
    );
    tf.dispose([x, w]);
    results.wasmTrap = {
      tfjsTransposeB: (2 * tm * tk * tn) / s / 1e9,
      ours: await matmulGflops(be, tm, tk, tn, true),
    };
    sane('wasm trap tfjs', results.wasmTrap.tfjsTransposeB);
    sane('wasm trap ours', results.wasmTrap.ours);
    console.log(
      `wasm x·Wᵀ ${TRAP.join('×')}: tfjs matMul(transposeB) ${f(results.wasmTrap.tfjsTransposeB, 2)} GFLOP/s, this backend ${f(results.wasmTrap.ours, 2)} GFLOP/s`,
    );
    await comp.close();
  }
  await be.close();
}

bench.finish(results);
process.exit(0); // a Dawn instance may keep the event loop alive
