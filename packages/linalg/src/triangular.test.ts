import { describe, expect, it } from 'vitest';
import { matmul64 } from './gemm.js';
import { identity64, type Matrix64, matrix64 } from './matrix.js';
import { gaussian, maxAbsDiff } from './test-helpers.js';
import { invertTriangular, solveTriangular } from './triangular.js';

/** A well-conditioned triangular matrix (unit-ish diagonal, small off-diagonal); garbage in the other triangle. */
function triangular(n: number, lower: boolean, seed: number): { stored: Matrix64; clean: Matrix64 } {
  const g = gaussian(n, n, seed);
  const stored = matrix64(n, n);
  const clean = matrix64(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const inTri = lower ? j <= i : j >= i;
      const v = i === j ? 2 + Math.abs(g.data[i * n + j]!) : g.data[i * n + j]! / Math.sqrt(n);
      stored.data[i * n + j] = inTri ? v : 1e3;
      if (inTri) clean.data[i * n + j] = v;
    }
  }
  return { stored, clean };
}

describe('solveTriangular', () => {
  for (const n of [1, 5, 64, 150]) {
    for (const lower of [true, false]) {
      for (const trans of [false, true]) {
        for (const side of ['left', 'right'] as const) {
          it(`${side}, ${lower ? 'lower' : 'upper'}${trans ? ', transposed' : ''}, n = ${n}`, () => {
            const { stored, clean } = triangular(n, lower, n + (lower ? 1 : 2) + (trans ? 4 : 8));
            const b = side === 'left' ? gaussian(n, 7, 3) : gaussian(7, n, 3);
            const x = solveTriangular(stored, b, { lower, trans, side });
            const back =
              side === 'left' ? matmul64(clean, x, { transA: trans }) : matmul64(x, clean, { transB: trans });
            expect(maxAbsDiff(back.data, b.data)).toBeLessThan(1e-12);
          });
        }
      }
    }
  }

  it('throws a RangeError naming a zero diagonal entry', () => {
    const l = matrix64(3, 3, Float64Array.from([1, 0, 0, 2, 0, 0, 1, 1, 1]));
    expect(() => solveTriangular(l, identity64(3), { lower: true })).toThrow(/diagonal entry 1 is zero/);
  });

  it('rejects mismatched shapes', () => {
    expect(() => solveTriangular(identity64(3), matrix64(4, 2), { lower: true })).toThrow(
      /4 rows, expected 3/,
    );
    expect(() => solveTriangular(identity64(3), matrix64(2, 4), { lower: true, side: 'right' })).toThrow(
      /4 columns/,
    );
  });

  it('invertTriangular gives L·L⁻¹ = I', () => {
    for (const lower of [true, false]) {
      const { stored, clean } = triangular(90, lower, 5);
      const inv = invertTriangular(stored, lower);
      expect(maxAbsDiff(matmul64(clean, inv).data, identity64(90).data)).toBeLessThan(1e-12);
    }
  });
});
