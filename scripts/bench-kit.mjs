// Shared by every bench (packages/*/bench/*.mjs): the smoke mode and its sanity checks, and the measuring
// method every bench that quotes a speed or a ratio follows (BENCHMARKS.md, "Benchmark method").
//
// Smoke mode (`--smoke` or LINEAGE_BENCH_SMOKE=1): each bench runs the same code paths at tiny sizes in
// seconds and fails (non-zero exit) unless its figures are finite and positive. scripts/bench-smoke.mjs
// runs every bench this way (`pnpm bench:smoke`, and CI), so a bench that no longer starts or produces
// nonsense is caught the day it breaks, not the next time someone measures.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire as createRequireFrom } from 'node:module';
import os from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// Benches run as the `lineage` command does: on Linux with glibc's malloc set to reuse large blocks
// (packages/cli/src/malloc-tuning.ts; child processes such as the PyTorch yardstick inherit it too).
// LINEAGE_MALLOC=system measures with the allocator as it is.
const { relaunchWithTunedMalloc } = await import('../packages/cli/dist/malloc-tuning.js');
if (await relaunchWithTunedMalloc()) process.exit();
/** How glibc's malloc was set for this run: `tuned` (as the CLI runs), `system`, or `default`. */
export const mallocMode = process.env.LINEAGE_MALLOC ?? 'default';

export const smoke = process.argv.includes('--smoke') || process.env.LINEAGE_BENCH_SMOKE === '1';

/** The stories42M shape the full benches measure, and the tiny shape smoke runs use instead. */
export const benchShape = smoke
  ? { dim: 64, layers: 2, heads: 4, hidden: 172, vocab: 512, context: 256 }
  : { dim: 512, layers: 8, heads: 8, hidden: 1376, vocab: 32000, context: 1024 };

/** Returns x when it is a finite positive number; throws (failing the bench) otherwise. */
export function sane(label, x) {
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0)
    throw new Error(`bench figure ${label} = ${x}: expected a finite positive number`);
  return x;
}

/** Returns x when it is a finite number ≥ 0 (differences that may be exactly zero). */
export function saneNonNegative(label, x) {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0)
    throw new Error(`bench figure ${label} = ${x}: expected a finite number ≥ 0`);
  return x;
}

/**
 * Why a Python yardstick cannot run here (python3 or one of `modules` missing), or undefined when it can.
 * Rows that compare against numpy/torch are skipped with this reason instead of failing the bench.
 */
export function pythonMissing(modules = ['numpy']) {
  try {
    execFileSync('python3', ['-c', modules.map((m) => `import ${m}`).join('; ')], { stdio: 'ignore' });
    return undefined;
  } catch {
    return `python3 with ${modules.join(', ')} not available`;
  }
}

// ---- the measuring method -------------------------------------------------------------------------------
//
// A speed measured while other jobs share the cores says little, and a ratio against a yardstick measured at
// another time says less (a loaded machine slows one big MatMul far more than the many small ops of a
// forward, so such ratios flatter us). So every bench that quotes a speed:
// - records /proc/loadavg and the CPU count before and after, and the CPU time other processes took during
//   the run (/proc/stat busy time minus this process's own and its children's);
// - measures workload and yardstick alternately, ≥ 3 rounds at full size, and quotes the median of each
//   (with min and max), and ratios of medians measured in the same run;
// - decides a verdict per target: 'met' / 'not met' on an idle machine, 'LOADED: ratio not quotable' when
//   it was busy (see `loadedReason`);
// - writes machine-readable results (command, machine, versions, load, raw samples, medians, verdicts) to
//   `--json <file>`, else bench-results/<bench>-<time>.json at the repository root (git-ignored).

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The machine counts as loaded when the 1-minute load average exceeds this fraction of the cores, before the
 * run, or after it once the bench's own average CPU use (cores) is taken off, or when other processes took
 * more than this fraction of the cores during the run. 0.5 × 2 cores = 1 runnable job: a second job on a
 * 2-core VM steals a core from multi-threaded kernels and already moves the MatMul yardstick by 2×.
 * Override with LINEAGE_BENCH_LOAD_FRACTION.
 */
