import { describe, expect, it } from 'vitest';
import { matmul64 } from './gemm.js';
import { qr } from './qr.js';
import { gaussian, maxAbsDiff, orthogonalityError } from './test-helpers.js';

describe('qr (thin, blocked Householder)', () => {
  for (const [m, n] of [
    [1, 1],
    [1, 5],
    [5, 1],
    [40, 40],
    [300, 70],
    [70, 300],
    [129, 65],
  ] as const) {
    it(`A = Q·R with orthonormal Q and upper-trapezoidal R for ${m}×${n}`, () => {
      const a = gaussian(m, n, m * 31 + n);
      const { Q, R } = qr(a);
      const k = Math.min(m, n);
      expect([Q.rows, Q.cols, R.rows, R.cols]).toEqual([m, k, k, n]);
      expect(orthogonalityError(Q)).toBeLessThan(1e-13);
      for (let i = 0; i < k; i++) for (let j = 0; j < Math.min(i, n); j++) expect(R.data[i * n + j]).toBe(0);
      expect(maxAbsDiff(matmul64(Q, R).data, a.data)).toBeLessThan(1e-12);
    });
  }

  it('handles rank-deficient and zero matrices', () => {
    const a = matmul64(gaussian(50, 3, 1), gaussian(3, 20, 2));
    const { Q, R } = qr(a);
    expect(orthogonalityError(Q)).toBeLessThan(1e-13);
    expect(maxAbsDiff(matmul64(Q, R).data, a.data)).toBeLessThan(1e-12);
    const z = qr({ rows: 10, cols: 4, data: new Float64Array(40) });
    expect(orthogonalityError(z.Q)).toBeLessThan(1e-15);
    expect(Array.from(z.R.data).every((v) => v === 0)).toBe(true);
  });
});
