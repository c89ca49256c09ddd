// Is a `low_rank` model faster than its dense parent? (issue #16, item 4.) A synthetic checkpoint of the
// stories42M shape (dim 512, 8 layers, 8 heads, FFN 1376, vocab 32000, tied; random weights: speed and memory
// do not depend on the values) is cut by plain `svd` to 50% and 30% of the decomposable parameters (uniform
// ranks ⌊p·m·n/(m+n)⌋, so every layer has r·(m+n) < m·n) and saved; each model is then loaded and evaluated in
// a fresh child process (so its memory is its own), alternately parent, 50%, 30%, for ≥ 3 rounds: the same
// ids scored as perplexity() does (hidden states → tied head → per-token cross-entropy read back), batch ×
// seqLen tokens per forward on the default backend (onnxruntime-cpu when built, LINEAGE_BENCH_BACKEND
// overrides). Figures: median tokens/s over the rounds, the speedup as a ratio of medians (target of the
// issue: ≥ 1.4× at 30%), and resident memory (VmRSS) of each child after loading and after a warm forward,
// with its growth over the child's baseline before loading. Verdicts are refused when the machine was loaded
// (scripts/bench-kit.mjs); results go to --json <file> or bench-results/.
//
// LINEAGE_BENCH_PATH: how each forward is scored, `fused` (the default where the backend offers fused
// evaluation, as `lineage eval` does: the model and its loss as one graph), `per-op`, or `both`.
// Run after `pnpm build`: node packages/svd/bench/low-rank-speed.mjs   (env LINEAGE_BENCH_ROUNDS,
// LINEAGE_BENCH_SECONDS: timed seconds per model per round, default 3; LINEAGE_BENCH_BATCH × _SEQ, default
// 4 × 512)
// --smoke (or LINEAGE_BENCH_SMOKE=1): a tiny model, one short round; fails unless every figure is finite and
// positive.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  applyMethod,
  getBackend,
  initModel,
  llamaConfig,
  loadModel,
  methodContext,
  Ops,
  saveModel,
} from '@lineage/core';
import {
  alternate,
  batchScorer,
  benchRounds,
  benchShape,
  field,
  median,
  residentBytes,
  sane,
  scoringPaths,
  smoke,
  startBench,
} from '../../../scripts/bench-kit.mjs';
import { svd } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const B = Number(process.env.LINEAGE_BENCH_BATCH ?? (smoke ? 1 : 4));
const T = Number(process.env.LINEAGE_BENCH_SEQ ?? (smoke ? 16 : 512));
const SECONDS = Number(process.env.LINEAGE_BENCH_SECONDS ?? (smoke ? 0.05 : 3));
const FRACTIONS = [0.5, 0.3];

async function backendForBench() {
  const name = process.env.LINEAGE_BENCH_BACKEND;
  if (name !== 'js') {
    try {
      await import('@lineage/backend-onnxruntime');
    } catch {
      try {
        await import(join(here, '..', '..', 'backend-onnxruntime', 'dist', 'index.js'));
      } catch {}
    }
  }
  return getBackend(name);
}

/** In a child: load the model, warm forward, RSS, then tokens/s over ≥ SECONDS (median call). */
async function child(dir, path) {
  const base = residentBytes();
  const { model } = await loadModel(dir, { tokenizerOptional: true });
  const loaded = residentBytes();
  const backend = await backendForBench();
  const ops = new Ops(backend);
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % model.config.vocabSize);
  const run = batchScorer(backend, ops, model, ids, B, path);
  await run(); // warm-up: uploads, sessions
  const warm = residentBytes();
  const calls = [];
  const t0 = performance.now();
  do {
    const c0 = performance.now();
    await run();
    calls.push((performance.now() - c0) / 1000);
  } while ((performance.now() - t0) / 1000 < SECONDS);
  const peak = residentBytes();
  const s = model.stats();
  await backend.close?.();
  return {
    backend: `${backend.name} (${backend.device})`,
    tokensPerSecond: (B * T) / median(calls),
    calls: calls.length,
    params: s.params,
    storedBytes: s.bytes,
    rss: { base, loaded, warm, afterTiming: peak, growth: warm - base },
  };
}

