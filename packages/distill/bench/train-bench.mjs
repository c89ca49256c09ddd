// Training throughput of a distillation step on the stories42M-shaped synthetic model (dim 512, 8 layers,
// 8 heads, hidden 1376, vocab 32000): teacher forward + student forward/backward (KL at T = 1) + gradient
// clipping + AdamW, per available backend, beside the GFLOP/s of one 2048×2048×2048 onnxruntime MatMul
// measured in the same run (a session of its own, straight on onnxruntime-node).
//
// FLOPs per training token: the student 6·P + 12·layers·(heads·headDim)·(T+1)/2 (forward + backward, P =
// matmul parameters with the tied head), plus the teacher's forward 2·P + 4·layers·(heads·headDim)·(T+1)/2.
// Both are reported: "student" (the 6·P + attention convention) and "distillation step" (with the teacher).
//
// Run after `pnpm build`: pnpm --filter @lineage/distill bench
// Env: LINEAGE_BENCH_BACKENDS (default "js,onnxruntime"; a backend that is not built is reported as skipped),
// LINEAGE_BENCH_STEPS (timed steps after one warm-up step, default 3; js: 2), LINEAGE_BENCH_BATCH ×
// LINEAGE_BENCH_SEQ tokens per step (default 4 × 256; js: 1 × 128, its steps take minutes otherwise).
// --smoke (or LINEAGE_BENCH_SMOKE=1): a tiny model (llama2 vocabulary), 2 steps of 1 × 16 tokens, a 256³
// MatMul; fails unless every figure is finite and positive (scripts/bench-smoke.mjs runs it in CI).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
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
import { benchShape, sane, smoke } from '../../../scripts/bench-kit.mjs';
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
  const session = await ort.InferenceSession.create(matmulModel(n));
  const rand = () => Float32Array.from({ length: n * n }, () => Math.random() - 0.5);
  const feeds = {
    A: new ort.Tensor('float32', rand(), [n, n]),
    B: new ort.Tensor('float32', rand(), [n, n]),
  };
  await session.run(feeds);
  let k = 0;
  const t0 = performance.now();
  do {
    await session.run(feeds);
    k++;
  } while ((performance.now() - t0) / 1000 < seconds);
  const s = (performance.now() - t0) / 1000 / k;
  await session.release?.();
  return (2 * n ** 3) / s / 1e9;
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

const rows = [];
const ort = loadOrt();
const matmul = ort ? await ortMatmulGflops(ort) : undefined;
console.log(
  matmul
    ? `onnxruntime MatMul ${MM}³: ${sane('MatMul gflops', matmul).toFixed(1)} GFLOP/s`
    : 'onnxruntime-node not found: no MatMul yardstick',
);

for (const name of env('LINEAGE_BENCH_BACKENDS', 'js,onnxruntime').split(',')) {
  const backend = await backendFor(name.trim());
  if (backend.skipped) {
    console.log(`${name}: skipped (${backend.skipped})`);
    rows.push({ backend: name, skipped: backend.skipped });
    continue;
  }
  const isJs = backend.name === 'js';
  const B = Number(env('LINEAGE_BENCH_BATCH', smoke || isJs ? 1 : 4));
  const T = Number(env('LINEAGE_BENCH_SEQ', smoke ? 16 : isJs ? 128 : 256));
  const steps = Number(env('LINEAGE_BENCH_STEPS', smoke ? 1 : isJs ? 2 : 3));
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
    backend,
    teacherBackend: backend,
    onStep: () => {
      const now = performance.now();
      times.push((now - last) / 1000);
      last = now;
    },
  });
  const timed = times.slice(1); // the first step includes uploads and warm-up
  const s = timed.reduce((a, b) => a + b, 0) / timed.length;
  const f = trainingFlops(config, T);
  const tps = (B * T) / s;
  const row = {
    backend: `${backend.name} (${backend.device})`,
    batch: `${B}×${T}`,
    secondsPerStep: s,
    tokensPerSecond: tps,
    studentGflops: (tps * f.train) / 1e9,
    stepGflops: (tps * (f.train + f.forward)) / 1e9,
  };
  for (const k of ['secondsPerStep', 'tokensPerSecond', 'studentGflops', 'stepGflops'])
    sane(`${name} ${k}`, row[k]);
  rows.push(row);
  console.log(
    `${row.backend}: ${row.batch} tokens/step, ${s.toFixed(2)} s/step, ${tps.toFixed(1)} tokens/s, ` +
      `${row.studentGflops.toFixed(2)} GFLOP/s (student 6·P + attention), ${row.stepGflops.toFixed(2)} GFLOP/s (with the teacher forward)` +
      (matmul ? `; ${((100 * row.stepGflops) / matmul).toFixed(0)}% of the ${MM}³ MatMul` : ''),
  );
  teacher.release();
  student.release();
  await backend.close?.();
}
console.log(
  JSON.stringify({ matmul2048: matmul ?? null, flopsPerToken: trainingFlops(config, 256), rows }, null, 2),
);
