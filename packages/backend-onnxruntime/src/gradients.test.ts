import { JsBackend, languageModelLoss, loadModel, namedParameters } from '@lineage/core';
import {
  compareGradients,
  describeGradientAgreement,
  expectGradientsAgree,
  layerGradientCases,
  sharedPath,
} from '@lineage/core/testing';
import { describe, it } from 'vitest';
import { createOnnxruntimeBackend } from './base.js';

/*
 * Training on onnxruntime, which has no autodiff of its own: the tape's gradients run on onnxruntime
 * kernels must be the js backend's (themselves checked against float64 finite differences in core) within
 * float32 tolerance: max |Δ| ≤ 1e-4·max |g| + 1e-6 per parameter (the reasoning is with
 * GRADIENT_AGREEMENT_TOLERANCE in @lineage/core/testing). Every op with a built-in gradient and every layer
 * kind, then whole models.
 *
 * smallOpThreshold 0 sends every op, however small, to onnxruntime: at the default threshold these tiny
 * tensors would all run on the js kernels and the comparison would test nothing.
 */
describeGradientAgreement('onnxruntime cpu, every op on onnxruntime', () =>
  createOnnxruntimeBackend({ device: 'cpu', smallOpThreshold: 0 }),
);

// The default configuration mixes the two: small ops on the js kernels, larger ones on onnxruntime.
describeGradientAgreement(
  'onnxruntime cpu, default small-op threshold (js kernels below it)',
  () => createOnnxruntimeBackend({ device: 'cpu' }),
  { cases: () => layerGradientCases().filter((c) => c.name.startsWith('Llama')) },
);

describe('gradient agreement with the js backend: the real stories260K on onnxruntime', () => {
  it('tied, GQA 8/4, head size 8: d(LM loss)/d(every parameter)', async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const ids = Int32Array.from(
      model
        .tokenizer!.encode('Once upon a time, there was a little girl named Lily. She', { bos: true })
        .slice(0, 12),
    );
    const be = await createOnnxruntimeBackend({ device: 'cpu', smallOpThreshold: 0 });
    try {
      const name = 'stories260K';
      const r = await compareGradients(
        { name, params: namedParameters(model), loss: (ops) => languageModelLoss(ops, model, ids, 1) },
        new JsBackend(),
        be,
      );
      const { worst } = expectGradientsAgree(name, r);
      console.log(
        `stories260K on onnxruntime: ${r.params.length} parameters, loss ${r.loss[1]} vs ${r.loss[0]}; worst d/d${worst?.name}: max|Δ| ${worst?.maxAbsDiff.toExponential(1)}, max|g| ${worst?.scale.toExponential(1)}`,
      );
    } finally {
      await be.close?.();
    }
  });
});
