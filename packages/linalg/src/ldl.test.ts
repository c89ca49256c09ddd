import { describe, expect, it } from 'vitest';
import { cholesky } from './cholesky.js';
import { matmul64 } from './gemm.js';
import { ldl } from './ldl.js';
import { frobeniusNorm, type Matrix64, matrix64 } from './matrix.js';
import { gaussian, orthonormal, scaleColumnsTimesT } from './test-helpers.js';

/** XᵀX for X (n + 10)×n Gaussian with correlated columns (a mixing matrix), plus a small ridge. */
function spd(n: number, seed: number): Matrix64 {
  const x = matmul64(gaussian(n + 10, n, seed), gaussian(n, n, seed + 1));
  const h = matmul64(x, x, { transA: true });
  for (let i = 0; i < n; i++) h.data[i * n + i]! += 1e-3 * n;
  return h;
}

function blockDiagonal(D: Matrix64[], n: number): Matrix64 {
  const out = matrix64(n, n);
  let o = 0;
  for (const d of D) {
    for (let i = 0; i < d.rows; i++)
      for (let j = 0; j < d.cols; j++) out.data[(o + i) * n + o + j] = d.data[i * d.cols + j]!;
    o += d.rows;
  }
  expect(o).toBe(n);
  return out;
}

function relDiff(a: Matrix64, b: Matrix64): number {
  const d = matrix64(a.rows, a.cols);
  for (let i = 0; i < d.data.length; i++) d.data[i] = a.data[i]! - b.data[i]!;
  return frobeniusNorm(d) / frobeniusNorm(b);
}

function reconstruct(L: Matrix64, D: Matrix64[]): Matrix64 {
  const n = L.rows;
  return matmul64(matmul64(L, blockDiagonal(D, n)), L, { transB: true });
}

/** L is unit lower block-triangular: identity diagonal blocks, zeros above them. */
function expectBlockUnitLower(L: Matrix64, b: number): void {
  const n = L.rows;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      const bi = Math.floor(i / b);
      const bj = Math.floor(j / b);
      const v = L.data[i * n + j]!;
      if (bj > bi) expect(v).toBe(0);
      else if (bj === bi) expect(v).toBe(i === j ? 1 : 0);
    }
}

/** The textbook scalar recurrence, column by column (an independent reference). */
function naiveLdl(h: Matrix64): { L: Matrix64; d: Float64Array } {
  const n = h.rows;
  const L = matrix64(n, n);
  const d = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s = h.data[j * n + j]!;
    for (let k = 0; k < j; k++) s -= L.data[j * n + k]! ** 2 * d[k]!;
    d[j] = s;
    L.data[j * n + j] = 1;
    for (let i = j + 1; i < n; i++) {
      let t = h.data[i * n + j]!;
      for (let k = 0; k < j; k++) t -= L.data[i * n + k]! * L.data[j * n + k]! * d[k]!;
      L.data[i * n + j] = t / s;
    }
  }
  return { L, d };
}

