import { HostTensor, JsBackend, Ops } from '@lineage/core';
import { describeLayerKind, uniform } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { BASIS_KIND, BasisLinear } from './basis-linear.js';

const t = (shape: number[], seed: number) => new HostTensor('f32', shape, uniform(shape, seed));

/** k pretrained bases and r new ones (A non-zero here, so every trainable parameter has a gradient). */
function make(out: number, inp: number, k: number, r: number, bias: boolean, seed: number): BasisLinear {
  return new BasisLinear(
    t([out, k], seed),
    t([k, inp], seed + 1),
    t([k], seed + 2),
    r ? { A: t([out, r], seed + 3), B: t([r, inp], seed + 4) } : undefined,
    bias ? t([out], seed + 5) : undefined,
  );
}

describeLayerKind(BASIS_KIND, { make: ({ out, in: inp, bias, seed }) => make(out, inp, 3, 2, bias, seed) });
describeLayerKind(BASIS_KIND, {
  label: 'no new bases',
  make: ({ out, in: inp, bias, seed }) => make(out, inp, 4, 0, bias, seed),
});

const maxDiff = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

describe('BasisLinear', () => {
  it('keeps U and V frozen; w, A, B train', () => {
    const l = make(6, 5, 3, 2, false, 1);
    expect([...l.parameters()].map(([k, p]) => [k, p.trainable])).toEqual([
      ['U', false],
      ['w', true],
      ['V', false],
      ['A', true],
      ['B', true],
    ]);
  });

  it('exports the same map as a low_rank layer of rank kept + new', () => {
    const l = make(9, 7, 4, 2, true, 3);
    const lr = l.exportLowRank();
    expect(lr.kind).toBe('low_rank');
    expect(lr.rank).toBe(6);
    expect(maxDiff(lr.denseWeight(), l.denseWeight())).toBeLessThan(1e-5);
    expect([...lr.denseBias()!]).toEqual([...l.denseBias()!]);
    expect(lr.stats().params).toBe(6 * (9 + 7) + 9);
  });

  it('new bases start at zero effect; dropping bases removes their terms', async () => {
    const l = make(8, 6, 5, 0, false, 5);
    const grown = l.withNewBases(3, 11);
    expect(grown.newRank).toBe(3);
    expect(maxDiff(grown.denseWeight(), l.denseWeight())).toBe(0);
    const ops = new Ops(new JsBackend());
    const x = uniform([2, 6], 9);
    const run = (m: BasisLinear) =>
      ops.tidy(async () => ops.readF32(await m.forward(ops, ops.upload(x, [2, 6]))));
    expect(maxDiff(await run(grown), await run(l))).toBe(0);
    // keeping bases [4, 1]: the dense weight is the sum of those two terms only
    const kept = l.keepBases([4, 1]);
    expect(kept.bases).toBe(2);
    const U = l.U.value.toF32();
    const V = l.V.value.toF32();
    const s = l.coefficients();
    const want = new Float32Array(8 * 6);
    for (let i = 0; i < 8; i++)
      for (let c = 0; c < 6; c++)
        want[i * 6 + c] = [4, 1].reduce((acc, j) => acc + U[i * 5 + j]! * s[j]! * V[j * 6 + c]!, 0);
    expect(maxDiff(kept.denseWeight(), want)).toBeLessThan(1e-6);
  });
});