export const LOAD_FRACTION = Number(process.env.LINEAGE_BENCH_LOAD_FRACTION ?? 0.5);

/** Alternation rounds: at least 3 at full size (LINEAGE_BENCH_ROUNDS overrides), 1 in smoke mode. */
export function benchRounds(fallback = 3) {
  const r = Number(process.env.LINEAGE_BENCH_ROUNDS ?? (smoke ? 1 : fallback));
  return Math.max(1, smoke ? r : Math.max(r, 3));
}

function readProc(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Busy and total jiffies of all CPUs (/proc/stat), undefined off Linux. */
function cpuJiffies() {
  const line = readProc('/proc/stat')?.split('\n')[0];
  if (!line) return undefined;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3] + (v[4] ?? 0); // idle + iowait
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // without guest (already counted in user)
  return { busy: total - idle, total };
}

/** This process's CPU seconds, its waited-for children included (/proc/self/stat), else process.cpuUsage. */
function ownCpuSeconds() {
  const s = readProc('/proc/self/stat');
  if (s) {
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields 14–17 of stat (utime, stime, cutime, cstime) are 11–14 after the name
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  }
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
}

/** The load average (1, 5, 15 min), the run queue and the core count now. */
export function loadSnapshot() {
  const raw = readProc('/proc/loadavg')?.trim();
  const f = raw?.split(/\s+/) ?? [];
  return {
    at: new Date().toISOString(),
    loadavg: raw ? f.slice(0, 3).map(Number) : os.loadavg(),
    running: f[3] ?? null,
    cores: os.availableParallelism(),
    proc: raw ?? null,
  };
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median, min, max and (max − min) / median of samples. */
export function summarize(xs) {
  const med = median(xs);
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  return { median: med, min, max, spread: med ? (max - min) / med : 0, n: xs.length };
}

/**
 * Runs the measurements in turn, `rounds` times (a, b, c, a, b, c, …), so that each sees the same machine;
 * each function returns a number (or an object whose numeric fields are kept). Returns the samples per name.
 */
export async function alternate(rounds, measures) {
  const samples = Object.fromEntries(Object.keys(measures).map((k) => [k, []]));
  for (let r = 0; r < rounds; r++)
    for (const [k, fn] of Object.entries(measures)) {
      const t0 = performance.now();
      const v = await fn(r);
      if (v !== undefined) samples[k].push(v);
      // progress on stderr (stdout stays the bench's table), full-size runs only
      if (!smoke)
        process.stderr.write(
          `round ${r + 1}/${rounds}: ${k} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`,
        );
    }
  return samples;
}

/** The numeric field `key` of each sample (samples may be plain numbers). */
export const field = (samples, key) => samples.map((s) => (typeof s === 'number' ? s : s[key]));

function versions() {
  const v = { node: process.version };
  for (const [name, from] of [
    ['onnxruntime-node', 'packages/backend-onnxruntime/package.json'],
    ['@tensorflow/tfjs', 'packages/backend-tfjs/package.json'],
  ]) {
    try {
      const req = createRequireFrom(join(repoRoot, from));
      v[name] = JSON.parse(readFileSync(req.resolve(`${name}/package.json`), 'utf8')).version;
    } catch {}
  }
  return v;
}

function jsonPath(name) {
  const i = process.argv.indexOf('--json');
  if (i > 0 && process.argv[i + 1] && !process.argv[i + 1].startsWith('--'))
    return resolve(process.argv[i + 1]);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return join(repoRoot, 'bench-results', `${name}${smoke ? '-smoke' : ''}-${stamp}.json`);
}

/**
 * Starts a bench's record: the load and CPU counters now. Then `ratio()` / `target()` add the figures and
 * verdicts, `finish(results)` records the load after, decides whether the machine was loaded, prints the
 * summary and writes the JSON.
 */
export function startBench(name = basename(process.argv[1] ?? 'bench', '.mjs')) {
  const before = loadSnapshot();
  const cpu0 = cpuJiffies();
  const own0 = ownCpuSeconds();
  const t0 = performance.now();
  const ratios = [];
  const targets = [];
  const bench = {
    name,
    before,
    /**
     * A ratio of two medians measured in this run (workload / yardstick for speeds), with the spread of the
     * per-round ratios; `min` makes it a target (≥ min), decided at finish.
     */
    ratio(label, workload, yardstick, { min, note } = {}) {
      const w = median(workload);
      const y = median(yardstick);
      const perRound = workload.slice(0, yardstick.length).map((x, i) => x / yardstick[i]);
      const r = { label, value: w / y, workload: w, yardstick: y, perRound, ...(note ? { note } : {}) };
      if (min !== undefined) r.target = min;
      ratios.push(r);
      return r.value;
    },
    /** A target on an absolute figure (≥ min), decided at finish. */
    target(label, value, min) {
      targets.push({ label, value, target: min });
    },
    /** Why a verdict is refused (the machine was loaded), or undefined; only meaningful after finish. */
    loaded: undefined,
    finish(results = {}, { log = console.log } = {}) {
      const after = loadSnapshot();
      const cpu1 = cpuJiffies();
      const wall = (performance.now() - t0) / 1000;
      const ownCores = (ownCpuSeconds() - own0) / wall;
      let othersCores = null;
      if (cpu0 && cpu1 && cpu1.total > cpu0.total) {
        const busyShare = (cpu1.busy - cpu0.busy) / (cpu1.total - cpu0.total); // of all cores
        othersCores = Math.max(0, busyShare * before.cores - ownCores);
      }
      const limit = LOAD_FRACTION * before.cores;
      const why = [];
      if (before.loadavg[0] > limit) why.push(`load ${before.loadavg[0]} before > ${limit}`);
      // the bench's own threads count in the load average after it: take its average CPU use off
      if (after.loadavg[0] - Math.min(ownCores, before.cores) > limit)
        why.push(`load ${after.loadavg[0]} after (own use ${ownCores.toFixed(2)} cores) > ${limit}`);
      if (othersCores !== null && othersCores > limit)
        why.push(`other processes used ${othersCores.toFixed(2)} cores during the run > ${limit}`);
      if (smoke) why.unshift('smoke mode (tiny sizes, numbers mean nothing)');
      const loaded = why.length ? why.join('; ') : undefined;
      bench.loaded = loaded;
      const verdict = (value, min) =>
        loaded ? 'LOADED: ratio not quotable' : value >= min ? 'met' : 'not met';
      for (const r of ratios)
        r.verdict =
          r.target !== undefined ? verdict(r.value, r.target) : loaded ? 'LOADED: not quotable' : 'quotable';
      for (const t of targets) t.verdict = verdict(t.value, t.target);
      const record = {
        bench: name,
        command: [process.execPath, ...process.argv.slice(1)].join(' '),
        cwd: process.cwd(),
        smoke,
        machine: {
          hostname: os.hostname(),
          cpu: os.cpus()[0]?.model ?? 'unknown',
          cores: before.cores,
          memoryGiB: os.totalmem() / 2 ** 30,
          platform: `${os.platform()} ${os.release()}`,
        },
        versions: versions(),
        env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('LINEAGE_BENCH'))),
        malloc: mallocMode,
        load: {
          before,
          after,
          wallSeconds: wall,
          ownCores,
          othersCores,
          threshold: { fraction: LOAD_FRACTION, loadavg: limit },
          loaded: loaded ?? false,
        },
        ratios,
        targets,
        results,
      };
      const file = jsonPath(name);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
      const fmt = (s) => s.loadavg.map((x) => x.toFixed(2)).join(' ');
      log(
        `load average ${fmt(before)} before, ${fmt(after)} after on ${before.cores} cores; this bench used ${ownCores.toFixed(2)} cores, others ${othersCores === null ? '?' : othersCores.toFixed(2)}; ${wall.toFixed(0)} s; malloc ${mallocMode}`,
      );
      for (const r of ratios)
        log(
          `  ${r.label}: ${r.value.toFixed(3)} (rounds ${r.perRound.map((x) => x.toFixed(3)).join(', ')})${r.target !== undefined ? ` target ≥ ${r.target}` : ''}: ${r.verdict}`,
        );
      for (const t of targets)
        log(`  ${t.label}: ${t.value.toPrecision(4)} target ≥ ${t.target}: ${t.verdict}`);
      log(loaded ? `LOADED (${loaded}): ratio not quotable` : 'machine idle: figures quotable');
      log(`results: ${file}`);
      return record;
    },
  };
  return bench;
}

