// Is a Minitron-pruned model really faster? A synthetic checkpoint of the stories42M shape (dim 512, 8 layers,
// 8 heads, FFN 1376, vocab 32000, tied), saved as a HF directory and loaded back like a user's model, is pruned
// to --params 0.5 of its parameters (magnitude importance: no data needed; the largest shape within the
// budget with widths a multiple of 64, no search, no distillation). Both models then score the same ids
// (batch × seqLen: hidden states, logits, per-token cross-entropy, as perplexity() does) on the default backend
// (onnxruntime when installed, else js; LINEAGE_BENCH_BACKEND overrides), alternately, ≥ 3 rounds
// (LINEAGE_BENCH_ROUNDS, default 5); each model's median round counts and the speedups are ratios of medians
// measured in one run; the load before/after decides whether they are quotable (scripts/bench-kit.mjs, JSON
// to --json <file> or bench-results/).
//
// Run after `pnpm build`: pnpm --filter @lineage/prune bench
// LINEAGE_BENCH_PATH: how each forward is scored: `fused` (the default where the backend offers fused
// evaluation, as `lineage eval` runs: one cached onnxruntime graph per model, loss inside it), `per-op`
// (hidden states → logits → cross-entropy op by op, the reference path) or `both` (each model on both paths,
// all alternated in one run).
// --smoke (or LINEAGE_BENCH_SMOKE=1): a tiny synthetic model, one short round; fails unless every figure is
// finite and positive.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  batchScorer,
  benchRounds,
  benchShape,
  median,
  sane,
  scoringPaths,
  smoke,
  startBench,
} from '../../../scripts/bench-kit.mjs';
import { formatShape, minitron } from '../dist/index.js';

const name = process.env.LINEAGE_BENCH_BACKEND;
if (name !== 'js') {
  try {
    await import('@lineage/backend-onnxruntime');
  } catch {}
}
const backend = await getBackend(name);
const bench = startBench('prune-speed');
const ROUNDS = benchRounds(5);
const SECONDS = smoke ? 0.05 : 3; // minimum timed seconds per model per round
const B = smoke ? 1 : 4;
const T = smoke ? 16 : 256;
const BALANCED = smoke
  ? 'layers=2,hidden=48,heads=2,kv-heads=2,ffn=86'
  : 'layers=8,hidden=384,heads=4,kv-heads=4,ffn=576';

const PATHS = scoringPaths(backend);

async function tokensPerSecond(model, ids, path) {
  // what perplexity() does per batch (fused, or hidden states, logits, per-token cross-entropy read back)
  const run = batchScorer(backend, new Ops(backend), model, ids, B, path);
  await run(); // warm-up (uploads, session creation)
  let n = 0;
  const t0 = performance.now();
  do {
    await run();
    n++;
  } while ((performance.now() - t0) / 1000 < SECONDS);
  return (n * B * T) / ((performance.now() - t0) / 1000);
}

