import { describe, expect, it } from 'vitest';
import { bidiagonalSvd } from './bidiagonal-svd.js';
import { matrix64 } from './matrix.js';
import { Rng } from './random.js';
import { secularDiff, solveSecular } from './secular.js';
import { orthogonalityError, reconstructionError } from './test-helpers.js';

function bidiagonal(d: ArrayLike<number>, e: ArrayLike<number>) {
  const n = d.length;
  const b = matrix64(n, n);
  for (let i = 0; i < n; i++) {
    b.data[i * n + i] = d[i]!;
    if (i + 1 < n) b.data[i * n + i + 1] = e[i]!;
  }
  return b;
}

function check(d: Float64Array, e: Float64Array, tol = 1e-12) {
  const n = d.length;
  const r = bidiagonalSvd(d, e);
  const U = matrix64(n, n, r.U!);
  const V = matrix64(n, n, r.V);
  expect(reconstructionError(bidiagonal(d, e), U, r.sigma, V)).toBeLessThan(tol);
  expect(orthogonalityError(U)).toBeLessThan(tol);
  expect(orthogonalityError(V)).toBeLessThan(tol);
  for (let i = 1; i < n; i++) expect(r.sigma[i]!).toBeLessThanOrEqual(r.sigma[i - 1]!);
  // Without U, V comes out the same.
  const vOnly = bidiagonalSvd(d, e, false);
  expect(vOnly.U).toBeUndefined();
  expect(Array.from(vOnly.sigma)).toEqual(Array.from(r.sigma));
  return r;
}

describe('bidiagonalSvd (divide and conquer)', () => {
  const rng = new Rng(77);
  const rand = (n: number) => Float64Array.from({ length: n }, () => rng.normal());

  it('solves random bidiagonals of many sizes (leaf only, one and several merges)', () => {
    for (const n of [1, 2, 5, 12, 13, 25, 26, 200, 333]) check(rand(n), rand(Math.max(0, n - 1)));
  });

  it('handles zeros on the diagonal and the superdiagonal (splits, exact zero singular values)', () => {
    const n = 120;
    const d = rand(n);
    const e = rand(n - 1);
    for (let i = 0; i < n; i += 7) d[i] = 0;
    for (let i = 3; i < n - 1; i += 11) e[i] = 0;
    const r = check(d, e);
    expect(r.sigma[n - 1]!).toBeLessThan(1e-12);
  });

  it('handles heavy deflation: identity, repeated values, tiny couplings', () => {
    check(new Float64Array(100).fill(1), new Float64Array(99));
    check(new Float64Array(100).fill(2), new Float64Array(99).fill(1e-20));
    const d = Float64Array.from({ length: 150 }, (_, i) => 1 + (i % 3));
    check(d, new Float64Array(149).fill(1e-9));
  });

  it('handles a graded bidiagonal (entries from 1 to 1e-200)', () => {
    const n = 90;
    const d = Float64Array.from({ length: n }, (_, i) => 10 ** (-200 * (i / n)));
    const e = Float64Array.from({ length: n - 1 }, (_, i) => 0.5 * 10 ** (-200 * (i / n)));
    check(d, e);
  });

  it('handles the all-zero bidiagonal', () => {
    const r = check(new Float64Array(60), new Float64Array(59));
    expect(Array.from(r.sigma).every((s) => s === 0)).toBe(true);
  });
});

describe('solveSecular', () => {
  it('finds interlacing roots of 1 + Σ z²/(d² − σ²) = 0', () => {
    const d = Float64Array.from([0, 0.1, 0.5, 0.51, 2, 7]);
    const z = Float64Array.from([0.3, -0.2, 1e-3, 0.8, 0.05, 1.5]);
    const r = solveSecular(d, z, d.length);
    for (let i = 0; i < d.length; i++) {
      const s = r.sigma[i]!;
      expect(s).toBeGreaterThan(d[i]!);
      if (i + 1 < d.length) expect(s).toBeLessThan(d[i + 1]!);
      let f = 1;
      let scale = 1;
      for (let j = 0; j < d.length; j++) {
        // dⱼ² − σᵢ² from the root's accurate representation (origin pole + shift).
        const t = (z[j]! * z[j]!) / secularDiff(d, r, i, j);
        f += t;
        scale += Math.abs(t);
      }
      expect(Math.abs(f) / scale).toBeLessThan(1e-13);
    }
  });
});
