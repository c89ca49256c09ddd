// Where the time of the FUSED onnxruntime-cpu evaluation goes (issue #16), and which kernels make it faster.
// The stories42M-shaped synthetic model, B × T tokens per forward (default 4 × 512), through the same
// OrtFusedEvaluation the backend's `fused.nll` uses (buildLlamaGraph(model, { head: 'nll', kernels })).
//
// 1. Per-node profile: onnxruntime's own profiler (session option enableProfiling) on a graph whose nodes are
//    named after their part of the model (buildLlamaGraph's `nodeNames`); the chrome-trace JSON it writes is
//    summed by op type and by part (blocks: norm / qkv / rope / attention / o_proj / mlp; embed, rope tables,
//    mask, final norm, head, loss; `other` are nodes onnxruntime's optimizer made without a name of ours),
//    per forward, for each variant in LINEAGE_BENCH_PROFILE (default: the first and the last variant).
// 2. Timing: the 2048³ onnxruntime MatMul (through the backend, as eval-bench.mjs measures it), numpy's sgemm
//    where numpy is, and every variant's fused forward, alternated ≥ 3 rounds; medians, GFLOP/s (FLOPs as
//    eval-bench.mjs counts them), ratios to the MatMul and to numpy, and each variant's speedup over the
//    first one, all measured in the same run.
//
// Variants (LINEAGE_BENCH_VARIANTS, comma-separated names; default all): `ops` (standard ops everywhere: the
// graph before issue #16's tuning), `gqa` (GroupQueryAttention, RoPE as ops), `gqa-rotary` (+ RotaryEmbedding),
// `gqa-rope` (RoPE inside GroupQueryAttention), `norm` (ops attention, SimplifiedLayerNormalization),
// `default` (FUSED_NLL_KERNELS, what the backend runs), `pack` (GroupQueryAttention with its RoPE, skip
// norms, q/k/v and gate/up packed into one MatMul each), `default-spin` (the same with onnxruntime's thread
// spinning on; the backend turns it off unless `spinning: true`), `default-noarena` / `default-nopattern` (the
// same without onnxruntime's cpu memory arena / memory pattern).
//
// Run after `pnpm build`: node packages/backend-onnxruntime/bench/fused-profile.mjs
// Env: LINEAGE_BENCH_BATCH × LINEAGE_BENCH_SEQ (default 4 × 512), LINEAGE_BENCH_ROUNDS (default 3),
// LINEAGE_BENCH_SECONDS (minimum timed seconds per figure, default 2), LINEAGE_BENCH_PROFILE (variants to
// profile; `none` skips the profile).
// --smoke (or LINEAGE_BENCH_SMOKE=1): a tiny model, one round; fails unless every figure is finite and positive.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { initModel, llamaConfig, Ops } from '@lineage/core';
import { buildLlamaGraph, FUSED_NLL_KERNELS } from '@lineage/onnx';
import * as ort from 'onnxruntime-node';
import {
  alternate,
  benchRounds,
  benchShape,
  field,
  findPython,
  forwardFlops,
  median,
  numpySgemmGflops,
  sane,
  smoke,
  startBench,
  syntheticTokens,
  timeCalls,
  yardstickOperands,
  yardstickSize,
} from '../../../scripts/bench-kit.mjs';
import { createOnnxruntimeBackend, OrtFusedEvaluation } from '../dist/index.js';

const B = Number(process.env.LINEAGE_BENCH_BATCH ?? (smoke ? 1 : 4));
const T = Number(process.env.LINEAGE_BENCH_SEQ ?? (smoke ? 16 : 512));
const MM = yardstickSize;
const minSeconds = Number(process.env.LINEAGE_BENCH_SECONDS ?? (smoke ? 0.05 : 2));
const rounds = benchRounds();
const bench = startBench('onnxruntime-fused-profile');
const numpy = findPython(['numpy']);

// the backend's cpu session options (createOnnxruntimeBackend), spinning off unless a variant says so
const sessionOptions = (spin = false, extra = {}) => ({
  ...extra,
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'all',
  executionMode: 'sequential',
  interOpNumThreads: 1,
  logSeverityLevel: 3,
  ...(spin ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } }),
});
const ALL = {
  ops: { kernels: { attention: 'ops', rope: 'ops', norm: 'ops' } },
  gqa: { kernels: { attention: 'gqa', rope: 'ops', norm: 'ops' } },
  'gqa-rotary': { kernels: { attention: 'gqa', rope: 'rotary', norm: 'ops' } },
  'gqa-rope': { kernels: { attention: 'gqa', rope: 'gqa', norm: 'ops' } },
  norm: { kernels: { attention: 'ops', rope: 'ops', norm: 'simplified' } },
  default: { kernels: FUSED_NLL_KERNELS },
  pack: { kernels: { attention: 'gqa', rope: 'gqa', norm: 'skip', pack: true } },
  'default-spin': { kernels: FUSED_NLL_KERNELS, spin: true },
  'default-noarena': { kernels: FUSED_NLL_KERNELS, session: { enableCpuMemArena: false } },
  'default-nopattern': { kernels: FUSED_NLL_KERNELS, session: { enableMemPattern: false } },
};
const names = (process.env.LINEAGE_BENCH_VARIANTS ?? Object.keys(ALL).join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
for (const n of names)
  if (!ALL[n]) throw new Error(`unknown variant '${n}' (${Object.keys(ALL).join(', ')})`);
const profiled = (process.env.LINEAGE_BENCH_PROFILE ?? [...new Set([names[0], names.at(-1)])].join(','))
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s && s !== 'none');

