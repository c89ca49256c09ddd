// Calibration benches (js backend unless --backend, or LINEAGE_BENCH_BACKEND, names another: `onnxruntime`, or any
// backend whose package @lineage/backend-<name> is installed).
//
// 1. Throughput: calibration tokens/s (hessian + importance, and the bare layer walk) beside eval tokens/s on
//    the same backend and the same tokens: the real stories260K, and a synthetic stories42M-shaped checkpoint.
// 2. Memory: peak RSS of a child process calibrating a synthetic stories42M-shaped checkpoint streamed from
//    disk, with 8 and with 16 layers, against 1.5 × (one layer's weights + one layer's activations + the
//    statistics held) + the runtime's baseline (the same child doing everything but calibrating).
//
// Usage: node bench/calibrate-bench.mjs [--backend js|onnxruntime] [--memory-samples N] [--memory-seq-len L]
//                                       [--layers 8,16] [--skip-throughput] [--skip-memory]
//   The acceptance run is --skip-throughput --memory-samples 128 --memory-seq-len 512 (long on the js
//   backend: ~25 CPU-minutes per 8 layers); the default (16 × 512) keeps `pnpm bench` to a few minutes; peaks
//   scale with N·L only through the activations term. The calibrating children run one after another.
//   --smoke (or LINEAGE_BENCH_SMOKE=1): 8 × 64 tokens of stories260K, a tiny synthetic model (2 layers for the
//   memory run), seconds in all; fails unless every figure is finite and positive. The memory run needs
//   /usr/bin/time and is skipped, with the reason, without it.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  getBackend,
  initModel,
  llamaConfig,
  loadModel,
  Ops,
  perplexity,
  Random,
  saveModel,
} from '@lineage/core';
import { benchShape, sane, smoke, startBench } from '../../../scripts/bench-kit.mjs';

// load before/after, the verdict and the JSON record (scripts/bench-kit.mjs)
const bench = startBench('calibrate');

import {
  computeStats,
  GramAccumulator,
  loadDataset,
  sampleFromSequences,
  sampleSequences,
  walkLayers,
} from '../dist/index.js';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const sflag = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const SELF = fileURLToPath(import.meta.url);
const backendName = sflag('--backend', process.env.LINEAGE_BENCH_BACKEND ?? 'js');
// Other backends are separate packages that register themselves when imported.
if (backendName !== 'js') await import(`@lineage/backend-${backendName}`);

/** shared/ beside the repository ($LINEAGE_SHARED, else found walking up from here). */
function sharedPath(...parts) {
  let dir = process.env.LINEAGE_SHARED;
  for (let d = dirname(SELF); !dir; d = dirname(d)) {
    if (existsSync(join(d, 'shared', 'models', 'stories260K'))) dir = join(d, 'shared');
    else if (dirname(d) === d) throw new Error('shared/ not found beside the repository; set LINEAGE_SHARED');
  }
  const p = resolve(dir, ...parts);
  if (!existsSync(p)) throw new Error(`shared file missing: ${p}`);
  return p;
}

