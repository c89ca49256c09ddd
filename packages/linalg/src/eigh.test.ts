import { describe, expect, it } from 'vitest';
import { eigh } from './eigh.js';
import { matmul64 } from './gemm.js';
import { type Matrix64, matrix64 } from './matrix.js';
import { gaussian, orthogonalityError, withSpectrum } from './test-helpers.js';

function symmetric(n: number, seed: number): Matrix64 {
  const g = gaussian(n, n, seed);
  const a = matrix64(n, n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) a.data[i * n + j] = g.data[i * n + j]! + g.data[j * n + i]!;
  return a;
}

/** ‖A·V − V·Λ‖_F / ‖A‖_F */
function residual(a: Matrix64, values: Float64Array, V: Matrix64): number {
  const av = matmul64(a, V);
  let num = 0;
  let den = 0;
  const n = a.rows;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      num += (av.data[i * n + j]! - V.data[i * n + j]! * values[j]!) ** 2;
      den += a.data[i * n + j]! ** 2;
    }
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

describe('eigh (symmetric eigendecomposition)', () => {
  for (const n of [1, 2, 7, 33, 100, 181]) {
    it(`A·V = V·Λ with orthonormal V and ascending Λ for a random symmetric ${n}×${n}`, () => {
      const a = symmetric(n, n);
      const { values, vectors } = eigh(a);
      expect(values.length).toBe(n);
      for (let i = 1; i < n; i++) expect(values[i]!).toBeGreaterThanOrEqual(values[i - 1]!);
      expect(residual(a, values, vectors)).toBeLessThan(1e-12);
      expect(orthogonalityError(vectors)).toBeLessThan(1e-12);
    });
  }

  it('recovers a known spectrum, including negative, repeated and zero eigenvalues', () => {
    const lam = [-5, -5, -1e-3, 0, 0, 0, 2, 2, 2, 9];
    const n = lam.length;
    const Q = withSpectrum(n, n, new Array(n).fill(1), 3); // a random orthogonal matrix
    const a = matmul64(
      matmul64(
        Q,
        matrix64(
          n,
          n,
          Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? lam[i / (n + 1)]! : 0)),
        ),
      ),
      Q,
      { transB: true },
    );
    const { values, vectors } = eigh(a);
    for (let i = 0; i < n; i++) expect(Math.abs(values[i]! - lam[i]!)).toBeLessThan(1e-13 * 9);
    expect(residual(a, values, vectors)).toBeLessThan(1e-13);
    expect(orthogonalityError(vectors)).toBeLessThan(1e-13);
  });

  it('diagonalises a Gram matrix XᵀX (positive semidefinite, rank deficient)', () => {
    const x = gaussian(20, 60, 4);
    const h = matmul64(x, x, { transA: true });
    const { values, vectors } = eigh(h);
    expect(residual(h, values, vectors)).toBeLessThan(1e-12);
    for (let i = 0; i < 40; i++) expect(Math.abs(values[i]!) / values[59]!).toBeLessThan(1e-13);
    expect(values[40]! / values[59]!).toBeGreaterThan(1e-6);
  });

  it('reads only the lower triangle', () => {
    const a = symmetric(30, 5);
    const b = matrix64(30, 30, a.data.slice());
    for (let i = 0; i < 30; i++) for (let j = i + 1; j < 30; j++) b.data[i * 30 + j] = 1e6;
    expect(Array.from(eigh(b).values)).toEqual(Array.from(eigh(a).values));
  });

  it('handles zero, diagonal and badly scaled matrices', () => {
    const z = eigh(matrix64(12, 12));
    expect(Array.from(z.values).every((v) => v === 0)).toBe(true);
    expect(orthogonalityError(z.vectors)).toBe(0);
    const d = matrix64(4, 4, Float64Array.from([3, 0, 0, 0, 0, -1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0.5]));
    expect(Array.from(eigh(d).values).map((v) => Number(v.toFixed(12)))).toEqual([-1, 0.5, 2, 3]);
    for (const c of [1e-280, 1e280]) {
      const a = symmetric(25, 6);
      const ref = eigh(a).values;
      for (let i = 0; i < a.data.length; i++) a.data[i]! *= c;
      const { values, vectors } = eigh(a);
      for (let i = 0; i < 25; i++)
        expect(Math.abs(values[i]! / c - ref[i]!)).toBeLessThan(1e-12 * Math.abs(ref[24]!));
      expect(orthogonalityError(vectors)).toBeLessThan(1e-12);
    }
  });

  it('rejects non-square input', () => {
    expect(() => eigh(matrix64(3, 4))).toThrow(/square/);
  });
});