if (process.argv[2] === '--child') {
  console.log(JSON.stringify(await child(process.argv[3], process.argv[4])));
  process.exit(0);
}

const bench = startBench('low-rank-speed');
const rounds = benchRounds();
const dir = mkdtempSync(join(tmpdir(), 'lineage-lowrank-bench-'));
try {
  const cfg = llamaConfig(benchShape);
  const parent = initModel(cfg, { seed: 1 });
  await saveModel(parent, join(dir, 'dense'), { format: 'hf' });
  const backend = await backendForBench();
  const cut = {};
  for (const f of FRACTIONS) {
    const t0 = performance.now();
    const m = await applyMethod(svd({ params: f }), parent, methodContext(backend));
    cut[f] = { seconds: (performance.now() - t0) / 1000, params: m.stats().params };
    await saveModel(m, join(dir, `r${f}`), { format: 'hf' });
    m.release();
  }
  const paths = scoringPaths(backend);
  await backend.close?.();
  const self = fileURLToPath(import.meta.url);
  const measure = (dir, path) =>
    JSON.parse(
      execFileSync(process.execPath, [self, '--child', dir, path, ...(smoke ? ['--smoke'] : [])], {
        encoding: 'utf8',
        maxBuffer: 1 << 22,
      })
        .trim()
        .split('\n')
        .pop(),
    );
  // variant names: 'dense', 'low_rank 0.5', … on the first path; 'per-op: dense', … on the second
  const prefix = (path) => (path === paths[0] ? '' : `${path}: `);
  const variants = Object.fromEntries(
    paths.flatMap((path) => [
      [`${prefix(path)}dense`, ['dense', path]],
      ...FRACTIONS.map((f) => [`${prefix(path)}low_rank ${f}`, [`r${f}`, path]]),
    ]),
  );
  const samples = await alternate(
    rounds,
    Object.fromEntries(
      Object.entries(variants).map(([k, [d, path]]) => [k, () => measure(join(dir, d), path)]),
    ),
  );
  const rows = {};
  console.log(
    `${smoke ? 'tiny' : 'stories42M'}-shaped synthetic, ${samples.dense[0].backend}, ${paths.join(' and ')} path, ${B}×${T} tokens per forward, ${rounds} rounds alternated (each model in its own child process)`,
  );
  for (const [k, xs] of Object.entries(samples)) {
    const path = k.startsWith('per-op: ') && paths[0] !== 'per-op' ? 'per-op' : paths[0];
    const dense = field(samples[`${prefix(path)}dense`], 'tokensPerSecond');
    const tps = field(xs, 'tokensPerSecond');
    const f = Number(k.split(' ').pop());
    const row = {
      params: xs[0].params,
      storedBytes: xs[0].storedBytes,
      tokensPerSecond: median(tps),
      samples: tps,
      rssLoaded: median(xs.map((x) => x.rss.loaded - x.rss.base)),
      rssWarm: median(xs.map((x) => x.rss.warm)),
      rssGrowth: median(xs.map((x) => x.rss.growth)),
      rss: xs.map((x) => x.rss),
      ...(cut[f] ? { fraction: f, cutSeconds: cut[f].seconds } : {}),
    };
    sane(`${k} tokens/s`, row.tokensPerSecond);
    sane(`${k} rss`, row.rssWarm);
    if (!k.endsWith('dense'))
      row.speedup = bench.ratio(`${k} tokens/s / dense tokens/s`, tps, dense, f === 0.3 ? { min: 1.4 } : {});
    rows[k] = row;
    const MiB = (b) => (b / 2 ** 20).toFixed(0);
    console.log(
      `${k}: ${row.params} params, ${row.tokensPerSecond.toFixed(0)} tokens/s (rounds ${tps.map((x) => x.toFixed(0)).join(', ')})${row.speedup ? `, ×${row.speedup.toFixed(2)} the dense` : ''}; RSS +${MiB(row.rssLoaded)} MiB after loading, ${MiB(row.rssWarm)} MiB after a warm forward (+${MiB(row.rssGrowth)} MiB over the child's baseline), stored ${MiB(row.storedBytes)} MiB`,
    );
  }
  bench.finish({ batch: B, seqLen: T, shape: benchShape, paths, rows });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
