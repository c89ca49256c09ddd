import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import { JsBackend, LineageError, loadModel, namedParameters, Ops } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { dequantize, ldlq, proxyLoss, rtn } from '@lineage/quant';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CalderaLayerOptions, calderaLayer } from './layer.js';

// One real layer of stories260K with its calibration Hessian: the qlr layer CALDERA builds against the
// quantizers alone at the same bits for Q.
const layer = 'model.layers.3.self_attn.q_proj'; // 64×64
let w: Float32Array;
let h: Float64Array;
const [m, n] = [64, 64];
const base: CalderaLayerOptions = {
  qBits: 2,
  lrBits: 4,
  rank: 4,
  outerIters: 6,
  lplrIters: 5,
  hadamard: true,
  hessianDowndate: false,
  ftRank: 1,
  name: layer,
};

beforeAll(async () => {
  const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
  const ds = await loadDataset(sharedPath('data', 'tinystories', 'train-head.txt'));
  const sample = sampleSequences(ds, model.tokenizer!, { samples: 16, seqLen: 128, seed: 3 });
  const stats = await computeStats(model, new JsBackend(), sample, { statistics: ['hessian'] });
  h = Float64Array.from(await stats.hessian(layer));
  await stats.close();
  w = Float32Array.from(namedParameters(model).get(`${layer}.weight`)!.value.toF32());
}, 300_000);

const rel = (approx: Float64Array | Float32Array) => {
  const w64 = Float64Array.from(w);
  return Math.sqrt(
    proxyLoss(w64, Float64Array.from(approx), m, n, h) / proxyLoss(w64, new Float64Array(m * n), m, n, h),
  );
};

describe(`CALDERA on stories260K ${layer}`, () => {
  it('the qlr layer is the decomposition (forward and dense weight), and beats LDLQ and RTN alone at 2 bits', async () => {
    const { layer: l, decomposition: d } = await calderaLayer(w, m, n, h, undefined, base);
    const dense = l.denseWeight();
    // the stored layer (f16 scales and ranks) reproduces the decomposition's error
    expect(Math.abs(rel(dense) - d.error)).toBeLessThan(0.02 * d.error);
    const ops = new Ops(new JsBackend());
    const x = Float32Array.from({ length: 3 * n }, (_, i) => Math.sin(i));
    const y = await ops.tidy(async () => ops.readF32(await l.forward(ops, ops.upload(x, [3, n]))));
    for (let t = 0; t < 3; t++)
      for (let o = 0; o < m; o++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += x[t * n + i]! * dense[o * n + i]!;
        expect(y[t * m + o]!).toBeCloseTo(s, 4);
      }
    const ldlqAlone = rel(dequantize(ldlq(Float64Array.from(w), m, n, h, { bits: 2, groupSize: 0 })));
    const rtnAlone = rel(dequantize(rtn(Float64Array.from(w), m, n, { bits: 2, groupSize: 0 })));
    const noHadamard = (await calderaLayer(w, m, n, h, undefined, { ...base, hadamard: false })).decomposition
      .error;
    console.log(
      `${layer}: CALDERA 2+4 rank 4 ${d.error.toFixed(4)} (no Hadamard ${noHadamard.toFixed(4)}); LDLQ-2 ${ldlqAlone.toFixed(4)}; RTN-2 ${rtnAlone.toFixed(4)}; per Q step ${d.steps
        .filter((s) => s.step === 'Q')
        .map((s) => s.error.toFixed(4))
        .join(' ')}`,
    );
    expect(d.error).toBeLessThan(ldlqAlone);
    expect(d.error).toBeLessThan(rtnAlone);
    // bits: Q 2 bits + rank 3 at 4 bits + rank 1 at 16 bits + 5 scales + signs, over 64·64 weights
    const bits = (l.stats().bytes * 8) / (m * n);
    expect(bits).toBeCloseTo((m * n * 2 + 3 * (m + n) * 4 + (m + n) * 16 + 7 * 16 + (m + n)) / (m * n), 6);
  });

  it('bad input: a Hessian not positive definite even after damping names the layer', async () => {
    const bad = new Float64Array(n * n).fill(Number.NaN);
    await expect(calderaLayer(w, m, n, bad, undefined, base)).rejects.toThrow(LineageError);
    await expect(calderaLayer(w, m, n, bad, undefined, base)).rejects.toThrow(
      /Hessian of 'model.layers.3.self_attn.q_proj'/,
    );
    await expect(calderaLayer(w, m, n, h, undefined, { ...base, ftRank: 5 })).rejects.toThrow(
      /ftRank 5 exceeds rank 4/,
    );
  });
});
