// AdamW's per-parameter update (#16): the JS reference loop vs the wasm SIMD kernel adamwUpdate runs,
// over one array of stories42M's parameter count (41.7 M; smoke: 100 003), in place as AdamW.step runs it
// on a parameter it owns, with clipped gradients (scale 0.7) and without (scale 1, which has its own kernel).
// Rounds alternate the four (LINEAGE_BENCH_ROUNDS, default 5); medians, and ratios of medians. JS and wasm
// start from the same state and must agree bit for bit (checked on the last round's outputs).
//
// Run after `pnpm build`: node packages/core/bench/adamw-bench.mjs
// --smoke (or LINEAGE_BENCH_SMOKE=1): the small array, one round; fails unless every figure is positive.
import { adamwUpdate, adamwUpdateJs } from '@lineage/core';
import { wasmSimdSupported } from '@lineage/core/wasm-assembler';
import { alternate, benchRounds, median, sane, smoke, startBench } from '../../../scripts/bench-kit.mjs';

if (!wasmSimdSupported()) throw new Error('no wasm SIMD here: nothing to compare');
const n = smoke ? 100_003 : 41_700_000;
const bench = startBench('adamw-bench');
let seed = 1;
const random = (scale, positive) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const x = (seed / 2 ** 32) * scale;
    a[i] = positive ? x : x - scale / 2;
  }
  return a;
};
const state = { w: random(0.1), g: random(0.01), m: random(1e-3), v: random(1e-6, true) };
// step 10 of lr 3e-4, weight decay 0.01; gradients clipped by 0.7 (scale 1: not clipped, its own kernel)
const argsAt = (scale) => [
  0.9,
  0.999,
  1 - 3e-4 * 0.01,
  3e-4 / (1 - 0.9 ** 10),
  Math.sqrt(1 - 0.999 ** 10),
  1e-8,
  scale,
];

const outputs = {};
const run = (name, update, scale) => () => {
  const [w, m, v] = [state.w.slice(), state.m.slice(), state.v.slice()];
  const t0 = performance.now();
  update(w, w, state.g, m, v, ...argsAt(scale));
  const ms = performance.now() - t0;
  outputs[name] = [w, m, v];
  return ms;
};
const rounds = benchRounds(5);
const samples = await alternate(rounds, {
  js: run('js', adamwUpdateJs, 0.7),
  wasm: run('wasm', adamwUpdate, 0.7),
  js1: run('js1', adamwUpdateJs, 1),
  wasm1: run('wasm1', adamwUpdate, 1),
});
for (const [x, y] of [
  ['js', 'wasm'],
  ['js1', 'wasm1'],
])
  for (let i = 0; i < 3; i++) {
    const a = new Uint32Array(outputs[x][i].buffer);
    const b = new Uint32Array(outputs[y][i].buffer);
    for (let j = 0; j < n; j++)
      if (a[j] !== b[j]) throw new Error(`${x} and ${y} differ at ${j} of array ${i}`);
  }
const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, sane(k, median(v))]));
const row = (label, k) =>
  console.log(`  ${label} ${med[k].toFixed(1)} ms  (${samples[k].map((x) => x.toFixed(0)).join(', ')})`);
console.log(`AdamW update of ${n} elements, median of ${rounds}:`);
row('JS loop, clipped (scale 0.7)  ', 'js');
row('wasm SIMD, clipped            ', 'wasm');
row('JS loop, scale 1              ', 'js1');
row('wasm SIMD, scale 1            ', 'wasm1');
bench.ratio('speed-up, clipped (JS / wasm time)', samples.js, samples.wasm, { min: 3 });
bench.ratio('speed-up, scale 1 (JS / wasm time)', samples.js1, samples.wasm1, { min: 3 });
bench.finish({ n, samples, medians: med });
