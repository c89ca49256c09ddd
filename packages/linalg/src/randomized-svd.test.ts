import { createJsBackend, Ops } from '@lineage/core';
import { describe, expect, it } from 'vitest';
import { randomizedSvd } from './randomized-svd.js';
import { svd, truncationError } from './svd.js';
import { gaussian, orthogonalityError, reconstructionError, withSpectrum } from './test-helpers.js';

/** σᵢ = 0.85^i plus a flat noise floor: decaying, but the tail is not negligible. */
function decaying(m: number, n: number, seed: number) {
  const k = Math.min(m, n);
  const s = Array.from({ length: k }, (_, i) => 0.85 ** i + 1e-3);
  return { a: withSpectrum(m, n, s, seed), s };
}

function optimal(s: number[], k: number): number {
  return Math.sqrt(s.slice(k).reduce((acc, v) => acc + v * v, 0));
}

function relativeError(a: ReturnType<typeof decaying>['a'], r: Awaited<ReturnType<typeof randomizedSvd>>) {
  // ‖A − U·S·Vᵀ‖_F (absolute): reconstructionError is relative to ‖A‖_F.
  let an = 0;
  for (const v of a.data) an += v * v;
  return reconstructionError(a, r.U, r.S, r.V) * Math.sqrt(an);
}

describe('randomizedSvd', () => {
  it('is within 1% of the optimal rank-k error with 2 power iterations (host, float64)', async () => {
    for (const [m, n, k] of [
      [300, 200, 20],
      [150, 400, 10],
      [500, 120, 30],
    ] as const) {
      const { a, s } = decaying(m, n, m + n);
      const r = await randomizedSvd(a, k, { seed: 1 });
      expect([r.U.rows, r.U.cols, r.V.rows, r.V.cols, r.S.length]).toEqual([m, k, n, k, k]);
      expect(orthogonalityError(r.U)).toBeLessThan(1e-12);
      expect(orthogonalityError(r.V)).toBeLessThan(1e-12);
      expect(relativeError(a, r) / optimal(s, k)).toBeLessThan(1.01);
      for (let i = 0; i < k; i++) expect(Math.abs(r.S[i]! - s[i]!) / s[0]!).toBeLessThan(1e-3);
    }
  });

  it('is within 1% of the optimal error with the big products on the js backend (f32)', async () => {
    const ops = new Ops(await createJsBackend());
    const { a, s } = decaying(260, 180, 9);
    const r = await randomizedSvd(a, 16, { ops, seed: 2 });
    expect(orthogonalityError(r.U)).toBeLessThan(1e-12);
    expect(orthogonalityError(r.V)).toBeLessThan(1e-12);
    expect(relativeError(a, r) / optimal(s, 16)).toBeLessThan(1.01);
  });

  it('matches the exact SVD when the spectrum is exactly low rank', async () => {
    const s = [5, 4, 3, 2, 1];
    const a = withSpectrum(80, 60, s, 4);
    const r = await randomizedSvd(a, 5, { powerIterations: 0 });
    for (let i = 0; i < 5; i++) expect(r.S[i]).toBeCloseTo(s[i]!, 10);
    expect(reconstructionError(a, r.U, r.S, r.V)).toBeLessThan(1e-10);
  });

  it('is reproducible for a seed, and falls back to the exact SVD when k + p ≥ min(m, n)', async () => {
    const a = gaussian(40, 30, 1);
    const r1 = await randomizedSvd(a, 5, { seed: 3 });
    const r2 = await randomizedSvd(a, 5, { seed: 3 });
    expect(Array.from(r1.S)).toEqual(Array.from(r2.S));
    const full = await randomizedSvd(a, 25);
    const exact = svd(a);
    expect(Array.from(full.S)).toEqual(Array.from(exact.S.subarray(0, 25)));
    expect(truncationError(exact.S, 25)).toBeGreaterThan(0);
  });

  it('reports progress up to 1 and validates its arguments', async () => {
    const seen: number[] = [];
    await randomizedSvd(gaussian(100, 80, 2), 8, { onProgress: (f) => seen.push(f) });
    expect(seen[seen.length - 1]).toBe(1);
    await expect(randomizedSvd(gaussian(5, 5, 1), -1)).rejects.toThrow(RangeError);
    await expect(randomizedSvd(gaussian(5, 5, 1), 2, { oversample: 1.5 })).rejects.toThrow(/oversample/);
    const zero = await randomizedSvd(gaussian(6, 4, 1), 0);
    expect([zero.U.cols, zero.S.length, zero.V.cols]).toEqual([0, 0, 0]);
  });
});