/**
 * A python3 that imports `modules`: the one on PATH, else Debian's /usr/bin/python3 (where apt's
 * python3-torch installs). Returns { python } or { missing: reason }.
 */
export function findPython(modules = ['numpy']) {
  for (const python of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(python, ['-c', modules.map((m) => `import ${m}`).join('; ')], { stdio: 'ignore' });
      return { python };
    } catch {}
  }
  return { missing: `no python3 with ${modules.join(', ')} (PATH python3 or /usr/bin/python3)` };
}

/**
 * numpy's float32 GEMM (n³) in GFLOP/s: one python3 process, a warm-up, then repeats for ≥ `seconds`,
 * the median call. numpy's BLAS uses its own thread pool (all cores by default). Throws when numpy is
 * missing (check findPython first).
 */
export function numpySgemmGflops(n, seconds, python = 'python3') {
  const code = `
import numpy as np, time, json
n=${n}
a=np.random.rand(n,n).astype(np.float32); b=np.random.rand(n,n).astype(np.float32)
a@b
ts=[]; t0=time.perf_counter()
while True:
    s=time.perf_counter(); a@b; ts.append(time.perf_counter()-s)
    if time.perf_counter()-t0 >= ${seconds}: break
ts.sort()
print(json.dumps({"seconds": ts[len(ts)//2], "calls": len(ts), "numpy": np.__version__}))
`;
  const r = JSON.parse(execFileSync(python, ['-c', code], { encoding: 'utf8' }).trim().split('\n').pop());
  return { gflops: (2 * n ** 3) / r.seconds / 1e9, ...r };
}

