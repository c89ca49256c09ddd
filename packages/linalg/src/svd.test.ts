import { afterEach, describe, expect, it } from 'vitest';
import { eigh } from './eigh.js';
import { forceGemmKernel, matmul64 } from './gemm.js';
import { type Matrix64, matrix64 } from './matrix.js';
import { svd, truncationError } from './svd.js';
import {
  gaussian,
  orthogonalityError,
  reconstructionError,
  scaleColumnsTimesT,
  withSpectrum,
} from './test-helpers.js';

afterEach(() => forceGemmKernel(undefined));

function expectValidSvd(a: Matrix64, tol = 1e-10) {
  const { U, S, V } = svd(a);
  const k = Math.min(a.rows, a.cols);
  expect([U.rows, U.cols, V.rows, V.cols, S.length]).toEqual([a.rows, k, a.cols, k, k]);
  for (let i = 0; i < k; i++) {
    expect(S[i]).toBeGreaterThanOrEqual(0);
    if (i > 0) expect(S[i]).toBeLessThanOrEqual(S[i - 1]!);
  }
  expect(reconstructionError(a, U, S, V)).toBeLessThan(tol);
  expect(orthogonalityError(U)).toBeLessThan(tol);
  expect(orthogonalityError(V)).toBeLessThan(tol);
  return { U, S, V };
}

describe('svd (exact, float64)', () => {
  const shapes: [string, number, number][] = [
    ['1×1', 1, 1],
    ['1×N', 1, 9],
    ['N×1', 9, 1],
    ['tiny square', 3, 3],
    ['square below the leaf size', 10, 10],
    ['square, one merge', 20, 20],
    ['square, several merge levels', 150, 150],
    ['tall, bidiagonalised directly', 140, 100],
    ['tall, QR first', 400, 90],
    ['wide', 70, 230],
    ['odd sizes', 97, 61],
  ];
  for (const [name, m, n] of shapes) {
    it(`reconstructs a random ${name} (${m}×${n}) matrix with orthonormal U, V`, () => {
      expectValidSvd(gaussian(m, n, m * 1000 + n));
    });
  }

  it('handles the all-zero matrix: S = 0, U and V still orthonormal', () => {
    for (const [m, n] of [
      [30, 20],
      [20, 30],
      [1, 1],
      [64, 64],
    ] as const) {
      const { S } = expectValidSvd(matrix64(m, n));
      expect(Array.from(S).every((s) => s === 0)).toBe(true);
    }
  });

  it('handles rank-deficient matrices: exact zeros beyond the rank, vectors still orthonormal', () => {
    const a = matmul64(gaussian(120, 7, 11), gaussian(7, 90, 12));
    const { S } = expectValidSvd(a);
    expect(S[6]!).toBeGreaterThan(1);
    for (let i = 7; i < S.length; i++) expect(S[i]! / S[0]!).toBeLessThan(1e-13);
  });

  it('handles repeated singular values (deflation)', () => {
    const s = Array.from({ length: 80 }, (_, i) => [3, 3, 3, 1, 1, 0.5][i % 6]!);
    const a = withSpectrum(100, 80, s, 5);
    const { S } = expectValidSvd(a);
    const sorted = [...s].sort((x, y) => y - x);
    for (let i = 0; i < 80; i++) expect(S[i]).toBeCloseTo(sorted[i]!, 12);
  });

  it('handles a graded spectrum (σ from 1 down to 1e-12) and recovers it', () => {
    const n = 120;
    const s = Array.from({ length: n }, (_, i) => 10 ** (-12 * (i / (n - 1))));
    const a = withSpectrum(n, n, s, 21);
    const { S } = expectValidSvd(a);
    for (let i = 0; i < n; i++) expect(Math.abs(S[i]! - s[i]!)).toBeLessThan(1e-14);
  });

  it('handles badly scaled matrices (entries near 1e-300 and 1e+300, and mixed row scales)', () => {
    for (const c of [1e-300, 1e300]) {
      const a = gaussian(60, 40, 3);
      for (let i = 0; i < a.data.length; i++) a.data[i]! *= c;
      const { S } = expectValidSvd(a);
      const ref = svd(gaussian(60, 40, 3)).S;
      for (let i = 0; i < S.length; i++) expect(S[i]! / c).toBeCloseTo(ref[i]!, 10);
    }
    const b = gaussian(50, 50, 4);
    for (let i = 0; i < 50; i++) for (let j = 0; j < 50; j++) b.data[i * 50 + j]! *= 10 ** ((i % 10) - 5);
    expectValidSvd(b);
  });

  it('singular values agree with the eigenvalues of AᵀA on a well-conditioned matrix', () => {
    const a = gaussian(90, 60, 8);
    const { S } = svd(a);
    const { values } = eigh(matmul64(a, a, { transA: true }));
    for (let i = 0; i < 60; i++) {
      expect(Math.abs(S[i]! ** 2 - values[59 - i]!) / S[0]! ** 2).toBeLessThan(1e-12);
    }
  });

  it('truncation at rank k leaves exactly the discarded energy (Eckart–Young)', () => {
    const s = Array.from({ length: 70 }, (_, i) => 0.9 ** i);
    const a = withSpectrum(110, 70, s, 31);
    const { U, S, V } = svd(a);
    for (const k of [1, 5, 20, 50]) {
      const ak = scaleColumnsTimesT({ rows: U.rows, cols: k, data: takeColumns(U, k) }, S.subarray(0, k), {
        rows: V.rows,
        cols: k,
        data: takeColumns(V, k),
      });
      let err2 = 0;
      for (let i = 0; i < a.data.length; i++) err2 += (a.data[i]! - ak.data[i]!) ** 2;
      let tail = 0;
      for (let i = k; i < S.length; i++) tail += S[i]! ** 2;
      expect(Math.abs(err2 - tail) / tail).toBeLessThan(1e-6);
      expect(Math.abs(truncationError(S, k) ** 2 - tail) / tail).toBeLessThan(1e-12);
    }
  });

  it('runs the same on the JS kernels (no wasm)', () => {
    forceGemmKernel('js');
    expectValidSvd(gaussian(130, 110, 41));
  });

  it('reports progress from 0 to 1, monotonically', () => {
    const seen: number[] = [];
    svd(gaussian(200, 120, 9), { onProgress: (f) => seen.push(f) });
    expect(seen.length).toBeGreaterThan(5);
    expect(seen[seen.length - 1]).toBe(1);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!);
    expect(Math.max(...seen)).toBeLessThanOrEqual(1);
  });

  it('rejects non-finite entries', () => {
    const a = gaussian(5, 4, 1);
    a.data[6] = Number.NaN;
    expect(() => svd(a)).toThrow(RangeError);
    a.data[6] = Number.POSITIVE_INFINITY;
    expect(() => svd(a)).toThrow(/not finite/);
  });

  it('does not modify its input', () => {
    const a = gaussian(40, 30, 2);
    const copy = a.data.slice();
    svd(a);
    expect(a.data).toEqual(copy);
  });
});

function takeColumns(m: Matrix64, k: number): Float64Array {
  const out = new Float64Array(m.rows * k);
  for (let i = 0; i < m.rows; i++) out.set(m.data.subarray(i * m.cols, i * m.cols + k), i * k);
  return out;
}
