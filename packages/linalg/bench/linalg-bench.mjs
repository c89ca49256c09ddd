#!/usr/bin/env node
// SVD engine benchmark: matmul64 throughput, exact SVD of 1024² and 2048², randomized rank-256 SVD of
// 4096² (host float64, and on the onnxruntime backend when @lineage/backend-onnxruntime is built), each
// beside numpy.linalg.svd timed in the same run (a yardstick only; OpenBLAS/LAPACK gesdd).
//
//   pnpm --filter @lineage/linalg build && pnpm --filter @lineage/linalg bench [-- --json] [-- --quick]
//
// --quick: 512²/1024² exact and rank-128 of 2048². --smoke (or LINEAGE_BENCH_SMOKE=1): 128²/256² exact,
// rank-32 of 512², seconds in all; fails unless every time is finite and positive and the error small. Times are wall-clock, single runs
// after one warm-up at a small size (the machines this runs on are shared; see the load average).
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { sane, smoke, startBench } from '../../../scripts/bench-kit.mjs';

// load before/after, the verdict and the JSON record (scripts/bench-kit.mjs)
const bench = startBench('linalg');

import * as linalg from '../dist/index.js';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const exactSizes = smoke ? [128, 256] : quick ? [512, 1024] : [1024, 2048];
const rsvd = smoke ? { n: 512, rank: 32 } : quick ? { n: 2048, rank: 128 } : { n: 4096, rank: 256 };
const log = (...a) => {
  if (!json) console.error(...a);
};

const gaussian = linalg.gaussian64;

function timed(fn) {
  const t = performance.now();
  const r = fn();
  return [(performance.now() - t) / 1000, r];
}

async function timedAsync(fn) {
  const t = performance.now();
  const r = await fn();
  return [(performance.now() - t) / 1000, r];
}

/**
 * numpy in a child process: `svd` = numpy.linalg.svd (thin) of an n×n Gaussian, `gemm` = an n×n·n×n
 * product; threads undefined = numpy's default (OpenBLAS: one per core).
 */
function numpy(kind, n, threads) {
  const env = { ...process.env };
  if (threads !== undefined) {
    for (const k of ['OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS']) env[k] = String(threads);
  }
  const op = kind === 'svd' ? 'np.linalg.svd(a, full_matrices=False)' : 'a @ a';
  const code = `
import time, numpy as np
rng = np.random.default_rng(0)
np.linalg.svd(rng.standard_normal((128, 128)), full_matrices=False)
a = rng.standard_normal((${n}, ${n}))
t = time.perf_counter(); ${op}; print(time.perf_counter() - t)
`;
  const r = spawnSync('python3', ['-c', code], { env, encoding: 'utf8', timeout: 900_000 });
  if (r.status !== 0) {
    log(`numpy unavailable (${(r.stderr || r.error?.message || '').trim().split('\n').pop()})`);
    return undefined;
  }
  return Number(r.stdout.trim());
}

/** numpy's time with default threads and with one thread, measured right after ours. */
function numpyPair(kind, n) {
  const pair = { default: numpy(kind, n, undefined), one: numpy(kind, n, 1) };
  log(
    `  numpy ${kind} ${n}: ${pair.default?.toFixed(2)} s (default threads), ${pair.one?.toFixed(2)} s (1 thread)`,
  );
  return pair;
}

async function onnxruntimeOps() {
  try {
    // Dev dependencies, loaded only here: the engine itself depends on neither.
    const { Ops } = await import('@lineage/core');
    const mod = await import('@lineage/backend-onnxruntime');
    return new Ops(await mod.createOnnxruntimeBackend({ device: 'cpu' }));
  } catch (e) {
    log(`onnxruntime backend not available: ${String(e?.message ?? e).split('\n')[0]}`);
    return undefined;
  }
}

const load0 = loadavg();
log(
  `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, load average ${load0.map((x) => x.toFixed(2)).join(' ')}`,
);
log(`gemm kernel: ${linalg.gemmKernelKind()}`);

// Warm-up (JIT, wasm tier-up).
linalg.svd(gaussian(200, 200, 1));
linalg.matmul64(gaussian(300, 300, 2), gaussian(300, 300, 3));

const results = { machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavgStart: load0 }, rows: [] };

// matmul64 throughput
for (const n of smoke ? [256] : quick ? [1024] : [1024, 2048]) {
  const a = gaussian(n, n, 10);
  const b = gaussian(n, n, 11);
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < (n <= 1024 ? 3 : 1); r++) best = Math.min(best, timed(() => linalg.matmul64(a, b))[0]);
  const gflops = (2 * n ** 3) / best / 1e9;
  log(`matmul64 ${n}: ${best.toFixed(3)} s, ${gflops.toFixed(2)} GFLOP/s`);
  results.rows.push({
    what: `matmul64 ${n}×${n}·${n}×${n}`,
    seconds: best,
    gflops,
    numpy: numpyPair('gemm', n),
  });
}