// ------------------------------------------------------------------------------------------- child mode
// `--child baseline|calibrate <modelDir> <samples> <seqLen> <out>` (backend from LINEAGE_BENCH_BACKEND): one memory
// measurement per process. Both modes do the same set-up (modules, the backend initialised and one small op run on it so its
// runtime is loaded, the checkpoint opened for streaming, N × L random token ids, V8's gc exposed as the CLI
// does); only `calibrate` then runs. Peak RSS is read by /usr/bin/time -v in the parent; the child also reports
// the largest RSS it saw at each layer's progress points (after every micro-batch) and after the walk.
if (args[0] === '--child') {
  const [, mode, dir, n, L, out] = args;
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  const { openStreamedModel } = await import('../dist/index.js');
  const backend = await getBackend(backendName);
  {
    const ops = new Ops(backend);
    const one = () => ops.upload(new Float32Array(64 * 64).fill(1), [64, 64]);
    await ops.tidy(async () => ops.readF32(await ops.matmul(one(), one())));
  }
  const model = await openStreamedModel(dir, { tokenizerOptional: true });
  const rng = new Random(1);
  const V = model.config.vocabSize;
  const seqs = Array.from({ length: Number(n) }, () =>
    Int32Array.from({ length: Number(L) }, () => 3 + rng.int(V - 3)),
  );
  const report = { mode, backend: `${backend.name} (${backend.device})` };
  if (mode === 'calibrate') {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const rssByLayer = [];
    report.rssBeforeWalk = process.memoryUsage.rss();
    const stats = await computeStats(model, backend, sampleFromSequences(seqs, { protocol: 'stream' }), {
      out,
      collectGarbage: gc,
      onProgress: (p) => {
        const rss = process.memoryUsage.rss();
        rssByLayer[p.layer - 1] = Math.max(rssByLayer[p.layer - 1] ?? 0, rss);
        if (p.layerTokens === p.tokens) {
          process.stderr.write(
            `layer ${p.layer}/${p.layers} done at ${p.seconds.toFixed(0)} s, RSS ${(rssByLayer[p.layer - 1] / 2 ** 20).toFixed(1)} MiB max\n`,
          );
        }
      },
    });
    report.rssAfterWalk = process.memoryUsage.rss();
    await stats.close();
    report.rssByLayer = rssByLayer;
    const c = process.cpuUsage(c0);
    report.seconds = (performance.now() - t0) / 1000;
    report.tokensPerSecond = (seqs.length * seqs[0].length) / report.seconds;
    report.tokensPerCpuSecond = (seqs.length * seqs[0].length) / ((c.user + c.system) / 1e6);
  }
  await model.close();
  report.maxRssBytes = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
}

const backend = await getBackend(backendName);
const results = { backend: `${backend.name} (${backend.device})`, node: process.version };
const MiB = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/**
 * Wall and CPU seconds of `fn`. The machines are shared, so rates are also given per CPU-second of this
 * (single-threaded) process, which other jobs on the machine do not inflate.
 */
async function measure(fn) {
  const w = performance.now();
  const c = process.cpuUsage();
  await fn();
  const d = process.cpuUsage(c);
  return { wall: (performance.now() - w) / 1000, cpu: (d.user + d.system) / 1e6 };
}

function rates(tokens, m) {
  return { perSecond: tokens / m.wall, perCpuSecond: tokens / m.cpu };
}