/** The resident set size of this process now (bytes), from /proc/self/status (VmRSS), else process.memoryUsage. */
export function residentBytes() {
  const m = readProc('/proc/self/status')?.match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

// ---- the workload plumbing the eval, profile and speed benches share ------------------------------------

/** Side of the n³ MatMul yardstick: 2048 at full size, 256 in smoke mode. */
export const yardstickSize = smoke ? 256 : 2048;

/** `n` floats in [−0.5, 0.5) from a seeded LCG: the MatMul yardstick's operands (seeds 1 and 2). */
export function lcgFloats(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 4294967296 - 0.5;
  }
  return a;
}

/** The yardstick's two n×n operands uploaded through `ops` (an `Ops` of @lineage/core). */
export function yardstickOperands(ops, n = yardstickSize) {
  return [ops.upload(lcgFloats(n * n, 1), [n, n]), ops.upload(lcgFloats(n * n, 2), [n, n])];
}

/**
 * Calls `fn` once (warm-up, not timed), then for at least `seconds`: the median wall seconds of a call, and
 * this process's CPU seconds per call over the timed calls (all threads: on a loaded machine work per
 * CPU-second moves far less than wall time).
 */
export async function timeCalls(fn, seconds) {
  await fn();
  const walls = [];
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  do {
    const w0 = performance.now();
    await fn();
    walls.push((performance.now() - w0) / 1000);
  } while ((performance.now() - t0) / 1000 < seconds);
  const c = process.cpuUsage(c0);
  return { wall: median(walls), cpu: (c.user + c.system) / 1e6 / walls.length };
}

/**
 * `n` token ids of a fixed pattern and their targets (the same pattern one position on), all below `vocab`:
 * speed does not depend on the values, and every bench scores the same tokens.
 */
export function syntheticTokens(n, vocab) {
  return {
    ids: Int32Array.from({ length: n }, (_, i) => (i * 7919 + 13) % vocab),
    targets: Int32Array.from({ length: n }, (_, i) => ((i + 1) * 7919 + 13) % vocab),
  };
}

/** Multiply-adds of a model's linear layers, the tied head included (its embedding used as the head). */
export function linearParams(model) {
  let n = 0;
  for (const [, l] of model.linearLayers()) n += l.inFeatures * l.outFeatures;
  if (!model.lmHead) n += model.config.vocabSize * model.config.hiddenSize;
  return n;
}