const cfg = llamaConfig({ ...benchShape, context: Math.max(benchShape.context, T) });
const model = initModel(cfg, { seed: 1 });
const { ids, targets } = syntheticTokens(B * T, cfg.vocabSize);

// FLOPs as eval-bench.mjs counts them: 2·(linear params, the tied head included) per token + causal attention
const flops = forwardFlops(
  model,
  Array.from({ length: B }, () => T),
);

// ---- 1. per-node profile ----------------------------------------------------------------------------------
const i64 = (v) => new ort.Tensor('int64', BigInt64Array.from(Array.from(v, BigInt)), [B, T]);
const feeds = () => ({
  input_ids: i64(ids),
  attention_mask: i64(new Int32Array(B * T).fill(1)),
  position_ids: i64(Array.from({ length: B * T }, (_, i) => i % T)),
  targets: i64(targets),
});
/** Part of the model a profiled node belongs to: its name's scope with the layer number dropped. */
const partOf = (node) => {
  const scope = node.includes('/') ? node.slice(0, node.indexOf('/')) : '';
  if (!scope) return 'other (optimizer-made)';
  return /^l\d+\./.test(scope) ? `block ${scope.replace(/^l\d+\./, '')}` : scope;
};

async function profile(name) {
  const v = ALL[name];
  const dir = mkdtempSync(join(os.tmpdir(), 'lineage-fused-profile-'));
  const { graph, opset, opsets, irVersion } = buildLlamaGraph(model, {
    head: 'nll',
    kernels: v.kernels,
    nodeNames: true,
  });
  const s = await ort.InferenceSession.create(graph.serialize({ opset, opsets, irVersion }).model, {
    ...sessionOptions(v.spin, v.session),
    enableProfiling: true,
    profileFilePrefix: join(dir, 'fused'),
  });
  const runs = smoke ? 1 : 2;
  await s.run(feeds()); // warm-up, left out below
  for (let i = 0; i < runs; i++) await s.run(feeds());
  await s.endProfiling(); // writes <prefix>_<date>.json (onnxruntime-node returns no path)
  await s.release();
  const file = readdirSync(dir).find((f) => f.endsWith('.json'));
  if (!file) throw new Error(`onnxruntime wrote no profile in ${dir}`);
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  rmSync(dir, { recursive: true, force: true });
  const modelRuns = events.filter((e) => e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const start = modelRuns[0].ts + modelRuns[0].dur; // after the warm-up
  const timedRuns = modelRuns.filter((e) => e.ts >= start);
  const runWall = timedRuns.reduce((a, e) => a + e.dur, 0) / 1e6 / timedRuns.length;
  const byOp = new Map();
  const byPart = new Map();
  let nodes = 0;
  const add = (m, k, s) => {
    const e = m.get(k) ?? { n: 0, s: 0 };
    e.n++;
    e.s += s;
    m.set(k, e);
  };
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < start) continue;
    const s = e.dur / 1e6 / timedRuns.length;
    nodes += s;
    add(byOp, e.args?.op_name ?? '?', s);
    add(byPart, partOf(e.name.slice(0, -'_kernel_time'.length)), s);
  }
  const table = (m) =>
    Object.fromEntries(
      [...m]
        .sort((a, b) => b[1].s - a[1].s)
        .map(([k, e]) => [
          k,
          { seconds: e.s, share: e.s / runWall, nodesPerForward: e.n / timedRuns.length },
        ]),
    );
  return {
    variant: name,
    forwardSeconds: runWall,
    nodeSeconds: nodes,
    byOp: table(byOp),
    byPart: table(byPart),
  };
}

const profiles = [];
for (const name of profiled) profiles.push(await profile(name));
for (const p of profiles) {
  console.log(
    `profile of '${name(p.variant)}' (onnxruntime's profiler, per forward of ${B}×${T} tokens): run ${(1e3 * p.forwardSeconds).toFixed(0)} ms, in nodes ${(1e3 * p.nodeSeconds).toFixed(0)} ms`,
  );
  for (const [title, t] of [
    ['by part', p.byPart],
    ['by op type', p.byOp],
  ]) {
    console.log(`  ${title}:`);
    for (const [k, e] of Object.entries(t))
      if (e.share >= 0.002)
        console.log(
          `    ${k.padEnd(36)} ${(1e3 * e.seconds).toFixed(1).padStart(8)} ms ${(100 * e.share).toFixed(1).padStart(5)}%  ${e.nodesPerForward} nodes`,
        );
  }
  sane(`${p.variant} profiled forward seconds`, p.forwardSeconds);
  sane(`${p.variant} profiled node seconds`, p.nodeSeconds);
}
function name(v) {
  return `${v} ${JSON.stringify(ALL[v].kernels)}${ALL[v].spin ? ' spinning' : ''}${ALL[v].session ? ` ${JSON.stringify(ALL[v].session)}` : ''}`;
}

