import { LineageError } from '@lineage/core';
import { gaussian64, matmul64, matrix64, transpose64 } from '@lineage/linalg';
import { describe, expect, it } from 'vitest';
import {
  decode,
  dequantize,
  encode,
  groupsPerRow,
  incoherenceMatrix,
  ldlq,
  proxyLoss,
  type QuantBits,
  quantizedBytes,
  randomIncoherence,
  roundF16,
  rtn,
  tensorScale,
  transformHessian,
  transformInput,
  transformWeight,
  untransformOutput,
  untransformWeight,
} from './index.js';

/** An SPD Hessian with correlated inputs and a few strong directions, like a real layer's XᵀX. */
function hessian(n: number, seed: number): Float64Array {
  const x = gaussian64(4 * n, n, seed);
  for (let r = 0; r < x.rows; r++) {
    for (let c = 1; c < n; c++) x.data[r * n + c]! += 0.7 * x.data[r * n + c - 1]!;
    x.data[r * n + (r % 3)]! *= 4;
  }
  const h = matmul64(transpose64(x), x);
  for (let i = 0; i < h.data.length; i++) h.data[i]! /= x.rows;
  return h.data;
}

function maxAbsDiff(a: Float64Array, b: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('scalar grids', () => {
  it('rtn: codes in range, f16 scales, error within half a step, shorter last group', () => {
    const rows = 6;
    const cols = 172; // stories260K's FFN width: groups of 64, 64, 44
    const w = gaussian64(rows, cols, 1).data;
    for (const bits of [2, 3, 4, 8] as QuantBits[])
      for (const zeroPoint of [false, true]) {
        const q = rtn(w, rows, cols, { bits, groupSize: 64, zeroPoint, clip: 'minmax' });
        expect(q.scales.length).toBe(rows * 3);
        expect(groupsPerRow(cols, 64)).toBe(3);
        for (const s of q.scales) expect(roundF16(s)).toBe(s);
        for (const c of q.codes) expect(c >= 0 && c < 1 << bits).toBe(true);
        const d = dequantize(q);
        for (let r = 0; r < rows; r++)
          for (let c = 0; c < cols; c++) {
            const s = q.scales[r * 3 + Math.floor(c / 64)]!;
            expect(Math.abs(d[r * cols + c]! - w[r * cols + c]!)).toBeLessThanOrEqual(0.5 * s + 1e-12);
          }
        // payload at `bits` bits + 2-byte scales (+ zeros at `bits` bits)
        const groups = rows * 3;
        expect(quantizedBytes(q)).toBe(
          Math.ceil((rows * cols * bits) / 8) + 2 * groups + (zeroPoint ? Math.ceil((groups * bits) / 8) : 0),
        );
      }
  });

  it('rtn: the mse range search beats min–max at every width', () => {
    const w = gaussian64(16, 256, 9).data;
    const sq = (d: Float64Array) => d.reduce((a, v, i) => a + (v - w[i]!) ** 2, 0);
    for (const bits of [2, 3, 4] as QuantBits[])
      for (const zeroPoint of [false, true]) {
        const mse = sq(dequantize(rtn(w, 16, 256, { bits, groupSize: 128, zeroPoint })));
        const mm = sq(dequantize(rtn(w, 16, 256, { bits, groupSize: 128, zeroPoint, clip: 'minmax' })));
        expect(mse).toBeLessThan(bits === 2 ? 0.8 * mm : mm);
      }
  });

  it('rtn: error shrinks with bits; whole-row groups', () => {
    const w = gaussian64(8, 100, 2).data;
    let prev = Number.POSITIVE_INFINITY;
    for (const bits of [2, 3, 4, 8] as QuantBits[]) {
      const q = rtn(w, 8, 100, { bits, groupSize: 0 });
      expect(q.scales.length).toBe(8);
      const e = maxAbsDiff(dequantize(q), w);
      expect(e).toBeLessThan(prev);
      prev = e;
    }
  });

  it('rejects bad grids and shapes with one-line LineageErrors', () => {
    const w = new Float64Array(12);
    expect(() => rtn(w, 3, 4, { bits: 5 as QuantBits, groupSize: 2 })).toThrow(
      new LineageError('rtn: bits must be one of 2, 3, 4, 8, got 5'),
    );
    expect(() => rtn(w, 3, 4, { bits: 4, groupSize: -1 })).toThrow(
      /group size must be a positive whole number/,
    );
    expect(() => rtn(w, 3, 5, { bits: 4, groupSize: 2 })).toThrow(/weight has 12 values, expected 3×5/);
  });
});

describe('ldlq', () => {
  const rows = 24;
  const cols = 172;
  const h = hessian(cols, 3);
  const w = gaussian64(rows, cols, 4).data;

  it('beats rtn on the proxy loss at every width, group size and zero-point choice', () => {
    for (const bits of [2, 3, 4] as QuantBits[])
      for (const groupSize of [0, 32, 64])
        for (const zeroPoint of [false, true]) {
          const grid = { bits, groupSize, zeroPoint };
          const a = proxyLoss(w, dequantize(ldlq(w, rows, cols, h, grid)), rows, cols, h);
          const b = proxyLoss(w, dequantize(rtn(w, rows, cols, grid)), rows, cols, h);
          expect(a, `${bits} bits, groups ${groupSize}, zp ${zeroPoint}`).toBeLessThan(0.8 * b);
        }
  });

  it('with H = I and no damping it is rtn', () => {
    const eye = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++) eye[i * cols + i] = 1;
    const grid = { bits: 3 as const, groupSize: 64 };
    expect(ldlq(w, rows, cols, eye, { ...grid, damp: 0 }).codes).toEqual(rtn(w, rows, cols, grid).codes);
  });

  it('blocked updates equal the column-by-column definition (wide matrix, several blocks)', () => {
    const n = 300;
    const hh = hessian(n, 5);
    const ww = gaussian64(5, n, 6).data;
    const damp = 0.01;
    const q = ldlq(ww, 5, n, hh, { bits: 2, groupSize: 50, damp });
    // reference: Ŵ_c = Q(W_c + Σ_{j>c}(W_j − Ŵ_j)·L_{j,c}), from a plain LDLᵀ of the damped H
    let tr = 0;
    for (let i = 0; i < n; i++) tr += hh[i * n + i]!;
    const hd = hh.slice();
    for (let i = 0; i < n; i++) hd[i * n + i]! += (damp * tr) / n;
    const c = cholLower(hd, n);
    const what = dequantize(q);
    for (let r = 0; r < 5; r++)
      for (let col = n - 1; col >= 0; col--) {
        let v = ww[r * n + col]!;
        for (let j = col + 1; j < n; j++)
          v += (ww[r * n + j]! - what[r * n + j]!) * (c[j * n + col]! / c[col * n + col]!);
        const g = Math.floor(col / 50);
        const s = q.scales[r * 6 + g]!;
        const expected = Math.min(3, Math.max(0, Math.round(v / s + 1.5)));
        expect(q.codes[r * n + col]).toBe(expected);
      }
  });

  it('a Hessian not positive definite even after damping: one line naming the layer', () => {
    const bad = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++) bad[i * cols + i] = i === 5 ? -1000 : 1;
    expect(() => ldlq(w, rows, cols, bad, { bits: 2, groupSize: 64 }, 'layers.0.mlp.down_proj')).toThrow(
      /^ldlq layers\.0\.mlp\.down_proj: the input Hessian is not positive definite even after damping/,
    );
    expect(() => ldlq(w, rows, cols, new Float64Array(4), { bits: 2, groupSize: 64 }, 'x')).toThrow(
      'ldlq x: Hessian has 4 values, expected 172×172 (the input width)',
    );
  });
});