/**
 * Forward FLOPs of scoring sequences of the given lengths: 2·(linear params) per token plus causal attention
 * (4·layers·heads·head size per attended position), as packages/core/bench/eval-bench.mjs counts them.
 */
export function forwardFlops(model, lengths) {
  const c = model.config;
  const lin = linearParams(model);
  let f = 0;
  for (const n of lengths) f += 2 * lin * n + 4 * c.numLayers * c.numHeads * c.headDim * ((n * (n + 1)) / 2);
  return f;
}

/**
 * One batch scored op by op as perplexity() does it: hidden states → head → per-token cross-entropy, read back.
 * `targets` is a tensor, or host ids uploaded inside the scope; `lap(phase)` (optional) hears each phase end.
 */
export function perOpNll(ops, model, ids, targets, batch, lap = () => {}) {
  return ops.tidy(async () => {
    const h = await model.hidden(ops, ids, batch);
    lap('blocks');
    const logits = await model.logits(ops, await ops.reshape(h, [ids.length, model.config.hiddenSize]));
    lap('head (logits)');
    const t = targets instanceof Int32Array ? ops.upload(targets, [ids.length]) : targets;
    const ce = await ops.crossEntropy(logits, t);
    lap('cross-entropy');
    const v = await ops.readF32(ce);
    lap('read');
    return v;
  });
}

/** One batch through the backend's fused evaluation (`backend.fused.nll`); throws when it refuses the model. */
export async function fusedNll(backend, model, ids, targets, batch) {
  const v = await backend.fused.nll(model, ids, targets, batch);
  if (v.unsupported) throw new Error(`fused evaluation unsupported: ${v.unsupported}`);
  return v;
}

/**
 * The scoring paths LINEAGE_BENCH_PATH asks for: `fused` (the default where the backend offers fused
 * evaluation, as `lineage eval` runs), `per-op`, or `both` (fused first).
 */
export function scoringPaths(backend) {
  const path = process.env.LINEAGE_BENCH_PATH ?? (backend.fused ? 'fused' : 'per-op');
  if (!['fused', 'per-op', 'both'].includes(path))
    throw new Error(`LINEAGE_BENCH_PATH must be fused, per-op or both, got '${path}'`);
  if (path !== 'per-op' && !backend.fused) throw new Error(`${backend.name} has no fused evaluation`);
  return path === 'both' ? ['fused', 'per-op'] : [path];
}

/**
 * A function scoring `ids` (`batch` rows; targets: the next id, wrapping) on one path: the backend's fused
 * evaluation, or op by op (targets uploaded once through `ops`).
 */
export function batchScorer(backend, ops, model, ids, batch, path) {
  const host = Int32Array.from(ids, (_, i) => ids[(i + 1) % ids.length]);
  if (path === 'fused') return () => fusedNll(backend, model, ids, host, batch);
  const targets = ops.upload(host.slice(), [ids.length]);
  return () => perOpNll(ops, model, ids, targets, batch);
}

/** The Backend op methods the profiles time. */
export const BACKEND_OPS = [
  'matmul',
  'binary',
  'unary',
  'scale',
  'reduce',
  'softmax',
  'logSoftmax',
  'rmsNorm',
  'rope',
  'gather',
  'crossEntropy',
  'reshape',
  'transpose',
  'slice',
  'concat',
  'attention',
  'read',
  'readOnce',
  'upload',
];

/**
 * Times every outermost call of the backend's ops (BACKEND_OPS; an op another op calls is not counted
 * twice): `record(name, args, result, seconds)` after each, awaited when the op returns a promise.
 */
export function timeBackendOps(backend, record) {
  let depth = 0;
  for (const name of BACKEND_OPS) {
    if (typeof backend[name] !== 'function') continue; // an optional op the backend lacks
    const op = backend[name].bind(backend);
    backend[name] = (...args) => {
      if (depth > 0) return op(...args);
      depth++;
      const t0 = performance.now();
      const done = (y) => {
        depth--;
        record(name, args, y, (performance.now() - t0) / 1000);
        return y;
      };
      const r = op(...args);
      return r instanceof Promise
        ? r.then(done, (e) => {
            depth--;
            throw e;
          })
        : done(r);
    };
  }
}
