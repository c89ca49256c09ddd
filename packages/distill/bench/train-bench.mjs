// Training throughput of a distillation step on the stories42M-shaped synthetic model (dim 512, 8 layers,
// 8 heads, hidden 1376, vocab 32000): teacher forward + student forward/backward (KL at T = 1) + gradient
// clipping + AdamW, per available backend, beside the GFLOP/s of one 2048×2048×2048 onnxruntime MatMul
// measured in the same run (a session of its own, straight on onnxruntime-node).
//
// FLOPs per training token: the student 6·P + 12·layers·(heads·headDim)·(T+1)/2 (forward + backward, P =
// matmul parameters with the tied head), plus the teacher's forward 2·P + 4·layers·(heads·headDim)·(T+1)/2.
// Both are reported: "student" (the 6·P + attention convention) and "distillation step" (with the teacher).
//
// The step is KL only (the hidden-state loss that distill() turns on by default for same-width pairs is
// off), so that it is the step of the PyTorch yardstick: torch-distill-step.py, an eager PyTorch Llama of the
// same shape doing the same step (KL at T = 1, clip 1, AdamW), run by python3 in the same run and alternated
// with the MatMul and each backend (skipped with the reason when no python3 imports torch; Debian:
// `apt-get install python3-torch libopenblas0-pthread`). tokens/s = batch × seqLen / median step seconds.
// Verdicts (issue #16: onnxruntime's student GFLOP/s ≥ 0.35 × the MatMul, tokens/s ≥ 1.5 × PyTorch's) are
// refused when the machine was loaded (scripts/bench-kit.mjs); results go to --json <file> or bench-results/.
//
// Run after `pnpm build`: pnpm --filter @lineage/distill bench
// Env: LINEAGE_BENCH_BACKENDS (default "onnxruntime"; "js,onnxruntime" adds the reference backend, whose
// 1 × 128 steps take about a minute each; a backend that is not built is reported as skipped),
// LINEAGE_BENCH_PER_OP_HEAD=1 adds the onnxruntime step without any fused piece (the per-op path) and the
// same-run ratio of the two, LINEAGE_BENCH_PER_OP_BLOCKS=1 the step with the fused KD head but per-op decoder
// blocks (before the fused blocks) and its ratio, LINEAGE_BENCH_ROUNDS (alternations, default and minimum 3), LINEAGE_BENCH_STEPS (timed steps per round
// after one warm-up step, default 3; js: 2), LINEAGE_BENCH_BATCH × LINEAGE_BENCH_SEQ tokens per step
// (default 4 × 256; js: 1 × 128), LINEAGE_BENCH_TORCH=0 skips the PyTorch row.
// --smoke (or LINEAGE_BENCH_SMOKE=1): a tiny model (llama2 vocabulary), 2 steps of 1 × 16 tokens, a 256³
// MatMul, the PyTorch step at the same tiny shape; fails unless every figure is finite and positive
// (scripts/bench-smoke.mjs runs it in CI).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  getBackend,
  initModel,
  JsBackend,
  llamaConfig,
  loadTokenizer,
  readTextFile,
  sharedPath,
} from '@lineage/core';
import {
  alternate,
  benchRounds,
  benchShape,
  findPython,
  median,
  sane,
  smoke,
  startBench,
} from '../../../scripts/bench-kit.mjs';
import { distill, perturbLinearWeights, trainingFlops } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..', '..');
const env = (k, d) => process.env[k] ?? d;

/** onnxruntime-node: this package's devDependency if installed, else the copy the onnxruntime backend installed. */
function loadOrt() {
  const from = [
    join(here, '..', 'package.json'),
    join(repo, 'packages', 'backend-onnxruntime', 'package.json'),
  ];
  for (const f of from) {
    try {
      return createRequire(f)('onnxruntime-node');
    } catch {}
  }
  return undefined;
}