// ---- 2. alternated timing ---------------------------------------------------------------------------------
const backend = await createOnnxruntimeBackend({ device: 'cpu' });
const ops = new Ops(backend);
const [A, Bm] = yardstickOperands(ops, MM);
const timeIt = (fn) => timeCalls(fn, minSeconds);
const rate = (f, t) => ({ gflops: f / t.wall / 1e9, gflopsPerCpuSecond: f / t.cpu / 1e9 });
const evaluations = Object.fromEntries(
  names.map((n) => [
    n,
    new OrtFusedEvaluation(ort, sessionOptions(ALL[n].spin, ALL[n].session), { kernels: ALL[n].kernels }),
  ]),
);
const meanNll = {};
const measures = {
  matmul: async () => rate(2 * MM ** 3, await timeIt(() => ops.tidy(() => ops.matmul(A, Bm)))),
  ...(numpy.missing ? {} : { numpy: () => numpySgemmGflops(MM, minSeconds, numpy.python).gflops }),
};
for (const n of names)
  measures[n] = async () => {
    const t = await timeIt(async () => {
      const v = await evaluations[n].nll(model, ids, targets, B);
      if (v.unsupported) throw new Error(`variant ${n}: ${v.unsupported}`);
      meanNll[n] = v.reduce((a, x) => a + x, 0) / v.length;
    });
    return rate(flops, t);
  };
const samples = await alternate(rounds, measures);
for (const e of Object.values(evaluations)) await e.close();
ops.dispose(A, Bm);
await backend.close();
model.release();

const wall = (k) => field(samples[k], 'gflops');
const cpu = (k) => field(samples[k], 'gflopsPerCpuSecond');
const mm = median(wall('matmul'));
const np = samples.numpy ? median(samples.numpy) : undefined;
console.log(
  `timing (${B}×${T} tokens per forward, medians of ${rounds} rounds): ${MM}³ MatMul ${sane('matmul', mm).toFixed(1)} GFLOP/s (${median(cpu('matmul')).toFixed(1)} per CPU-second)${np ? `, numpy sgemm ${sane('numpy', np).toFixed(1)} GFLOP/s` : ` (numpy: ${numpy.missing})`}`,
);
const base = names[0];
for (const n of names) {
  const g = sane(`${n} GFLOP/s`, median(wall(n)));
  sane(`${n} mean nll`, meanNll[n]);
  if (Math.abs(meanNll[n] - meanNll[base]) > 1e-4 * meanNll[base])
    throw new Error(`variant ${n} disagrees with ${base}: mean nll ${meanNll[n]} vs ${meanNll[base]}`);
  const r = bench.ratio(`fused ${n} / ${MM}³ onnxruntime MatMul (GFLOP/s)`, wall(n), wall('matmul'), {
    min: 0.65,
  });
  const rc = bench.ratio(
    `fused ${n} / ${MM}³ onnxruntime MatMul (GFLOP per CPU-second)`,
    cpu(n),
    cpu('matmul'),
  );
  const rn = np
    ? bench.ratio(`fused ${n} / ${MM}³ numpy sgemm (GFLOP/s)`, wall(n), samples.numpy, { min: 0.6 })
    : undefined;
  const sp = n === base ? 1 : bench.ratio(`fused ${n} / fused ${base} (speed)`, wall(n), wall(base));
  const spc = n === base ? 1 : bench.ratio(`fused ${n} / fused ${base} (per CPU-second)`, cpu(n), cpu(base));
  console.log(
    `  ${n.padEnd(13)} ${g.toFixed(1)} GFLOP/s, ${((B * T * g * 1e9) / flops).toFixed(0)} tokens/s = ${(100 * r).toFixed(0)}% of the MatMul (per CPU-second ${(100 * rc).toFixed(0)}%)${rn ? `, ${(100 * rn).toFixed(0)}% of numpy` : ''}; ×${sp.toFixed(3)} '${base}' (per CPU-second ×${spc.toFixed(3)}) (rounds ${wall(
      n,
    )
      .map((x) => x.toFixed(1))
      .join(', ')})`,
  );
}
bench.finish({
  batch: B,
  seqLen: T,
  flops,
  variants: Object.fromEntries(names.map((n) => [n, ALL[n]])),
  profiles,
  samples,
  meanNll,
});
