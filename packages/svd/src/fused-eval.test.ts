// Fused evaluation (onnxruntime's whole-model nll graph) against the per-op reference on every layer kind
// a compressed stories260K carries: dense, low_rank (svd 0.5), a width+depth pruned shape (the core surgery
// minitron's --shape runs) and 4-bit rtn (MatMulNBits). Lives here because this package sees both the
// low_rank and quantized kinds and the onnxruntime backend.
import { createOnnxruntimeBackend } from '@lineage/backend-onnxruntime';
import {
  applyMethod,
  keepFfn,
  keepHeads,
  keepHidden,
  keepLayers,
  type LlamaModel,
  loadModel,
  methodContext,
  type PerplexityOptions,
  perplexity,
  readTextFile,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { rtnMethod } from '@lineage/quant';
import { describe, expect, it } from 'vitest';
import { svd } from './methods.js';

const protocols: PerplexityOptions[] = [
  { protocol: 'documents', separator: '<|endoftext|>', limit: 40 },
  { protocol: 'stream', seqLen: 256, limit: 8 },
];

describe('fused evaluation agrees with the per-op path on compressed stories260K', () => {
  it('dense, low_rank, pruned and rtn-4 within 1e-5 relative, both protocols', async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const text = await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'));
    const backend = await createOnnxruntimeBackend({ device: 'cpu' });
    const ctx = () => methodContext(backend);
    const c = model.config;
    const half = (n: number) => Array.from({ length: n / 2 }, (_, i) => 2 * i);
    const models: [string, LlamaModel][] = [
      ['dense', model],
      ['low_rank', await applyMethod(svd({ params: 0.5 }), model, ctx())],
      [
        'pruned',
        keepLayers(
          keepHidden(keepFfn(keepHeads(model, half(c.numHeads)), half(c.intermediateSize)), half(64)),
          [0, 1, 3],
        ),
      ],
      ['rtn-4', await applyMethod(rtnMethod({ bits: 4, groupSize: 32 }), model, ctx())],
    ];
    for (const [name, m] of models)
      for (const opts of protocols) {
        const reasons: string[] = [];
        const perOp = await perplexity(m, backend, text, opts);
        const fused = await perplexity(m, backend, text, {
          ...opts,
          fused: true,
          onFusedFallback: (r) => reasons.push(r),
        });
        expect([name, opts.protocol, reasons, fused.fused]).toEqual([name, opts.protocol, [], true]);
        expect(fused.tokens).toBe(perOp.tokens);
        expect(Math.abs(fused.nll - perOp.nll) / perOp.nll, `${name} ${opts.protocol}`).toBeLessThan(1e-5);
      }
    await backend.close?.();
  }, 300_000);

  it('falls back to the per-op path, saying why once, for a grid the ONNX graph cannot express (rtn-3)', async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const text = await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt'));
    const backend = await createOnnxruntimeBackend({ device: 'cpu' });
    const m = await applyMethod(rtnMethod({ bits: 3, groupSize: 32 }), model, methodContext(backend));
    const reasons: string[] = [];
    const opts = { ...protocols[0]!, batchSize: 8 };
    const perOp = await perplexity(m, backend, text, opts);
    const r = await perplexity(m, backend, text, {
      ...opts,
      fused: true,
      onFusedFallback: (x) => reasons.push(x),
    });
    expect(r.fused).toBe(false);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(/3-bit|MatMulNBits/);
    expect(r.nll).toBe(perOp.nll);
    await backend.close?.();
  }, 120_000);
});