// ---- a minimal ONNX model with one MatMul node, encoded by hand (protobuf wire format)
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}
const field = (no, wire) => varint((no << 3) | wire);
const int = (no, v) => [...field(no, 0), ...varint(v)];
const bytes = (no, b) => [...field(no, 2), ...varint(b.length), ...b];
const str = (no, s) => bytes(no, [...Buffer.from(s, 'utf8')]);
function valueInfo(name, dims) {
  const shape = dims.flatMap((d) => bytes(1, int(1, d)));
  const tensor = [...int(1, 1), ...bytes(2, shape)]; // elem_type FLOAT, shape
  return [...str(1, name), ...bytes(2, bytes(1, tensor))];
}
function matmulModel(n) {
  const node = [...str(1, 'A'), ...str(1, 'B'), ...str(2, 'Y'), ...str(3, 'mm'), ...str(4, 'MatMul')];
  const graph = [
    ...bytes(1, node),
    ...str(2, 'matmul'),
    ...bytes(11, valueInfo('A', [n, n])),
    ...bytes(11, valueInfo('B', [n, n])),
    ...bytes(12, valueInfo('Y', [n, n])),
  ];
  return Uint8Array.from([...int(1, 8), ...bytes(7, graph), ...bytes(8, [...str(1, ''), ...int(2, 13)])]);
}

const MM = smoke ? 256 : 2048; // the MatMul yardstick's size

async function ortMatmulGflops(ort, n = MM, seconds = smoke ? 0.05 : 3) {
  // The yardstick runs on as many intra-op threads as the backend's cpu sessions (every core the process may
  // use): onnxruntime's own default counted one core on the 2-vCPU VM, half the MatMul the step can use.
  const session = await ort.InferenceSession.create(matmulModel(n), {
    intraOpNumThreads: os.availableParallelism(),
  });
  const rand = () => Float32Array.from({ length: n * n }, () => Math.random() - 0.5);
  const feeds = {
    A: new ort.Tensor('float32', rand(), [n, n]),
    B: new ort.Tensor('float32', rand(), [n, n]),
  };
  await session.run(feeds);
  const calls = [];
  const t0 = performance.now();
  do {
    const c0 = performance.now();
    await session.run(feeds);
    calls.push((performance.now() - c0) / 1000);
  } while ((performance.now() - t0) / 1000 < seconds);
  await session.release?.();
  return (2 * n ** 3) / median(calls) / 1e9;
}

async function backendFor(name) {
  if (name === 'js') return new JsBackend();
  const pkg = `@lineage/backend-${name}`;
  const dist = join(repo, 'packages', `backend-${name}`, 'dist', 'index.js');
  try {
    await import(pkg);
  } catch {
    if (!existsSync(dist)) return { skipped: `${pkg} is not built` };
    await import(dist);
  }
  try {
    return await getBackend(name);
  } catch (e) {
    return { skipped: e.message };
  }
}

// The text is tokenized with the llama2 tokenizer, so even the smoke model keeps its 32000-token vocabulary.
const config = llamaConfig({ ...benchShape, vocab: 32000 });
const tokenizer = await loadTokenizer(sharedPath('models', 'llama2-tokenizer', 'tokenizer.bin'));
const text = await readTextFile(sharedPath('data', 'tinystories', 'train-head.txt'));

const bench = startBench('distill-train');
const rounds = benchRounds();
const ort = loadOrt();
const torch =
  process.env.LINEAGE_BENCH_TORCH === '0' ? { missing: 'LINEAGE_BENCH_TORCH=0' } : findPython(['torch']);
const f = (T) => trainingFlops(config, T);

/** One distillation run of steps + 1 steps; returns the median seconds of the timed steps (the first excluded). */
async function distillStep(backend, B, T, steps) {
  const teacher = initModel(config, { seed: 1 });
  teacher.tokenizer = tokenizer;
  const student = perturbLinearWeights(initModel(config, { seed: 1 }), 0.3, 2);
  student.tokenizer = tokenizer;
  const times = [];
  let last = performance.now();
  await distill({
    teacher,
    student,
    data: { text },
    tokens: (steps + 1) * B * T,
    seqLen: T,
    batchSize: B,
    lr: 1e-4,
    hidden: false, // KL only: the PyTorch yardstick's step
    backend,
    teacherBackend: backend,
    onStep: () => {
      const now = performance.now();
      times.push((now - last) / 1000);
      last = now;
    },
  });
  teacher.release();
  student.release();
  return median(times.slice(1)); // the first step includes uploads and warm-up
}

