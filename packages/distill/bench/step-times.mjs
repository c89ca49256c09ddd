// Per-step wall, CPU (user/sys) and page faults of one distillation run on onnxruntime-cpu (stories42M shape,
// 4 × 256): what the first steps of a run pay that the later ones do not (issue #16, the slow start).
// Run after `pnpm build`: node packages/distill/bench/step-times.mjs [--smoke]; env LINEAGE_BENCH_STEPS
// (default 8).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initModel, llamaConfig, loadTokenizer, readTextFile, sharedPath } from '@lineage/core';
import { benchShape, smoke } from '../../../scripts/bench-kit.mjs';
import { distill, perturbLinearWeights } from '../dist/index.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { createOnnxruntimeBackend } = await import(
  join(repo, 'packages', 'backend-onnxruntime', 'dist', 'index.js')
);
const steps = Number(process.env.LINEAGE_BENCH_STEPS ?? (smoke ? 2 : 8));
const B = smoke ? 1 : 4;
const T = smoke ? 16 : 256;
const config = llamaConfig({ ...benchShape, vocab: 32000 });
const tokenizer = await loadTokenizer(sharedPath('models', 'llama2-tokenizer', 'tokenizer.bin'));
const text = await readTextFile(sharedPath('data', 'tinystories', 'train-head.txt'));
const backend = await createOnnxruntimeBackend();
const teacher = initModel(config, { seed: 1 });
teacher.tokenizer = tokenizer;
const student = perturbLinearWeights(initModel(config, { seed: 1 }), 0.3, 2);
student.tokenizer = tokenizer;
console.log(
  `load average ${(await import('node:os'))
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
const snap = () => ({ t: performance.now(), u: process.resourceUsage() });
let last = snap();
let i = 0;
await distill({
  teacher,
  student,
  data: { text },
  tokens: steps * B * T,
  seqLen: T,
  batchSize: B,
  lr: 1e-4,
  hidden: false,
  backend,
  teacherBackend: backend,
  onStep: () => {
    const now = snap();
    const d = (k) => now.u[k] - last.u[k];
    console.log(
      `step ${i++}: ${((now.t - last.t) / 1000).toFixed(2)} s wall, user ${(d('userCPUTime') / 1e6).toFixed(2)} s, sys ${(d('systemCPUTime') / 1e6).toFixed(2)} s, minor faults ${d('minorPageFault')}, rss ${(process.memoryUsage().rss / 2 ** 30).toFixed(2)} GiB`,
    );
    last = snap();
  },
});
await backend.close();
