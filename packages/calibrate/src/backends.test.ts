import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createOnnxruntimeBackend } from '@lineage/backend-onnxruntime';
import { type Backend, createJsBackend, getBackend, type LlamaModel, loadModel } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { calibrate } from './calibrate.js';
import { type Dataset, loadDataset } from './dataset.js';
import type { CalibrationStats } from './stats.js';
import { relErr } from './test-reference.js';

// Acceptance: the statistics are the same across backends to float32 tolerance. The Grams and importance
// reductions are float64 on the host whatever the backend; what differs is the f32 forward that produces the
// activations, so every tensor must agree to ~1e-4 relative (max |a − b| / max |b|, tensor by tensor).
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const F32_TOLERANCE = 1e-4;
// Whole stories of different lengths (documents protocol), so micro-batches are padded on both backends.
const OPTS = { samples: 6, seqLen: 256, seed: 7, microBatchTokens: 1024 };

async function allTensors(s: CalibrationStats): Promise<Map<string, Float64Array>> {
  const out = new Map<string, Float64Array>();
  for (const n of s.tensorNames().sort()) out.set(n, (await s.tensor(n)).data as Float64Array);
  return out;
}

let model: LlamaModel;
let data: Dataset;
let reference: Map<string, Float64Array>;
beforeAll(async () => {
  model = (await loadModel(MODEL)).model;
  data = await loadDataset(DEV, { separator: '<|endoftext|>' });
  const js = await createJsBackend();
  reference = await allTensors((await calibrate(model, js, data, OPTS)).stats);
  model.release();
});

/** Worst relative difference from the js statistics over all tensors (each asserted below the tolerance). */
async function compare(backend: Backend, label: string): Promise<number> {
  const got = await allTensors((await calibrate(model, backend, data, OPTS)).stats);
  expect([...got.keys()]).toEqual([...reference.keys()]);
  let worst = 0;
  for (const [k, v] of reference) {
    const e = relErr(got.get(k)!, v);
    worst = Math.max(worst, e);
    expect(e, `${label}: ${k}`).toBeLessThan(F32_TOLERANCE);
  }
  console.log(
    `${label} vs js: max relative difference over ${reference.size} tensors ${worst.toExponential(2)}`,
  );
  return worst;
}

describe('statistics agree across backends to float32 tolerance (stories260K)', () => {
  it('onnxruntime (cpu), every op on onnxruntime (smallOpThreshold 0)', async () => {
    const ort = await createOnnxruntimeBackend({ device: 'cpu', smallOpThreshold: 0 });
    const worst = await compare(ort, 'onnxruntime (all ops)');
    // Not bitwise js: the forward really ran on onnxruntime's kernels.
    expect(worst).toBeGreaterThan(0);
    model.release();
    expect(ort.liveTensors()).toBe(0); // the walk leaves nothing behind on the backend
    await ort.close?.();
  });

  it('onnxruntime (cpu) with its default small-op routing, and the same seed twice gives bitwise-identical statistics', async () => {
    const ort = await createOnnxruntimeBackend({ device: 'cpu' });
    await compare(ort, 'onnxruntime (default)');
    const a = await allTensors((await calibrate(model, ort, data, OPTS)).stats);
    const b = await allTensors((await calibrate(model, ort, data, OPTS)).stats);
    for (const [k, v] of a) expect(relErr(b.get(k)!, v), k).toBe(0);
    model.release();
    await ort.close?.();
  });
});

// tfjs is not a dependency of calibrate; when it is built beside it in this repository, it must agree too.
const TFJS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'backend-tfjs', 'dist', 'index.js');

describe('other backends built in this repository', () => {
  it.skipIf(!existsSync(TFJS))(
    'tfjs agrees with js to float32 tolerance (skipped when not built)',
    async () => {
      await import(pathToFileURL(TFJS).href);
      const tfjs = await getBackend('tfjs');
      await compare(tfjs, `tfjs (${tfjs.device})`);
      model.release();
    },
  );
});
