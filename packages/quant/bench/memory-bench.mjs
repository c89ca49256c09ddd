// Eval speed and resident weight memory of a 2-bit quantized model against the dense one, on a synthetic
// checkpoint of stories42M's shape (dim 512, 8 layers, hidden 1376, vocab 32000; random weights: speed and
// memory do not depend on the values). The block linears are quantized by RTN at 2 bits in groups of 64
// (LDLQ stores exactly the same tensors); the tied embedding/head stays dense f32 in both.
//
// Each variant is saved, then loaded and run in a fresh child process, so its memory is its own:
// `arrayBuffers` (Node's ArrayBuffer bytes: the stored weights plus the js backend's f32 copies) after a warm
// forward, and the forward's tokens/s over batch × seq tokens. Variants: dense; 2-bit dequantized per forward
// (the default); 2-bit with the dequantized weights cached (to see whether caching pays).
//
// The three variants alternate for ≥ 3 rounds (LINEAGE_BENCH_ROUNDS), each round a fresh child per variant;
// figures are medians, speed ratios are ratios of medians of this run, and the load before/after decides
// whether they are quotable (scripts/bench-kit.mjs; JSON to --json <file> or bench-results/).
//
// Run after `pnpm build`: node packages/quant/bench/memory-bench.mjs   (--smoke: a tiny model, one rep)
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initModel, JsBackend, llamaConfig, loadModel, Ops, saveModel } from '@lineage/core';
import {
  alternate,
  benchRounds,
  benchShape,
  field,
  median,
  sane,
  smoke,
  startBench,
} from '../../../scripts/bench-kit.mjs';
import { QuantizedLinear, quantizeModel } from '../dist/index.js';

const B = 1;
const T = smoke ? 32 : 256;
const SECONDS = smoke ? 0.05 : 3;

async function child(dir, cache) {
  global.gc?.();
  const base = process.memoryUsage().arrayBuffers;
  const { model } = await loadModel(dir, { tokenizerOptional: true });
  if (cache)
    for (const [, l] of model.linearLayers()) if (l instanceof QuantizedLinear) l.cacheDequantized = true;
  const backend = new JsBackend();
  const ops = new Ops(backend);
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % model.config.vocabSize);
  const run = () => ops.tidy(async () => ops.readF32(await model.forward(ops, ids, B)));
  await run(); // warm: uploads (and caches) the weights
  global.gc?.();
  const resident = process.memoryUsage().arrayBuffers - base;
  let n = 0;
  const t0 = performance.now();
  do {
    await run();
    n++;
  } while ((performance.now() - t0) / 1000 < SECONDS);
  const seconds = (performance.now() - t0) / 1000 / n;
  const s = model.stats();
  const decoderBytes = s.layers
    .filter((l) => l.name.startsWith('model.layers.'))
    .reduce((a, l) => a + l.bytes, 0);
  return { tokensPerSecond: (B * T) / seconds, residentBytes: resident, storedBytes: s.bytes, decoderBytes };
}

if (process.argv[2] === '--child') {
  console.log(JSON.stringify(await child(process.argv[3], process.argv[4] === 'cache')));
  process.exit(0);
}

const bench = startBench('quant-memory');
const dir = mkdtempSync(join(tmpdir(), 'lineage-quant-bench-'));
try {
  const cfg = llamaConfig(benchShape);
  const dense = initModel(cfg, { seed: 1 });
  await saveModel(dense, join(dir, 'dense'), { format: 'hf' });
  const t0 = performance.now();
  const q = await quantizeModel(dense, { quantizer: 'rtn', bits: 2, groupSize: 64 });
  const quantizeSeconds = (performance.now() - t0) / 1000;
  await saveModel(q.model, join(dir, 'q2'), { format: 'hf' });
  const self = fileURLToPath(import.meta.url);
  const measure = (path, mode = '') =>
    JSON.parse(
      execFileSync(process.execPath, ['--expose-gc', self, '--child', path, mode], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .pop(),
    );
  const samples = await alternate(benchRounds(), {
    'dense f32': () => measure(join(dir, 'dense')),
    '2-bit, dequantized per forward': () => measure(join(dir, 'q2')),
    '2-bit, dequantized weights cached': () => measure(join(dir, 'q2'), 'cache'),
  });
  const rows = Object.entries(samples).map(([label, xs]) => [
    label,
    {
      ...xs[0],
      tokensPerSecond: median(field(xs, 'tokensPerSecond')),
      residentBytes: median(field(xs, 'residentBytes')),
      samples: xs,
    },
  ]);
  const denseRate = field(samples['dense f32'], 'tokensPerSecond');
  for (const [label, xs] of Object.entries(samples))
    if (label !== 'dense f32')
      bench.ratio(`${label} tokens/s / dense tokens/s`, field(xs, 'tokensPerSecond'), denseRate);
  console.log(
    `shape: dim ${benchShape.dim}, ${benchShape.layers} layers, hidden ${benchShape.hidden}, vocab ${benchShape.vocab}; forward of ${B} × ${T} tokens, js backend; RTN 2-bit quantization took ${quantizeSeconds.toFixed(1)} s`,
  );
  for (const [label, r] of rows) {
    sane(`${label} tokens/s`, r.tokensPerSecond);
    // at smoke sizes (a few KiB of weights) the collector's noise can exceed them: only finite is required there
    if (smoke) {
      if (!Number.isFinite(r.residentBytes)) throw new Error(`bench figure ${label} resident is not finite`);
    } else sane(`${label} resident`, r.residentBytes);
    console.log(
      `${label}: ${r.tokensPerSecond.toFixed(0)} tokens/s, resident ${(r.residentBytes / 2 ** 20).toFixed(1)} MiB (stored ${(r.storedBytes / 2 ** 20).toFixed(1)} MiB, of which decoder linears ${(r.decoderBytes / 2 ** 20).toFixed(2)} MiB)`,
    );
  }
  bench.finish({ batch: B, seqLen: T, quantizeSeconds, rows: Object.fromEntries(rows) });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