describe('randomized Hadamard incoherence', () => {
  for (const n of [64, 172, 96, 43, 1]) {
    it(`is orthogonal and invertible at width ${n}`, () => {
      const t = randomIncoherence(7, n, 11, 'both');
      const T = incoherenceMatrix(t.signsIn);
      const ttt = matmul64(matrix64(n, n, T), transpose64(matrix64(n, n, T))).data;
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) expect(Math.abs(ttt[i * n + j]! - (i === j ? 1 : 0))).toBeLessThan(1e-12);
      // incoherent: no entry much above √(2/n)
      for (const v of T) expect(Math.abs(v)).toBeLessThanOrEqual(Math.sqrt(2 / n) + 1e-12);
      const w = gaussian64(7, n, 12).data;
      expect(maxAbsDiff(untransformWeight(transformWeight(w, 7, n, t), 7, n, t), w)).toBeLessThan(1e-12);
    });
  }

  it('preserves the layer: T_outᵀ·W̃·(T_in·x) = W·x, and the proxy loss under H̃', () => {
    const rows = 12;
    const n = 172;
    const t = randomIncoherence(rows, n, 3, 'both');
    const w = gaussian64(rows, n, 13).data;
    const x = gaussian64(1, n, 14).data;
    const wt = transformWeight(w, rows, n, t);
    const xt = x.slice();
    transformInput(xt, t.signsIn, 1);
    const y = matmul64(matrix64(rows, n, wt), matrix64(n, 1, xt)).data;
    untransformOutput(y, t.signsOut, 1);
    const ref = matmul64(matrix64(rows, n, w), matrix64(n, 1, x)).data;
    expect(maxAbsDiff(y, ref)).toBeLessThan(1e-12);
    const h = hessian(n, 15);
    const ht = transformHessian(h, t.signsIn);
    const w2 = gaussian64(rows, n, 16).data;
    const a = proxyLoss(w, w2, rows, n, h);
    const b = proxyLoss(wt, transformWeight(w2, rows, n, t), rows, n, ht);
    expect(Math.abs(a - b) / a).toBeLessThan(1e-10);
  });

  it('makes outlier weights quantize better', () => {
    const rows = 16;
    const n = 128;
    const w = gaussian64(rows, n, 17).data;
    for (let r = 0; r < rows; r++) w[r * n + ((r * 7) % n)]! *= 30; // one outlier per row
    const t = randomIncoherence(rows, n, 5, 'both');
    const grid = { bits: 2 as const, groupSize: 0 };
    const plain = maxAbsDiff(dequantize(rtn(w, rows, n, grid)), w);
    const wt = transformWeight(w, rows, n, t);
    const back = untransformWeight(dequantize(rtn(wt, rows, n, grid)), rows, n, t);
    let e1 = 0;
    let e2 = 0;
    const d1 = dequantize(rtn(w, rows, n, grid));
    for (let i = 0; i < w.length; i++) {
      e1 += (d1[i]! - w[i]!) ** 2;
      e2 += (back[i]! - w[i]!) ** 2;
    }
    expect(plain).toBeGreaterThan(0);
    expect(e2).toBeLessThan(0.5 * e1);
  });
});