const dir = mkdtempSync(join(tmpdir(), 'lineage-prune-bench-'));
try {
  const cfg = llamaConfig(benchShape);
  await saveModel(initModel(cfg, { seed: 1 }), join(dir, 'parent'), { format: 'hf' });
  const { model: parent } = await loadModel(join(dir, 'parent'), { tokenizerOptional: true });
  const t0 = performance.now();
  const pruned = await applyMethod(
    minitron({ params: 0.5, importance: 'magnitude', search: 1, multipleOf: smoke ? 1 : 64 }),
    parent,
    methodContext(backend),
  );
  const pruneSeconds = (performance.now() - t0) / 1000;
  // saved and loaded back: what a user would run
  await saveModel(pruned, join(dir, 'pruned'), { format: 'hf' });
  const { model: reloaded } = await loadModel(join(dir, 'pruned'), { tokenizerOptional: true });
  const config = JSON.parse(readFileSync(join(dir, 'pruned', 'config.json'), 'utf8'));
  // The same budget as an explicit, balanced --shape (hidden, heads and FFN all cut; 49.8% of the params):
  // the largest shape above halves the hidden width alone, which onnxruntime's per-op path turns into less
  // speed than its halved FLOPs promise (BENCHMARKS.md).
  const balanced = await applyMethod(
    minitron({ shape: BALANCED, importance: 'magnitude', multipleOf: smoke ? 1 : 64 }),
    parent,
    methodContext(backend),
  );
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % cfg.vocabSize);
  const models = { parent, pruned: reloaded, balanced };
  const byPath = Object.fromEntries(PATHS.map((p) => [p, { parent: [], pruned: [], balanced: [] }]));
  for (let r = 0; r < ROUNDS; r++)
    for (const p of PATHS)
      for (const [k, m] of Object.entries(models)) byPath[p][k].push(await tokensPerSecond(m, ids, p));
  const rates = byPath[PATHS[0]];
  const best = median; // the median round of each (scripts/bench-kit.mjs)
  const other = PATHS[1];
  const result = {
    path: PATHS[0],
    backend: `${backend.name} (${backend.device})`,
    shape: { parent: formatShape(parent.config), pruned: formatShape(reloaded.config) },
    params: { parent: parent.stats().params, pruned: reloaded.stats().params },
    plainLlamaConfig:
      config.architectures?.[0] === 'LlamaForCausalLM' && config.lineage?.layers === undefined,
    batch: B,
    seqLen: T,
    balanced: { shape: formatShape(balanced.config), params: balanced.stats().params },
    tokensPerSecond: {
      parent: best(rates.parent),
      pruned: best(rates.pruned),
      balanced: best(rates.balanced),
    },
    speedup: bench.ratio(`${PATHS[0]}: pruned tokens/s / parent tokens/s`, rates.pruned, rates.parent, {
      min: 1.6,
    }),
    balancedSpeedup: bench.ratio(
      `${PATHS[0]}: balanced tokens/s / parent tokens/s`,
      rates.balanced,
      rates.parent,
    ),
    rounds: byPath,
    ...(other
      ? {
          [other]: {
            tokensPerSecond: Object.fromEntries(Object.entries(byPath[other]).map(([k, v]) => [k, best(v)])),
            speedup: bench.ratio(
              `${other}: pruned tokens/s / parent tokens/s`,
              byPath[other].pruned,
              byPath[other].parent,
            ),
            balancedSpeedup: bench.ratio(
              `${other}: balanced tokens/s / parent tokens/s`,
              byPath[other].balanced,
              byPath[other].parent,
            ),
          },
          fusedOverPerOp: bench.ratio(
            'fused parent tokens/s / per-op parent tokens/s',
            byPath.fused.parent,
            byPath['per-op'].parent,
          ),
        }
      : {}),
    pruneSeconds,
  };
  sane('parent tokens/s', result.tokensPerSecond.parent);
  sane('pruned tokens/s', result.tokensPerSecond.pruned);
  sane('speedup', result.speedup);
  sane('balanced speedup', result.balancedSpeedup);
  if (!result.plainLlamaConfig) throw new Error('the pruned model is not a plain Llama directory');
  console.log(
    `${smoke ? 'tiny' : 'stories42M'}-shaped synthetic, ${result.backend}, ${PATHS.join(' and ')} path, ${B}×${T} tokens per forward, ${ROUNDS} rounds`,
  );
  console.log(
    `parent ${result.shape.parent} (${result.params.parent} params): ${result.tokensPerSecond.parent.toFixed(1)} tokens/s`,
  );
  console.log(
    `pruned ${result.shape.pruned} (${result.params.pruned} params, ${((100 * result.params.pruned) / result.params.parent).toFixed(1)}%): ${result.tokensPerSecond.pruned.toFixed(1)} tokens/s`,
  );
  console.log(`speedup ×${result.speedup.toFixed(2)} (pruned in ${pruneSeconds.toFixed(1)} s)`);
  console.log(
    `balanced --shape ${result.balanced.shape} (${result.balanced.params} params, ${((100 * result.balanced.params) / result.params.parent).toFixed(1)}%): ${result.tokensPerSecond.balanced.toFixed(1)} tokens/s, speedup ×${result.balancedSpeedup.toFixed(2)}`,
  );
  if (other)
    console.log(
      `${other} path: speedup ×${result[other].speedup.toFixed(2)}, balanced ×${result[other].balancedSpeedup.toFixed(2)}; fused parent = ${result.fusedOverPerOp.toFixed(2)}× per-op parent`,
    );
  bench.finish(result);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
