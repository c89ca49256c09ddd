import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import { JsBackend, LineageError, loadModel, namedParameters } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { gaussian64, matmul64 } from '@lineage/linalg';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CalderaStep, calderaDecompose } from './decompose.js';
import { lQuantizer, qQuantizer, rQuantizer } from './quantizers.js';

/** √(tr(ΔHΔᵀ)/tr(WHWᵀ)) of an approximation of w. */
function relError(w: Float64Array, approx: Float64Array, h: Float64Array, m: number, n: number): number {
  const t = (d: Float64Array) => {
    let s = 0;
    for (let r = 0; r < m; r++)
      for (let i = 0; i < n; i++) {
        let hi = 0;
        for (let j = 0; j < n; j++) hi += h[i * n + j]! * d[r * n + j]!;
        s += d[r * n + i]! * hi;
      }
    return s;
  };
  return Math.sqrt(t(w.map((v, i) => v - approx[i]!)) / t(w));
}

describe('calderaDecompose on a synthetic layer', () => {
  const m = 24;
  const n = 32;
  // a low-rank-plus-noise weight and a correlated, ill-conditioned Hessian
  const w = matmul64(gaussian64(m, 3, 1), gaussian64(3, n, 2)).data.map((v, i) => 3 * v + Math.sin(i));
  const x = gaussian64(200, n, 3);
  for (let t = 0; t < 200; t++) for (let j = 0; j < n; j++) x.data[t * n + j]! *= 1 + j / 4;
  const h = matmul64(x, x, { transA: true }).data;

  it('reconstructs scale·(Q + L·R), records every step and keeps the best; unquantized factors are the weighted SVD', async () => {
    const steps: CalderaStep[] = [];
    const d = await calderaDecompose(w, m, n, h, {
      rank: 3,
      outerIters: 4,
      lplrIters: 3,
      quantizeQ: qQuantizer(2),
      quantizeL: lQuantizer(4),
      quantizeR: rQuantizer(4),
      onStep: (s) => steps.push(s),
    });
    expect(d.steps).toEqual(steps);
    expect(steps.map((s) => s.step)).toEqual(['LR', 'Q', 'LR', 'Q', 'LR', 'Q', 'LR', 'Q']);
    expect(d.error).toBe(Math.min(...steps.slice(1).map((s) => s.error)));
    const lr = matmul64({ rows: m, cols: 3, data: d.L.values }, { rows: 3, cols: n, data: d.R.values });
    const approx = d.Q.values.map((q, i) => d.scale * (q + lr.data[i]!));
    // the recorded error is the weighted error against the regularised H (here a 1% load changes little)
    expect(relError(w, approx, h, m, n)).toBeCloseTo(d.error, 1);
    expect(d.L.payload?.grid.bits).toBe(4);

    // 16-bit factors: the rank-3 part of the weight is found exactly, so the error is Q's alone, small
    const f = await calderaDecompose(w, m, n, h, {
      rank: 3,
      outerIters: 2,
      lplrIters: 1,
      quantizeQ: qQuantizer(8),
    });
    expect(f.L.payload).toBeUndefined();
    expect(f.error).toBeLessThan(0.02);
  });

  it('refuses a rank outside the layer and a Hessian of the wrong size, naming the layer', async () => {
    const o = {
      rank: 40,
      outerIters: 1,
      lplrIters: 1,
      quantizeQ: qQuantizer(2),
      name: 'model.layers.0.mlp.up_proj',
    };
    await expect(calderaDecompose(w, m, n, h, o)).rejects.toThrow(
      /'model.layers.0.mlp.up_proj': rank 40 is outside 1..24/,
    );
    await expect(calderaDecompose(w, m, n, h.subarray(1), { ...o, rank: 2 })).rejects.toThrow(LineageError);
    await expect(calderaDecompose(w, m, n, new Float64Array(n * n), { ...o, rank: 2 })).rejects.toThrow(
      /Hessian of 'model.layers.0.mlp.up_proj' is empty/,
    );
  });
});

describe('calderaDecompose on stories260K with its calibration Hessian', () => {
  const layer = 'model.layers.2.mlp.up_proj'; // 172×64
  let w: Float64Array;
  let h: Float64Array;
  let m: number;
  let n: number;
  beforeAll(async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const ds = await loadDataset(sharedPath('data', 'tinystories', 'train-head.txt'));
    const sample = sampleSequences(ds, model.tokenizer!, { samples: 16, seqLen: 128, seed: 3 });
    const stats = await computeStats(model, new JsBackend(), sample, { statistics: ['hessian'] });
    h = Float64Array.from(await stats.hessian(layer));
    await stats.close();
    const t = namedParameters(model).get(`${layer}.weight`)!.value;
    [m, n] = [t.shape[0]!, t.shape[1]!];
    w = Float64Array.from(t.toF32());
  }, 300_000);

  it('the error falls across iterations and beats LDLQ alone at the same bits for Q', async () => {
    const d = await calderaDecompose(w, m, n, h, {
      rank: 4,
      outerIters: 8,
      lplrIters: 5,
      quantizeQ: qQuantizer(2),
      quantizeL: lQuantizer(4),
      quantizeR: rQuantizer(4),
      name: layer,
    });
    const q = d.steps.filter((s) => s.step === 'Q').map((s) => s.error);
    expect(d.error).toBeLessThan(q[0]!);
    expect(q.at(-1)!).toBeLessThan(q[0]!);
    // LDLQ alone, same grid (one scale, RMS-fitted), same scaling
    const ldlqAlone = qQuantizer(2)(
      w.map((v) => v / d.scale),
      m,
      n,
      h,
    ).values.map((v) => v * d.scale);
    const alone = relError(w, ldlqAlone, h, m, n);
    console.log(
      `${layer}: LDLQ-2 alone ${alone.toFixed(4)}; CALDERA per Q step ${q.map((e) => e.toFixed(4)).join(' ')}`,
    );
    expect(d.error).toBeLessThan(0.95 * alone);
  });
});
