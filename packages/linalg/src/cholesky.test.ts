import { describe, expect, it } from 'vitest';
import { cholesky } from './cholesky.js';
import { matmul64 } from './gemm.js';
import { type Matrix64, matrix64 } from './matrix.js';
import { gaussian, maxAbsDiff } from './test-helpers.js';

function spd(n: number, seed: number): Matrix64 {
  const x = gaussian(n + 10, n, seed);
  const h = matmul64(x, x, { transA: true });
  for (let i = 0; i < n; i++) h.data[i * n + i]! += 1;
  return h;
}

describe('cholesky', () => {
  for (const n of [1, 3, 64, 65, 150]) {
    it(`A = L·Lᵀ with L lower triangular (${n}×${n})`, () => {
      const a = spd(n, n);
      const L = cholesky(a);
      for (let i = 0; i < n; i++) {
        expect(L.data[i * n + i]!).toBeGreaterThan(0);
        for (let j = i + 1; j < n; j++) expect(L.data[i * n + j]).toBe(0);
      }
      const scale = Math.max(...a.data);
      expect(maxAbsDiff(matmul64(L, L, { transB: true }).data, a.data) / scale).toBeLessThan(1e-14);
    });
  }

  it('reads only the lower triangle', () => {
    const a = spd(20, 2);
    const b = matrix64(20, 20, a.data.slice());
    for (let i = 0; i < 20; i++) for (let j = i + 1; j < 20; j++) b.data[i * 20 + j] = Number.NaN;
    expect(cholesky(b).data).toEqual(cholesky(a).data);
  });

  it('throws a RangeError naming the pivot for a matrix that is not positive definite', () => {
    // Indefinite: eigenvalues 3 and −1; the second pivot is 1 − 4 = −3.
    const a = matrix64(2, 2, Float64Array.from([1, 2, 2, 1]));
    expect(() => cholesky(a)).toThrow(RangeError);
    expect(() => cholesky(a)).toThrow(/not positive definite: pivot 1 is -3/);
    // Singular (rank deficient) Gram matrix beyond the first block.
    const x = gaussian(70, 100, 5);
    const h = matmul64(x, x, { transA: true });
    expect(() => cholesky(h)).toThrow(/not positive definite: pivot \d+/);
    expect(() => cholesky(matrix64(3, 3))).toThrow(/pivot 0 is 0/);
  });

  it('rejects non-square and non-finite input', () => {
    expect(() => cholesky(matrix64(2, 3))).toThrow(/square/);
    const a = spd(4, 1);
    a.data[5] = Number.POSITIVE_INFINITY;
    expect(() => cholesky(a)).toThrow(/not finite/);
  });
});
