import { afterEach, describe, expect, it } from 'vitest';
import { forceGemmKernel, gemm, gemmKernelKind, gemvN, gemvT, ger, matmul64, withWorkspace } from './gemm.js';
import { matrix64, transpose64 } from './matrix.js';
import { gaussian, maxAbsDiff, naiveMatmul } from './test-helpers.js';

afterEach(() => forceGemmKernel(undefined));

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [1, 9, 5],
  [9, 1, 5],
  [3, 3, 0],
  [5, 7, 3],
  [37, 53, 300],
  [130, 515, 260],
  [131, 7, 33],
];

describe('matmul64', () => {
  it('compiles the wasm SIMD kernels on Node', () => {
    expect(gemmKernelKind()).toBe('wasm');
  });

  for (const kind of ['wasm', 'js'] as const) {
    it(`matches a naive product for every transpose combination (${kind} kernel)`, () => {
      forceGemmKernel(kind);
      let seed = 1;
      for (const [M, N, K] of shapes) {
        for (const tA of [false, true]) {
          for (const tB of [false, true]) {
            const a = tA ? gaussian(K, M, seed++) : gaussian(M, K, seed++);
            const b = tB ? gaussian(N, K, seed++) : gaussian(K, N, seed++);
            const c = matmul64(a, b, { transA: tA, transB: tB });
            expect([c.rows, c.cols]).toEqual([M, N]);
            expect(maxAbsDiff(c.data, naiveMatmul(a, b, tA, tB).data)).toBeLessThan(1e-12 * Math.max(1, K));
          }
        }
      }
    });
  }

  it('rejects mismatched inner dimensions with both shapes in the message', () => {
    expect(() => matmul64(matrix64(2, 3), matrix64(4, 5))).toThrow(/2×3.*4×5/);
  });
});

describe('gemm (strided, α, β)', () => {
  for (const where of ['js-array', 'workspace'] as const) {
    it(`C ← α·op(A)·op(B) + β·C on sub-matrices (C in a ${where})`, () => {
      const cases: [number, number, number][] = [
        [37, 53, 300],
        [600, 530, 40],
        [4, 4, 4],
        [131, 7, 33],
      ];
      let seed = 100;
      for (const [M, N, K] of cases) {
        for (const tA of [false, true]) {
          for (const tB of [false, true]) {
            const lda = (tA ? M : K) + 3;
            const ldb = (tB ? K : N) + 1;
            const ldc = N + 5;
            const A = gaussian(1, (tA ? K : M) * lda + 4, seed++).data;
            const B = gaussian(1, (tB ? N : K) * ldb + 4, seed++).data;
            const C0 = gaussian(1, M * ldc + 8, seed++).data;
            const expected = C0.slice();
            for (let i = 0; i < M; i++) {
              for (let j = 0; j < N; j++) {
                let s = 0;
                for (let k = 0; k < K; k++) {
                  s +=
                    (tA ? A[1 + k * lda + i]! : A[1 + i * lda + k]!) *
                    (tB ? B[2 + j * ldb + k]! : B[2 + k * ldb + j]!);
                }
                const o = 3 + i * ldc + j;
                expected[o] = -0.7 * s + 0.3 * C0[o]!;
              }
            }
            const run = (C: Float64Array) => {
              C.set(C0);
              gemm(tA, tB, M, N, K, -0.7, A, 1, lda, B, 2, ldb, 0.3, C, 3, ldc);
              return C.slice();
            };
            const got =
              where === 'js-array'
                ? run(new Float64Array(C0.length))
                : withWorkspace(C0.length + 16, (ws) =>
                    run(ws.heap.subarray(ws.offset + 7, ws.offset + 7 + C0.length)),
                  );
            expect(maxAbsDiff(got, expected)).toBeLessThan(1e-11);
          }
        }
      }
    });
  }

  it('gemvT and gemvN agree with direct loops, in and out of a workspace', () => {
    const rows = 23;
    const cols = 17;
    const lda = 21 + 3;
    const a = gaussian(1, rows * lda, 7).data;
    const u = gaussian(1, rows, 8).data;
    const v = gaussian(1, cols, 9).data;
    const yT = new Float64Array(cols).fill(0.5);
    const xN = new Float64Array(rows);
    for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) yT[c]! += u[r]! * a[2 + r * lda + c]!;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) xN[r]! += a[2 + r * lda + c]! * v[c]!;
    const y1 = new Float64Array(cols).fill(0.5);
    const x1 = new Float64Array(rows);
    gemvT(a, 2, lda, rows, cols, u, 0, y1, 0);
    gemvN(a, 2, lda, rows, cols, v, 0, x1, 0);
    expect(maxAbsDiff(y1, yT)).toBeLessThan(1e-12);
    expect(maxAbsDiff(x1, xN)).toBeLessThan(1e-12);
    withWorkspace(a.length + rows + cols + cols + rows, (ws) => {
      let off = ws.offset;
      const take = (n: number) => {
        const s = ws.heap.subarray(off, off + n);
        off += n;
        return s;
      };
      const A = take(a.length);
      A.set(a);
      const U = take(rows);
      U.set(u);
      const Vv = take(cols);
      Vv.set(v);
      const Y = take(cols);
      Y.fill(0.5);
      const X = take(rows);
      gemvT(A, 2, lda, rows, cols, U, 0, Y, 0);
      gemvN(A, 2, lda, rows, cols, Vv, 0, X, 0);
      expect(maxAbsDiff(Y, yT)).toBeLessThan(1e-12);
      expect(maxAbsDiff(X, xN)).toBeLessThan(1e-12);
    });
  });

  it('ger adds x·yᵀ to a strided block, in and out of a workspace', () => {
    const rows = 9;
    const cols = 13;
    const lda = 16;
    const a0 = gaussian(1, rows * lda, 1).data;
    const x = gaussian(1, rows, 2).data;
    const y = gaussian(1, cols + 1, 3).data;
    const expected = a0.slice();
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) expected[1 + r * lda + c]! += x[r]! * y[1 + c]!;
    const plain = a0.slice();
    ger(plain, 1, lda, rows, cols, x, 0, y, 1);
    expect(maxAbsDiff(plain, expected)).toBeLessThan(1e-14);
    withWorkspace(a0.length + rows + cols + 1, (ws) => {
      const A = ws.heap.subarray(ws.offset, ws.offset + a0.length);
      const X = ws.heap.subarray(ws.offset + a0.length, ws.offset + a0.length + rows);
      const Y = ws.heap.subarray(ws.offset + a0.length + rows, ws.offset + a0.length + rows + cols + 1);
      A.set(a0);
      X.set(x);
      Y.set(y);
      ger(A, 1, lda, rows, cols, X, 0, Y, 1);
      expect(maxAbsDiff(A, expected)).toBeLessThan(1e-14);
    });
  });

  it('products with many passes over a C outside the kernel memory match the naive product', () => {
    // K > 256 and a large C take the temporary-workspace route.
    const a = gaussian(300, 700, 1);
    const b = gaussian(700, 200, 2);
    expect(maxAbsDiff(matmul64(a, b).data, naiveMatmul(a, b).data)).toBeLessThan(1e-11);
  });

  it('transpose64 swaps rows and columns', () => {
    const a = gaussian(7, 13, 3);
    const t = transpose64(a);
    expect([t.rows, t.cols]).toEqual([13, 7]);
    for (let i = 0; i < 7; i++)
      for (let j = 0; j < 13; j++) expect(t.data[j * 7 + i]).toBe(a.data[i * 13 + j]);
  });
});
