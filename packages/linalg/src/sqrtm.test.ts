import { describe, expect, it } from 'vitest';
import { matmul64 } from './gemm.js';
import { frobeniusNorm, identity64, type Matrix64, matrix64 } from './matrix.js';
import { invSqrtSymmetric, sqrtSymmetric, symmetricRoots } from './sqrtm.js';
import { gaussian, orthonormal, scaleColumnsTimesT } from './test-helpers.js';

/** XᵀX for X (n + 10)×n Gaussian with correlated columns, plus a ridge of 0.1·n (condition about 10³–10⁴). */
function spd(n: number, seed: number): Matrix64 {
  const x = matmul64(gaussian(n + 10, n, seed), gaussian(n, n, seed + 1));
  const h = matmul64(x, x, { transA: true });
  for (let i = 0; i < n; i++) h.data[i * n + i]! += 0.1 * n;
  return h;
}

function relDiff(a: Matrix64, b: Matrix64): number {
  const d = matrix64(a.rows, a.cols);
  for (let i = 0; i < d.data.length; i++) d.data[i] = a.data[i]! - b.data[i]!;
  return frobeniusNorm(d) / frobeniusNorm(b);
}

function expectSymmetric(m: Matrix64): void {
  const n = m.rows;
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(m.data[i * n + j]).toBe(m.data[j * n + i]);
}

describe('symmetric square roots', () => {
  for (const n of [1, 5, 64, 150]) {
    it(`S·S = A, S⁻½·A·S⁻½ = I, S·S⁻½ = I (${n}×${n} SPD)`, () => {
      const a = spd(n, n);
      const { sqrt, invSqrt, floored } = symmetricRoots(a);
      expect(floored).toBe(0);
      expectSymmetric(sqrt);
      expectSymmetric(invSqrt);
      expect(relDiff(matmul64(sqrt, sqrt), a)).toBeLessThan(1e-12);
      const I = identity64(n);
      expect(relDiff(matmul64(matmul64(invSqrt, a), invSqrt), I)).toBeLessThan(1e-11);
      expect(relDiff(matmul64(sqrt, invSqrt), I)).toBeLessThan(1e-11);
      // The single-root entry points give the same matrices.
      expect(relDiff(sqrtSymmetric(a), sqrt)).toBeLessThan(1e-15);
      expect(relDiff(invSqrtSymmetric(a), invSqrt)).toBeLessThan(1e-15);
    });
  }

  it('exact on a diagonal matrix; reads only the lower triangle', () => {
    const a = matrix64(3, 3, Float64Array.from([4, 99, 99, 0, 9, 99, 0, 0, 0.25]));
    const s = sqrtSymmetric(a);
    const expected = [2, 0, 0, 0, 3, 0, 0, 0, 0.5];
    for (let i = 0; i < 9; i++) expect(s.data[i]).toBeCloseTo(expected[i]!, 13);
    const r = invSqrtSymmetric(a);
    const inv = [0.5, 0, 0, 0, 1 / 3, 0, 0, 0, 2];
    for (let i = 0; i < 9; i++) expect(r.data[i]).toBeCloseTo(inv[i]!, 13);
  });

  it('ill-conditioned (condition 1e10): S·S = A to 1e-12 relative, S⁻½·A·S⁻½ = I within κ·n·ε', () => {
    const n = 120;
    const s = Array.from({ length: n }, (_, i) => 10 ** (-10 * (i / (n - 1))));
    const U = orthonormal(n, n, 4);
    const a = scaleColumnsTimesT(U, s, U);
    const { sqrt, invSqrt, floored } = symmetricRoots(a);
    expect(floored).toBe(0);
    expect(relDiff(matmul64(sqrt, sqrt), a)).toBeLessThan(1e-12);
    // A^-½·A·A^-½ = I is limited by eigh's absolute eigenvalue error ε·‖A‖ relative to λ_min: about
    // κ·n·ε = 2.7e-4 at worst (1.5e-6 measured).
    expect(relDiff(matmul64(matmul64(invSqrt, a), invSqrt), identity64(n))).toBeLessThan(1e-4);
  });

  it('semidefinite: zero and negative-rounding eigenvalues are raised to the floor, no NaN', () => {
    const n = 50;
    const x = gaussian(30, n, 8); // rank 30
    const a = matmul64(x, x, { transA: true });
    const r = symmetricRoots(a);
    expect(r.floored).toBe(20);
    const top = r.values[n - 1]!;
    for (let i = 0; i < 20; i++) expect(r.values[i]).toBe(n * 2 ** -52 * top);
    expect(r.sqrt.data.every(Number.isFinite) && r.invSqrt.data.every(Number.isFinite)).toBe(true);
    // The floor changes A by at most 20·floor·λmax: S·S still reconstructs A tightly.
    expect(relDiff(matmul64(r.sqrt, r.sqrt), a)).toBeLessThan(1e-12);
    // A larger floor regularises the inverse root (as CALDERA's σ_reg does).
    const reg = symmetricRoots(a, { floor: 1e-2 });
    expect(reg.floored).toBeGreaterThanOrEqual(20);
    let inv2 = 0;
    for (const v of reg.invSqrt.data) inv2 = Math.max(inv2, Math.abs(v));
    expect(inv2).toBeLessThanOrEqual(1 / Math.sqrt(1e-2 * top) + 1e-9);
  });

  it('an indefinite matrix is projected (negative eigenvalues floored), documented behaviour', () => {
    const a = matrix64(2, 2, Float64Array.from([0, 1, 1, 0])); // eigenvalues ±1
    const r = symmetricRoots(a, { floor: 1e-6 });
    expect(r.floored).toBe(1);
    expect(r.values[0]).toBeCloseTo(1e-6, 18);
    expect(r.values[1]).toBeCloseTo(1, 14);
    // sqrt = V·diag(√1e-6, 1)·Vᵀ with V the eigenvectors (1, ∓1)/√2.
    const lo = Math.sqrt(r.values[0]!);
    const expected = [(lo + 1) / 2, (1 - lo) / 2, (1 - lo) / 2, (lo + 1) / 2];
    for (let i = 0; i < 4; i++) expect(r.sqrt.data[i]).toBeCloseTo(expected[i]!, 13);
  });

  it('rejects bad input with one-line errors', () => {
    expect(() => sqrtSymmetric(matrix64(2, 3))).toThrow('sqrtSymmetric: matrix must be square, got 2×3');
    expect(() => invSqrtSymmetric(matrix64(2, 2))).toThrow(
      /^invSqrtSymmetric: matrix has no positive eigenvalue/,
    );
    expect(() => symmetricRoots(identity64(2), { floor: 0 })).toThrow(
      'symmetricRoots: floor must be in (0, 1), got 0',
    );
    expect(() => sqrtSymmetric(matrix64(1, 1, Float64Array.of(Number.NaN)))).toThrow(
      /^sqrtSymmetric: entry \(0, 0\) is not finite/,
    );
  });
});
