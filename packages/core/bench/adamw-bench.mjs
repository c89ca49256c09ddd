// AdamW's per-parameter update (#16): the JS reference loop vs the wasm SIMD kernel adamwUpdate runs,
// over one array of stories42M's parameter count (41.7 M; smoke: 100 003), in place as AdamW.step runs it
// on a parameter it owns. Rounds alternate JS and wasm (LINEAGE_BENCH_ROUNDS, default 5); medians, and the
// ratio of medians. Both runs start from the same state and must agree bit for bit (checked each round).
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
// step 10 of lr 3e-4, weight decay 0.01, clipped by 0.7
const args = [0.9, 0.999, 1 - 3e-4 * 0.01, 3e-4 / (1 - 0.9 ** 10), Math.sqrt(1 - 0.999 ** 10), 1e-8, 0.7];

const outputs = {};
const run = (name, update) => () => {
  const [w, m, v] = [state.w.slice(), state.m.slice(), state.v.slice()];
  const t0 = performance.now();
  update(w, w, state.g, m, v, ...args);
  const ms = performance.now() - t0;
  outputs[name] = [w, m, v];
  return ms;
};
const rounds = benchRounds(5);
const samples = await alternate(rounds, {
  js: run('js', adamwUpdateJs),
  wasm: run('wasm', adamwUpdate),
});
for (let i = 0; i < 3; i++) {
  const a = new Uint32Array(outputs.js[i].buffer);
  const b = new Uint32Array(outputs.wasm[i].buffer);
  for (let j = 0; j < n; j++) if (a[j] !== b[j]) throw new Error(`wasm and JS differ at ${j} of array ${i}`);
}
const js = median(samples.js);
const wasm = median(samples.wasm);
console.log(`AdamW update of ${n} elements, median of ${rounds}:`);
console.log(
  `  JS loop    ${sane('js', js).toFixed(1)} ms  (${samples.js.map((x) => x.toFixed(0)).join(', ')})`,
);
console.log(
  `  wasm SIMD  ${sane('wasm', wasm).toFixed(1)} ms  (${samples.wasm.map((x) => x.toFixed(0)).join(', ')})`,
);
bench.ratio('speed-up (JS / wasm time)', samples.js, samples.wasm, { min: 3 });
bench.finish({ n, samples, medians: { js, wasm } });
