// Worker threads on regardless of the machine's load (read when the pool starts; this file runs in its
// own process).
process.env['LINEAGE_SVD_THREADS'] = '3';

import { describe, expect, it } from 'vitest';
import { gemm, withWorkspace } from './gemm.js';
import { parallelStats } from './parallel.js';
import { qr } from './qr.js';
import { svd } from './svd.js';
import {
  gaussian,
  maxAbsDiff,
  naiveMatmul,
  orthogonalityError,
  reconstructionError,
} from './test-helpers.js';

describe('GEMM on worker threads', () => {
  it('gives the same product as the naive loops (several groups of blocks, ragged edges)', () => {
    const M = 1100;
    const N = 203;
    const K = 300;
    const a = gaussian(M, K, 1);
    const b = gaussian(K, N, 2);
    const expected = naiveMatmul(a, b);
    const got = withWorkspace(M * N, (ws) => {
      const C = ws.heap.subarray(ws.offset, ws.offset + M * N);
      C.fill(1);
      gemm(false, false, M, N, K, -2, a.data, 0, K, b.data, 0, N, 0.5, C, 0, N);
      return C.slice();
    });
    for (let i = 0; i < expected.data.length; i++) expected.data[i] = -2 * expected.data[i]! + 0.5;
    expect(maxAbsDiff(got, expected.data)).toBeLessThan(1e-11);
    const stats = parallelStats();
    expect(stats.workers).toBe(2);
    expect(stats.jobs).toBeGreaterThan(0);
  });

  it('keeps svd and qr exact with the workers on', () => {
    const a = gaussian(420, 300, 3);
    const r = svd(a);
    expect(reconstructionError(a, r.U, r.S, r.V)).toBeLessThan(1e-12);
    expect(orthogonalityError(r.U)).toBeLessThan(1e-12);
    expect(orthogonalityError(r.V)).toBeLessThan(1e-12);
    const { Q } = qr(gaussian(700, 200, 4));
    expect(orthogonalityError(Q)).toBeLessThan(1e-12);
  });
});