// ------------------------------------------------------------------------------------------- throughput
// Eval, the bare layer walk, and calibration (hessian + importance) on the same tokens and backend.
if (!args.includes('--skip-throughput')) {
  // stories260K on 64 TinyStories dev documents (documents protocol, batch 8) vs calibrating on the same ones.
  {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const path = sharedPath('data', 'tinystories', 'valid-dev.txt');
    const data = await loadDataset(path, { separator: '<|endoftext|>' });
    const sample = sampleSequences(data, model.tokenizer, {
      samples: smoke ? 8 : 64,
      seqLen: smoke ? 64 : 512,
      seed: 0,
    });
    const evalText = sample.sequences
      .map((s) => model.tokenizer.decode([...s].slice(1)))
      .join('\n<|endoftext|>\n');
    const evalOpts = { protocol: 'documents', separator: '<|endoftext|>', batchSize: 8 };
    await perplexity(model, backend, evalText, { ...evalOpts, limit: 8 }); // warm-up
    let evalTokens = 0;
    const ev = await measure(async () => {
      const r = await perplexity(model, backend, evalText, evalOpts);
      evalTokens = r.tokens + r.sequences; // every position is computed; the last is just not scored
    });
    const walk = await measure(() => walkLayers(model, backend, sample.sequences));
    const cal = await measure(() => computeStats(model, backend, sample));
    results.stories260K = {
      tokens: sample.tokens,
      evalTokens,
      eval: rates(evalTokens, ev),
      walk: rates(sample.tokens, walk),
      calibrate: rates(sample.tokens, cal),
    };
  }
  // stories42M-shaped synthetic model (in memory), N × L random tokens; eval = logits for every position.
  {
    const N = flag('--throughput-samples', smoke ? 2 : 4);
    const L = flag('--throughput-seq-len', smoke ? 16 : 256);
    const cfg = llamaConfig(benchShape);
    const model = initModel(cfg, { seed: 1 });
    const rng = new Random(2);
    const seqs = Array.from({ length: N }, () =>
      Int32Array.from({ length: L }, () => 3 + rng.int(cfg.vocabSize - 3)),
    );
    const ids = new Int32Array(N * L);
    for (const [i, s] of seqs.entries()) ids.set(s, i * L);
    const ops = new Ops(backend);
    const forward = () => ops.tidy(async () => ops.readF32(await model.forward(ops, ids, N)));
    await forward(); // warm-up
    const ev = await measure(forward);
    const walk = await measure(() => walkLayers(model, backend, seqs));
    const cal = await measure(() => computeStats(model, backend, sampleFromSequences(seqs)));
    results.stories42M = {
      tokens: N * L,
      eval: rates(N * L, ev),
      walk: rates(N * L, walk),
      calibrate: rates(N * L, cal),
    };
  }
  for (const k of ['stories260K', 'stories42M']) {
    const r = results[k];
    for (const m of ['eval', 'walk', 'calibrate'])
      for (const u of ['perSecond', 'perCpuSecond']) sane(`${k} ${m} ${u}`, r[m][u]);
    // Time overheads: extra seconds per token relative to eval, and relative to the bare walk (the capture itself).
    r.overheadVsEval = r.eval.perCpuSecond / r.calibrate.perCpuSecond - 1;
    r.captureOverheadVsWalk = r.walk.perCpuSecond / r.calibrate.perCpuSecond - 1;
    const f = (x) => `${x.perCpuSecond.toFixed(1)} (${x.perSecond.toFixed(1)} wall)`;
    const pct = (x) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(0)}%`;
    console.log(
      `${k} (${r.tokens} tokens), tokens per CPU-second: eval ${f(r.eval)}, layer walk ${f(r.walk)}, calibrate ${f(r.calibrate)}; time vs eval ${pct(r.overheadVsEval)}, capture vs bare walk ${pct(r.captureOverheadVsWalk)}`,
    );
  }
}

// ------------------------------------------------------------------------------------------- memory
// Peak RSS (/usr/bin/time -v, "Maximum resident set size") of a process calibrating a synthetic stories42M-shaped
// checkpoint saved as an HF directory and streamed from disk, with 8 and with 16 layers, against
// 1.5 × (one layer's weights + one layer's activations + the statistics held) + the runtime's baseline (the same
// process with everything set up but not calibrating). Random token ids, so no tokenizer is involved.
const noTime = existsSync('/usr/bin/time') ? undefined : '/usr/bin/time not found (apt-get install time)';
if (!args.includes('--skip-memory') && noTime) {
  results.memory = { skipped: noTime };
  console.log(`memory: skipped (${noTime})`);
} else if (!args.includes('--skip-memory')) {
  const N = flag('--memory-samples', smoke ? 2 : 16);
  const L = flag('--memory-seq-len', smoke ? 16 : 512);
  const dir = mkdtempSync(join(tmpdir(), 'lineage-calbench-'));
  // Interrupted (Ctrl-C, kill): stop the children and remove the checkpoints and spools, as `finally` would.
  const children = new Set();
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      for (const c of children) c.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  }
  const timed = (childArgs) =>
    new Promise((resolve, reject) => {
      const p = spawn('nice', ['-n', '10', '/usr/bin/time', '-v', process.execPath, SELF, ...childArgs], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, LINEAGE_BENCH_BACKEND: backendName },
      });
      children.add(p);
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => {
        out += d;
      });
      p.stderr.on('data', (d) => {
        err += d;
        // the child's per-layer progress lines, as they come
        for (const line of String(d).split('\n'))
          if (line.startsWith('layer '))
            console.error(`  [${childArgs[1]} ${childArgs[2].split('/').pop()}] ${line}`);
      });
      p.on('exit', (code) => {
        children.delete(p);
        if (code !== 0)
          return reject(new Error(`child ${childArgs.join(' ')} exited ${code}: ${err.slice(-2000)}`));
        const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(err)?.[1]);
        resolve({ ...JSON.parse(out.trim().split('\n').pop()), timeMaxRssBytes: kb * 1024 });
      });
    });
  try {
    const { layers: _, ...dims } = benchShape;
    const D = dims.dim;
    const F = dims.hidden;
    const layerWeights = 4 * (4 * D * D + 3 * D * F) + 2 * 4 * D; // f32 linears + two norms, as stored
    const activations = N * L * D * 4;
    // Accumulators of one layer: three Grams of width D (q/k/v, o, gate/up), one of width F, importance vectors.
    const statsHeld =
      3 * new GramAccumulator(D).bytes + new GramAccumulator(F).bytes + 8 * 2 * (F + 3 * D + 16);
    const layerCounts = sflag('--layers', process.env.LINEAGE_BENCH_LAYERS ?? (smoke ? '2' : '8,16'))
      .split(',')
      .map(Number);
    for (const layers of layerCounts) {
      const m = initModel(llamaConfig({ ...dims, layers }), { seed: 1 });
      await saveModel(m, join(dir, `m${layers}`), { format: 'hf' });
    }
    const arg = (mode, layers) => [
      '--child',
      mode,
      join(dir, `m${layers}`),
      String(N),
      String(L),
      join(dir, `s${layers}.st`),
    ];
    const base = await timed(arg('baseline', layerCounts[0]));
    const baseline = base.timeMaxRssBytes;
    results.memory = { samples: N, seqLen: L, baseline, layerWeights, activations, statsHeld };
    results.memory.bound = 1.5 * (layerWeights + activations + statsHeld) + baseline;
    // One after another: the machine's cores are shared, and onnxruntime uses several threads.
    results.memory.runs = [];
    for (const layers of layerCounts)
      results.memory.runs.push({ layers, ...(await timed(arg('calibrate', layers))) });
    console.log(
      `memory (${N} × ${L} tokens, ${smoke ? 'tiny' : 'stories42M'} shape streamed from disk): baseline ${MiB(baseline)}; one layer's weights ${MiB(layerWeights)}, activations ${MiB(activations)}, statistics held ${MiB(statsHeld)} → bound ${MiB(results.memory.bound)}`,
    );
    for (const r of results.memory.runs) {
      for (const k of ['timeMaxRssBytes', 'tokensPerSecond', 'tokensPerCpuSecond'])
        sane(`memory ${r.layers} layers ${k}`, r[k]);
      // At smoke sizes the runtime's own allocations dwarf the terms: the bound only means something at full size.
      const ok = smoke
        ? '(bound not judged at smoke sizes)'
        : r.timeMaxRssBytes <= results.memory.bound
          ? 'PASS'
          : 'FAIL';
      console.log(
        `  ${r.layers} layers: peak RSS ${MiB(r.timeMaxRssBytes)} ${ok} (${(r.timeMaxRssBytes / results.memory.bound).toFixed(3)} of the bound; (peak − baseline) = ${((r.timeMaxRssBytes - baseline) / (layerWeights + activations + statsHeld)).toFixed(2)} × the terms), ${r.tokensPerSecond.toFixed(1)} tokens/s wall, ${r.tokensPerCpuSecond.toFixed(1)} per CPU-second`,
      );
      console.log(
        `    RSS at the progress points, max per layer (MiB): ${r.rssByLayer.map((b) => (b / 2 ** 20).toFixed(1)).join(' ')}; after the walk ${MiB(r.rssAfterWalk)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

try {
  results.cpu = execFileSync('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], {
    encoding: 'utf8',
  }).trim();
} catch {}
bench.finish(results);