/** The same step in eager PyTorch (torch-distill-step.py): median seconds of its timed steps. */
function torchStep(B, T, steps) {
  const out = execFileSync(
    torch.python,
    [
      join(here, 'torch-distill-step.py'),
      ...Object.entries({ ...benchShape, vocab: 32000, batch: B, seq: T, steps }).flatMap(([k, v]) =>
        k === 'context' ? [] : [`--${k}`, String(v)],
      ),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  const r = JSON.parse(out.trim().split('\n').pop());
  return { seconds: median(r.seconds), torch: r.torch, threads: r.threads, blas: r.blas };
}

const backends = [];
for (const name of env('LINEAGE_BENCH_BACKENDS', 'onnxruntime').split(',')) {
  const backend = await backendFor(name.trim());
  if (backend.skipped) {
    console.log(`${name}: skipped (${backend.skipped})`);
    backends.push({ name, skipped: backend.skipped });
    continue;
  }
  const isJs = backend.name === 'js';
  const B = Number(env('LINEAGE_BENCH_BATCH', smoke || isJs ? 1 : 4));
  const T = Number(env('LINEAGE_BENCH_SEQ', smoke ? 16 : isJs ? 128 : 256));
  const steps = Number(env('LINEAGE_BENCH_STEPS', smoke ? 1 : isJs ? 2 : 3));
  backends.push({ name, backend, B, T, steps });
}
// PyTorch at the onnxruntime backend's batch (else the first backend's), the step the targets compare
const main = backends.find((b) => b.name === 'onnxruntime' && b.backend) ?? backends.find((b) => b.backend);
const measures = {};
if (ort) measures.matmul = () => ortMatmulGflops(ort);
for (const b of backends) if (b.backend) measures[b.name] = () => distillStep(b.backend, b.B, b.T, b.steps);
// The step before the fused KD head (per-op logits, log-softmax and KL, and their backward), for a
// same-run ratio: LINEAGE_BENCH_PER_OP_HEAD=1 (on by default in smoke mode, so that path stays exercised).
const perOpHead = env('LINEAGE_BENCH_PER_OP_HEAD', smoke ? '1' : '0') === '1';
if (perOpHead && main?.backend?.fusedTraining) {
  measures['per-op head'] = async () => {
    const saved = main.backend.fusedTraining;
    main.backend.fusedTraining = undefined;
    try {
      return await distillStep(main.backend, main.B, main.T, main.steps);
    } finally {
      main.backend.fusedTraining = saved;
    }
  };
}
// The step with the fused KD head but per-op decoder blocks (the path before the fused blocks), for a
// same-run ratio: LINEAGE_BENCH_PER_OP_BLOCKS=1 (on in smoke mode).
const perOpBlocks = env('LINEAGE_BENCH_PER_OP_BLOCKS', smoke ? '1' : '0') === '1';
if (perOpBlocks && main?.backend?.fusedTraining?.blockForward) {
  measures['per-op blocks'] = async () => {
    const saved = main.backend.fusedTraining;
    main.backend.fusedTraining = { kdHead: saved.kdHead.bind(saved) };
    try {
      return await distillStep(main.backend, main.B, main.T, main.steps);
    } finally {
      main.backend.fusedTraining = saved;
    }
  };
}
if (main && !torch.missing) measures.torch = () => torchStep(main.B, main.T, main.steps);
const samples = await alternate(rounds, measures);

const matmul = samples.matmul ? median(samples.matmul) : undefined;
console.log(
  matmul
    ? `onnxruntime MatMul ${MM}³: ${sane('MatMul gflops', matmul).toFixed(1)} GFLOP/s (median of ${rounds} rounds)`
    : 'onnxruntime-node not found: no MatMul yardstick',
);
const rows = [];
function report(label, B, T, secs) {
  const s = median(secs);
  const fl = f(T);
  const tps = (B * T) / s;
  const row = {
    backend: label,
    batch: `${B}×${T}`,
    secondsPerStep: s,
    tokensPerSecond: tps,
    studentGflops: (tps * fl.train) / 1e9,
    stepGflops: (tps * (fl.train + fl.forward)) / 1e9,
    samples: secs,
  };
  for (const k of ['secondsPerStep', 'tokensPerSecond', 'studentGflops', 'stepGflops'])
    sane(`${label} ${k}`, row[k]);
  rows.push(row);
  console.log(
    `${row.backend}: ${row.batch} tokens/step, ${s.toFixed(2)} s/step (rounds ${secs.map((x) => x.toFixed(2)).join(', ')}), ${tps.toFixed(1)} tokens/s, ` +
      `${row.studentGflops.toFixed(2)} GFLOP/s (student 6·P + attention), ${row.stepGflops.toFixed(2)} GFLOP/s (with the teacher forward)` +
      (matmul
        ? `; ${((100 * row.studentGflops) / matmul).toFixed(0)}% (student) / ${((100 * row.stepGflops) / matmul).toFixed(0)}% (whole step) of the ${MM}³ MatMul`
        : ''),
  );
  return row;
}
for (const b of backends) {
  if (!b.backend) {
    rows.push({ backend: b.name, skipped: b.skipped });
    continue;
  }
  report(`${b.backend.name} (${b.backend.device})`, b.B, b.T, samples[b.name]);
  // student GFLOP/s per round against the MatMul of the same round
  if (matmul) {
    const fl = f(b.T).train;
    const gf = samples[b.name].map((s) => (((b.B * b.T) / s) * fl) / 1e9);
    bench.ratio(`${b.name} student GFLOP/s / ${MM}³ MatMul`, gf, samples.matmul, {
      ...(b.name === 'onnxruntime' ? { min: 0.35 } : {}),
    });
  }
  await b.backend.close?.();
}
if (samples['per-op head']?.length) {
  report(
    `${main.backend.name} (${main.backend.device}), per-op KD head`,
    main.B,
    main.T,
    samples['per-op head'],
  );
  bench.ratio(
    `${main.name} fused-head step / per-op-head step (tokens/s)`,
    samples['per-op head'],
    samples[main.name],
    {
      note: 'per-op-head step seconds / this step seconds',
    },
  );
}
if (samples['per-op blocks']?.length) {
  report(
    `${main.backend.name} (${main.backend.device}), fused KD head, per-op blocks`,
    main.B,
    main.T,
    samples['per-op blocks'],
  );
  bench.ratio(
    `${main.name} fused-blocks step / per-op-blocks step (tokens/s)`,
    samples['per-op blocks'],
    samples[main.name],
    { note: 'per-op-blocks step seconds / this step seconds' },
  );
}
let torchInfo = { skipped: torch.missing ?? 'no backend to compare' };
if (samples.torch?.length) {
  const secs = samples.torch.map((x) => x.seconds);
  const t = samples.torch[0];
  torchInfo = { torch: t.torch, threads: t.threads, blas: t.blas, python: torch.python };
  report(`pytorch ${t.torch} eager (${t.threads} threads)`, main.B, main.T, secs);
  // tokens/s ratio = inverse ratio of step seconds, per round
  bench.ratio(`${main.name} tokens/s / PyTorch eager tokens/s`, secs, samples[main.name], {
    note: 'PyTorch step seconds / this step seconds',
    ...(main.name === 'onnxruntime' ? { min: 1.5 } : {}),
  });
} else console.log(`pytorch: skipped (${torchInfo.skipped})`);
bench.finish({
  matmul2048: matmul ?? null,
  matmulSamples: samples.matmul ?? [],
  flopsPerToken: trainingFlops(config, 256),
  pytorch: torchInfo,
  rows,
});