// Exact SVD, each beside numpy.linalg.svd of the same size.
for (const n of exactSizes) {
  const a = gaussian(n, n, n);
  const [t, r] = timed(() => linalg.svd(a));
  const row = { what: `svd ${n}×${n} (exact, thin)`, seconds: t };
  if (n <= 1024) {
    const us = linalg.matrix64(n, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) us.data[i * n + j] = r.U.data[i * n + j] * r.S[j];
    const rec = linalg.matmul64(us, r.V, { transB: true });
    let num = 0;
    let den = 0;
    for (let i = 0; i < a.data.length; i++) {
      num += (a.data[i] - rec.data[i]) ** 2;
      den += a.data[i] ** 2;
    }
    row.relError = Math.sqrt(num / den);
  }
  log(
    `svd ${n}: ${t.toFixed(2)} s${row.relError !== undefined ? `, ‖A−USVᵀ‖/‖A‖ = ${row.relError.toExponential(1)}` : ''}`,
  );
  row.numpy = numpyPair('svd', n);
  results.rows.push(row);
}

// Randomized SVD, against numpy's full SVD of the largest exact size (measured again right after).
{
  const { n, rank } = rsvd;
  const ref = exactSizes[exactSizes.length - 1];
  const a = gaussian(n, n, 7);
  const [t, r] = await timedAsync(() => linalg.randomizedSvd(a, rank, { seed: 1 }));
  log(`randomizedSvd ${n}² rank ${rank} host: ${t.toFixed(2)} s`);
  const hostRow = { what: `randomizedSvd ${n}×${n} rank ${rank} (host f64, q=2, p=10)`, seconds: t };
  results.rows.push(hostRow);
  const ops = await onnxruntimeOps();
  let onnxRow;
  if (ops) {
    await linalg.randomizedSvd(gaussian(512, 512, 3), 32, { ops }); // warm-up (session creation)
    const [t2, r2] = await timedAsync(() => linalg.randomizedSvd(a, rank, { seed: 1, ops }));
    log(`randomizedSvd ${n}² rank ${rank} onnxruntime: ${t2.toFixed(2)} s`);
    onnxRow = {
      what: `randomizedSvd ${n}×${n} rank ${rank} (onnxruntime-cpu f32 products)`,
      seconds: t2,
      s0RelDiff: Math.abs(r2.S[0] - r.S[0]) / r.S[0],
    };
    results.rows.push(onnxRow);
  }
  const np = numpyPair('svd', ref);
  hostRow.numpy = np;
  hostRow.versus = `numpy full svd ${ref}²`;
  if (onnxRow) {
    onnxRow.numpy = np;
    onnxRow.versus = hostRow.versus;
  }
}
results.machine.loadavgEnd = loadavg();
for (const row of results.rows) {
  sane(`${row.what} seconds`, row.seconds);
  if (row.gflops !== undefined) sane(`${row.what} GFLOP/s`, row.gflops);
  if (row.relError !== undefined && !(row.relError < 1e-10))
    throw new Error(`${row.what}: error ${row.relError}`);
}

const fmt = (x) => (x === undefined ? '—' : x.toFixed(2));
const lines = [
  '| operation | @lineage/linalg (s) | numpy default threads (s) | numpy 1 thread (s) | ratio vs default | ratio vs 1 thread |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
];
for (const row of results.rows) {
  const npD = row.numpy?.default;
  const np1 = row.numpy?.one;
  let label = row.what;
  if (row.gflops !== undefined) label += ` (${row.gflops.toFixed(1)} GFLOP/s)`;
  if (row.relError !== undefined) label += `, ‖A−USVᵀ‖/‖A‖ = ${row.relError.toExponential(1)}`;
  if (row.versus) label += ` vs ${row.versus}`;
  lines.push(
    `| ${label} | ${fmt(row.seconds)} | ${fmt(npD)} | ${fmt(np1)} | ${npD ? (row.seconds / npD).toFixed(2) : '—'} | ${np1 ? (row.seconds / np1).toFixed(2) : '—'} |`,
  );
}
const load1 = results.machine.loadavgEnd;
lines.push('');
lines.push(
  `load average ${load0.map((x) => x.toFixed(2)).join(' ')} at start, ${load1.map((x) => x.toFixed(2)).join(' ')} at end; gemm kernel ${linalg.gemmKernelKind()}`,
);
if (json) console.log(JSON.stringify(results, null, 2));
else console.log(lines.join('\n'));
bench.finish(results, json ? { log: console.error } : {});