function cholLower(a: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let s = a[j * n + j]!;
    for (let k = 0; k < j; k++) s -= c[j * n + k]! ** 2;
    const d = Math.sqrt(s);
    c[j * n + j] = d;
    for (let i = j + 1; i < n; i++) {
      let t = a[i * n + j]!;
      for (let k = 0; k < j; k++) t -= c[i * n + k]! * c[j * n + k]!;
      c[i * n + j] = t / d;
    }
  }
  return c;
}

describe('ldlq with one fixed scale (CALDERA’s Q)', () => {
  it('stores the given scale in every row and does better than rounding on that grid', () => {
    const rows = 12;
    const cols = 40;
    const w = gaussian64(rows, cols, 7).data;
    // a correlated Hessian (X·Xᵀ of mixed inputs), where feeding errors forward pays
    const x = matmul64(gaussian64(200, cols, 8), gaussian64(cols, cols, 9));
    const h = matmul64(transpose64(x), x).data;
    const scale = tensorScale(w, 2);
    const q = ldlq(w, rows, cols, h, { bits: 2, groupSize: 0, scale });
    expect([...q.scales].every((s) => s === scale)).toBe(true);
    const g = { scale, offset: 1.5 };
    const rounded = w.map((v) => decode(encode(v, g, 3), g));
    expect(proxyLoss(w, dequantize(q), rows, cols, h)).toBeLessThan(proxyLoss(w, rounded, rows, cols, h));
    expect(() => ldlq(w, rows, cols, h, { bits: 2, groupSize: 8, scale })).toThrow(/fixed scale/);
  });
});
