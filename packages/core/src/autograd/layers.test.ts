import { afterAll, describe, expect, it } from 'vitest';
import { JsBackend } from '../backend/js/js-backend.js';
import { loadModel } from '../checkpoint/load-model.js';
import { namedParameters } from '../optim/optimizer.js';
import { layerGradientCases } from '../testing/gradients.js';
import { sharedPath } from '../testing/shared.js';
import { checkGradients, type GradCheckResult } from './grad-check.js';
import { languageModelLoss } from './losses.js';

/*
 * Gradient checks of every layer kind and of whole models (the shared cases of @lineage/core/testing,
 * and the real stories260K): autodiff on the f32 js backend against float64 central differences of the
 * same layer code run on F64Backend (see gradients.test.ts for the error measure). Layers and models are deeper than single ops, so f32 rounding compounds a little more:
 * observed errors stay below ~1e-4; we require < 2e-3.
 */
const TOL = 2e-3;
const js = new JsBackend();
const measured: [string, number][] = [];

afterAll(() => {
  measured.sort((a, b) => b[1] - a[1]);
  console.log(
    `layer/model gradient checks: ${measured.length} tensors, worst: ${measured
      .slice(0, 6)
      .map(([n, e]) => `${n} ${e.toExponential(1)}`)
      .join(', ')}`,
  );
});

function expectClose(label: string, results: GradCheckResult[]): void {
  for (const r of results) {
    measured.push([`${label}:${r.name}`, r.maxError]);
    expect(r.scale, `${label}: gradient of ${r.name} is all zeros`).toBeGreaterThan(0);
    expect(r.maxError, `${label}: d/d${r.name}`).toBeLessThan(TOL);
  }
}

describe('layer and model gradients vs float64 finite differences (the shared layer cases)', () => {
  for (const c of layerGradientCases()) {
    it(c.name, async () => {
      const { params, loss, coords, seed } = c;
      const results = await checkGradients({ backend: js, params, loss, coords, seed });
      // every trainable parameter is checked, frozen ones (a distillation teacher) are not
      const trainable = [...c.params].filter(([, p]) => p.trainable).map(([k]) => k);
      expect(results.map((r) => r.name)).toEqual(trainable);
      expectClose(c.name, results);
    });
  }

  it('the real stories260K (tied, GQA 8/4): d(LM loss)/d(every parameter)', async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const ids = Int32Array.from(
      model
        .tokenizer!.encode('Once upon a time, there was a little girl named Lily. She', { bos: true })
        .slice(0, 12),
    );
    const results = await checkGradients({
      backend: js,
      params: namedParameters(model),
      coords: 2,
      seed: 9,
      loss: (ops) => languageModelLoss(ops, model, ids, 1),
    });
    expectClose('stories260K', results);
  });
});