describe('ldl', () => {
  for (const [n, block] of [
    [1, 1],
    [7, 1],
    [65, 1],
    [200, 1],
    [64, 8],
    [203, 8],
    [130, 128],
    [300, 128],
    [9, 16],
  ] as const) {
    it(`H = L·D·Lᵀ to 1e-10 (${n}×${n}, block ${block})`, () => {
      const h = spd(n, n + block);
      const { L, D, shift } = ldl(h, { block });
      expect(shift).toBe(0);
      expect(D.length).toBe(Math.ceil(n / block));
      expect(D.at(-1)!.rows).toBe(n - (D.length - 1) * block);
      expectBlockUnitLower(L, block);
      expect(relDiff(reconstruct(L, D), h)).toBeLessThan(1e-10);
      for (const d of D) {
        // Each D_k is symmetric positive definite (its own Cholesky succeeds).
        for (let i = 0; i < d.rows; i++)
          for (let j = 0; j < i; j++) expect(d.data[i * d.cols + j]).toBe(d.data[j * d.cols + i]);
        expect(() => cholesky(d)).not.toThrow();
      }
    });
  }

  it('agrees with Cholesky (D = diag(C)², L = C·diag(C)⁻¹) and with the textbook recurrence', () => {
    const n = 90;
    const h = spd(n, 3);
    const C = cholesky(h);
    const { L, D } = ldl(h);
    const ref = naiveLdl(h);
    for (let j = 0; j < n; j++) {
      const c = C.data[j * n + j]!;
      expect(Math.abs(D[j]!.data[0]! - c * c) / (c * c)).toBeLessThan(1e-13);
      expect(Math.abs(D[j]!.data[0]! - ref.d[j]!) / ref.d[j]!).toBeLessThan(1e-9);
      for (let i = j; i < n; i++) {
        expect(L.data[i * n + j]!).toBeCloseTo(C.data[i * n + j]! / c, 12);
        expect(L.data[i * n + j]!).toBeCloseTo(ref.L.data[i * n + j]!, 9);
      }
    }
  });

  it('block D_k = C_kk·C_kkᵀ, L = C·blockdiag(C_kk)⁻¹ (QuIP# block_LDL)', () => {
    const n = 48;
    const b = 8;
    const h = spd(n, 5);
    const C = cholesky(h);
    const { L, D } = ldl(h, { block: b });
    for (let k = 0; k < n / b; k++) {
      const ckk = matrix64(b, b);
      for (let i = 0; i < b; i++)
        for (let j = 0; j < b; j++) ckk.data[i * b + j] = C.data[(k * b + i) * n + k * b + j]!;
      expect(relDiff(D[k]!, matmul64(ckk, ckk, { transB: true }))).toBeLessThan(1e-14);
    }
    // L·blockdiag(C_kk) = C.
    const cdiag = blockDiagonal(
      Array.from({ length: n / b }, (_, k) => {
        const m = matrix64(b, b);
        for (let i = 0; i < b; i++)
          for (let j = 0; j <= i; j++) m.data[i * b + j] = C.data[(k * b + i) * n + k * b + j]!;
        return m;
      }),
      n,
    );
    expect(relDiff(matmul64(L, cdiag), C)).toBeLessThan(1e-12);
  });

  it('ill-conditioned H (condition 1e12) still reconstructs to 1e-10', () => {
    const n = 160;
    const s = Array.from({ length: n }, (_, i) => 10 ** (-12 * (i / (n - 1))));
    const U = orthonormal(n, n, 11);
    const h = scaleColumnsTimesT(U, s, U);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) h.data[j * n + i] = h.data[i * n + j]!; // exactly symmetric
    for (const block of [1, 8]) {
      const { L, D } = ldl(h, { block });
      expect(relDiff(reconstruct(L, D), h)).toBeLessThan(1e-10);
    }
  });

  it('semidefinite H: a clear error naming damp; with damp it factors H + λ·mean(diag H)·I', () => {
    const n = 40;
    const x = gaussian(20, n, 9); // rank 20 < 40
    const h = matmul64(x, x, { transA: true });
    expect(() => ldl(h)).toThrow(/^ldl: matrix is not positive definite: pivot \d+ .*pass damp/);
    const { L, D, shift } = ldl(h, { damp: 0.01, block: 8 });
    let tr = 0;
    for (let i = 0; i < n; i++) tr += h.data[i * n + i]!;
    expect(shift).toBeCloseTo((0.01 * tr) / n, 12);
    const damped = matrix64(n, n, h.data.slice());
    for (let i = 0; i < n; i++) damped.data[i * n + i]! += shift;
    expect(relDiff(reconstruct(L, D), damped)).toBeLessThan(1e-10);
    expect(h.data[0]).toBe(damped.data[0]! - shift); // the input is not modified
  });

  it('rejects indefinite, non-square, non-finite input and bad options', () => {
    const indefinite = matrix64(2, 2, Float64Array.from([1, 2, 2, 1]));
    expect(() => ldl(indefinite)).toThrow(/^ldl: matrix is not positive definite/);
    expect(() => ldl(matrix64(2, 3))).toThrow('ldl: matrix must be square, got 2×3');
    expect(() => ldl(matrix64(2, 2, Float64Array.from([1, 0, Number.NaN, 1])))).toThrow(
      /^ldl: entry \(1, 0\)/,
    );
    expect(() => ldl(spd(4, 1), { block: 0 })).toThrow('ldl: block must be a positive integer, got 0');
    expect(() => ldl(spd(4, 1), { damp: -1 })).toThrow('ldl: damp must be a finite number ≥ 0, got -1');
  });

  it('LDLQ: (W − Ŵ)·H·(W − Ŵ)ᵀ splits into per-block rounding errors weighted by D_k, and beats rounding', () => {
    const n = 96;
    const m = 12;
    const h = spd(n, 21);
    const W = gaussian(m, n, 22);
    const step = 0.5;
    const q = (v: number) => step * Math.round(v / step);
    for (const b of [1, 8]) {
      const { L, D } = ldl(h, { block: b });
      const What = matrix64(m, n);
      const E = matrix64(m, n); // rounding error of each block's input
      for (let k0 = Math.floor((n - 1) / b) * b; k0 >= 0; k0 -= b) {
        const k1 = Math.min(n, k0 + b);
        for (let r = 0; r < m; r++)
          for (let c = k0; c < k1; c++) {
            let v = W.data[r * n + c]!;
            for (let j = k1; j < n; j++)
              v += (W.data[r * n + j]! - What.data[r * n + j]!) * L.data[j * n + c]!;
            What.data[r * n + c] = q(v);
            E.data[r * n + c] = v - What.data[r * n + c]!;
          }
      }
      const proxy = (Wq: Matrix64) => {
        const d = matrix64(m, n);
        for (let i = 0; i < d.data.length; i++) d.data[i] = W.data[i]! - Wq.data[i]!;
        const dh = matmul64(d, h);
        let t = 0;
        for (let i = 0; i < d.data.length; i++) t += dh.data[i]! * d.data[i]!;
        return t;
      };
      const ede = matmul64(E, blockDiagonal(D, n));
      let split = 0;
      for (let i = 0; i < E.data.length; i++) split += ede.data[i]! * E.data[i]!;
      const loss = proxy(What);
      expect(Math.abs(loss - split) / loss).toBeLessThan(1e-10);
      const rtn = matrix64(m, n, W.data.map(q));
      expect(loss).toBeLessThan(proxy(rtn));
    }
  });
});
