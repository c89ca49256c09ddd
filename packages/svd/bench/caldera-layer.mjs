// CALDERA on one synthetic layer: wall time and peak memory of the float64 decomposition (calderaLayer:
// Hadamard incoherence, H's eigendecomposition, outer × LPLR iterations, LDLQ Q steps), Q 2 bits, L/R 4 bits.
//
// The layer: W [size, size] Gaussian plus a rank-32 part (a weight with a few strong directions); the
// Hessian H = D·T·D with T the AR(1) correlation ρ^|i−j| (ρ = 0.9) and D a log-uniform spread of input
// scales over two decades (correlated, ill-conditioned inputs), built in O(size²).
//
// Run after `pnpm build`: node --expose-gc packages/svd/bench/caldera-layer.mjs [--size 4096] [--rank 256]
//   [--outer-iters 20] [--lplr-iters 5] [--svd auto|exact|randomized]
// Prints each step's error and time, and the seconds per phase (Hadamard, H's eigendecomposition, the LR
// step's SVD, LPLR, the Q step's LDLQ, the error evaluations).
// Llama-7B's q_proj shape is the default; --smoke: 128×128, rank 8, 2 × 2 iterations.
import { parseArgs } from 'node:util';
import { sane, smoke, startBench } from '../../../scripts/bench-kit.mjs';

// load before/after, the verdict and the JSON record (scripts/bench-kit.mjs)
const bench = startBench('caldera-layer');

import { calderaLayer } from '../dist/index.js';

const { values: a } = parseArgs({
  options: {
    size: { type: 'string', default: '4096' },
    rank: { type: 'string', default: '256' },
    'outer-iters': { type: 'string', default: '20' },
    'lplr-iters': { type: 'string', default: '5' },
    svd: { type: 'string', default: 'auto' },
    smoke: { type: 'boolean' },
  },
});
if (smoke) Object.assign(a, { size: '128', rank: '8', 'outer-iters': '2', 'lplr-iters': '2' });
const n = Number(a.size);
const rank = Number(a.rank);

let seed = 1;
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-300)) * Math.cos(2 * Math.PI * rand());

const w = new Float32Array(n * n);
const u = Float64Array.from({ length: n * 32 }, gauss);
const v = Float64Array.from({ length: 32 * n }, gauss);
for (let i = 0; i < n; i++)
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < 32; k++) s += u[i * 32 + k] * v[k * n + j];
    w[i * n + j] = 0.02 * (gauss() + 0.3 * s);
  }
const d = Float64Array.from({ length: n }, (_, i) => 10 ** (-1 + (2 * i) / n));
const h = new Float64Array(n * n);
for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j] = d[i] * d[j] * 0.9 ** Math.abs(i - j);

globalThis.gc?.();
const rss0 = process.memoryUsage().rss;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let last = t0;
const stepSeconds = [];
const profile = {};
const { decomposition } = await calderaLayer(w, n, n, h, undefined, {
  qBits: 2,
  lrBits: 4,
  rank,
  outerIters: Number(a['outer-iters']),
  lplrIters: Number(a['lplr-iters']),
  hadamard: true,
  hessianDowndate: false,
  ftRank: 0,
  svd: a.svd,
  profile,
  onStep: (s) => {
    const t = performance.now();
    stepSeconds.push((t - last) / 1000);
    last = t;
    if (!smoke) {
      const cpu = process.cpuUsage(cpu0);
      const phases = Object.entries(profile).map(([k, v]) => `${k} ${v.toFixed(1)}`);
      console.error(
        `iteration ${s.iteration + 1} ${s.step}: error ${s.error.toFixed(4)}, ${((t - t0) / 1000).toFixed(1)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s CPU; wall s per phase: ${phases.join(', ')}`,
      );
    }
  },
});
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
// CPU time of this process (user + system): on a loaded machine, closer to what an idle one would take
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
const peak = process.resourceUsage().maxRSS * 1024;
const result = {
  size: n,
  rank,
  outerIters: Number(a['outer-iters']),
  lplrIters: Number(a['lplr-iters']),
  seconds: sane('seconds', seconds),
  cpuSeconds: sane('cpu seconds', cpuSeconds),
  firstError: decomposition.steps.find((s) => s.step === 'Q').error,
  bestError: sane('best error', decomposition.error),
  peakRssMiB: sane('peak RSS', peak / 2 ** 20),
  rssBeforeMiB: rss0 / 2 ** 20,
  svd: a.svd,
  phaseSeconds: profile,
  lrStepSeconds: stepSeconds.filter((_, i) => i % 2 === 0),
  qStepSeconds: stepSeconds.filter((_, i) => i % 2 === 1),
};
bench.finish(result);
