import { matmul64 } from './gemm.js';
import { fromF32, type Matrix64, matrix64, toF32 } from './matrix.js';
import { qr } from './qr.js';
import { gaussian64 } from './random.js';
import { type SvdResult, svd } from './svd.js';

/**
 * The four calls the randomized SVD makes on a device (f32 upload, matmul, read back, dispose). `Ops` from
 * @lineage/core satisfies it as is; it is spelt out here so the engine depends on no package.
 */
export interface DeviceMatmul<T = unknown> {
  upload(data: Float32Array, shape: number[]): T;
  matmul(a: T, b: T, opts?: { transposeA?: boolean; transposeB?: boolean }): Promise<T>;
  readF32(t: T): Promise<Float32Array>;
  dispose(...ts: (T | undefined)[]): void;
}

export interface RandomizedSvdOptions {
  /** Extra sample columns beyond the rank (default 10). */
  oversample?: number;
  /** Power (subspace) iterations, each re-orthonormalised (default 2). */
  powerIterations?: number;
  /** Seed of the Gaussian test matrix (default 0: the same result every call). */
  seed?: number;
  /**
   * When given, the products with A (A·Ω, Aᵀ·Q, A·Q, Qᵀ·A) run on this backend's f32 matmul, with A uploaded
   * once; orthonormalisation and the small SVD stay in float64 on the host.
   */
  ops?: DeviceMatmul;
  /** Called with the fraction done (0…1) after each product. */
  onProgress?: (fraction: number) => void;
}

/**
 * Rank-k SVD by randomized range finding (Halko, Martinsson and Tropp 2011, Alg. 4.4 + 5.1): Y = A·Ω for
 * Gaussian Ω (n×(k+p)), q power iterations Y = A·(Aᵀ·Q) with a QR after every product, B = Qᵀ·A, exact SVD
 * of the small B, U = Q·U_B; the leading k triplets are returned (U m×k, S k descending, V n×k). When
 * k + p reaches min(m, n) the exact SVD is truncated instead.
 */
export async function randomizedSvd(
  a: Matrix64,
  rank: number,
  opts?: RandomizedSvdOptions,
): Promise<SvdResult> {
  const m = a.rows;
  const n = a.cols;
  const kmax = Math.min(m, n);
  if (!Number.isInteger(rank) || rank < 0)
    throw new RangeError(`randomizedSvd: rank must be a non-negative integer, got ${rank}`);
  const k = Math.min(rank, kmax);
  const p = opts?.oversample ?? 10;
  const q = opts?.powerIterations ?? 2;
  if (!Number.isInteger(p) || p < 0) throw new RangeError(`randomizedSvd: oversample must be ≥ 0, got ${p}`);
  if (!Number.isInteger(q) || q < 0)
    throw new RangeError(`randomizedSvd: powerIterations must be ≥ 0, got ${q}`);
  const l = Math.min(k + p, kmax);
  const progress = opts?.onProgress ?? (() => {});
  if (k === 0) {
    progress(1);
    return { U: matrix64(m, 0), S: new Float64Array(0), V: matrix64(n, 0) };
  }
  if (l >= kmax) {
    const full = svd(a);
    progress(1);
    return truncate(full, k);
  }
  const omega = gaussian64(n, l, opts?.seed ?? 0);

  const products = 2 * q + 2;
  let done = 0;
  const step = () => progress(Math.min(0.95, (++done / products) * 0.95));
  const mul = opts?.ops ? await deviceProducts(opts.ops, a) : hostProducts(a);
  try {
    let Q = qr(await mul.aTimes(omega)).Q;
    step();
    for (let it = 0; it < q; it++) {
      const Z = qr(await mul.aTransTimes(Q)).Q;
      step();
      Q = qr(await mul.aTimes(Z)).Q;
      step();
    }
    // B = Qᵀ·A (l×n), computed as (Aᵀ·Q)ᵀ.
    const Bt = await mul.aTransTimes(Q);
    step();
    // SVD of Bᵀ (n×l, tall): Bᵀ = U'·S·V'ᵀ, so B = V'·S·U'ᵀ: U_B = V', V_B = U'.
    const small = svd(Bt);
    const U = matmul64(Q, small.V);
    progress(1);
    return truncate({ U, S: small.S, V: small.U }, k);
  } finally {
    mul.dispose();
  }
}

interface Products {
  /** A·X (m×c) for X n×c. */
  aTimes(x: Matrix64): Promise<Matrix64>;
  /** Aᵀ·X (n×c) for X m×c. */
  aTransTimes(x: Matrix64): Promise<Matrix64>;
  dispose(): void;
}

function hostProducts(a: Matrix64): Products {
  return {
    aTimes: async (x) => matmul64(a, x),
    aTransTimes: async (x) => matmul64(a, x, { transA: true }),
    dispose: () => {},
  };
}

async function deviceProducts(ops: DeviceMatmul, a: Matrix64): Promise<Products> {
  const A = ops.upload(toF32(a), [a.rows, a.cols]);
  const run = async (x: Matrix64, transposeA: boolean, rows: number): Promise<Matrix64> => {
    const X = ops.upload(toF32(x), [x.rows, x.cols]);
    let Y: unknown;
    try {
      Y = await ops.matmul(A, X, { transposeA });
      return fromF32(rows, x.cols, await ops.readF32(Y));
    } finally {
      ops.dispose(X, Y);
    }
  };
  return {
    aTimes: (x) => run(x, false, a.rows),
    aTransTimes: (x) => run(x, true, a.cols),
    dispose: () => ops.dispose(A),
  };
}

function truncate(r: SvdResult, k: number): SvdResult {
  const cols = (m: Matrix64): Matrix64 => {
    if (m.cols === k) return m;
    const out = matrix64(m.rows, k);
    for (let i = 0; i < m.rows; i++) out.data.set(m.data.subarray(i * m.cols, i * m.cols + k), i * k);
    return out;
  };
  return { U: cols(r.U), S: r.S.slice(0, k), V: cols(r.V) };
}
