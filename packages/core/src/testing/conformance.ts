import type * as Vitest from 'vitest';
import type { AttentionOptions, Backend, BinaryOp, ReduceOp, Tensor, UnaryOp } from '../backend/backend.js';
import { Ops } from '../backend/ops.js';

/**
 * The backend conformance suite: every backend (js, onnxruntime, tfjs, third-party) runs the same tests
 * against naive float64 references. Use it from a backend's own test file:
 *
 * ```ts
 * import { describeBackendConformance } from '@lineage/core/testing';
 * describeBackendConformance('mybackend cpu', () => createMyBackend({ device: 'cpu' }));
 * ```
 *
 * Floating-point results are compared per dtype: i32 results and data movement (reshape, transpose, slice,
 * concat, gather) must be exact; f32 results must satisfy |actual − expected| ≤ atol + rtol·|expected|
 * with per-op bounds (`TOLERANCES`) that `options.tolerance` scales. Expected values are rounded to f32
 * first, so a float64 result beyond the f32 range must come back as ±Infinity. NaN must meet NaN and an
 * infinity the same infinity.
 */
export interface ConformanceOptions {
  /** Multiplies every f32 tolerance (default 1: the bounds the reference backend meets). */
  tolerance?: number;
  /**
   * Tests to skip: each entry is a substring of a test's title `group › test` (e.g. `'matmul ›'` or
   * `'fused attention'`), optionally followed by ` # reason`. Skipped tests appear as skipped with the reason.
   */
  skip?: string[];
  /** Ops run by the leak check (default 1000). */
  leakOps?: number;
  /** Per-test timeout in milliseconds (default: vitest's configured timeout). */
  timeout?: number;
}

// vitest throws when imported outside its runner, and @lineage/core/testing is also imported by plain
// scripts (benchmarks use sharedPath): load it only when running under vitest.
const vitest: typeof Vitest | undefined = process.env.VITEST ? await import('vitest') : undefined;

/** Default f32 tolerances per kind of op: [rtol, atol]. `options.tolerance` multiplies both. */
export const TOLERANCES = {
  /** Correctly rounded ops: add, sub, mul, div, max, min, scale. */
  arith: [1e-6, 1e-7],
  /** exp, log, tanh, sigmoid, silu, … */
  unary: [4e-6, 1e-7],
  /** Sums and means over up to ~1000 values. */
  reduce: [1e-5, 1e-5],
  softmax: [2e-6, 1e-7],
  logSoftmax: [2e-6, 2e-6],
  rmsNorm: [4e-6, 1e-6],
  rope: [1e-6, 1e-6],
  crossEntropy: [2e-6, 1e-5],
  matmul: [1e-5, 1e-5],
  attention: [2e-5, 2e-6],
} as const satisfies Record<string, readonly [number, number]>;
export type ToleranceKind = keyof typeof TOLERANCES;

// ---------------------------------------------------------------------------------------------------
// Helpers: deterministic data, float64 references, tolerant comparison (exported for backend tests)

/** Deterministic uniform [0, 1) generator (mulberry32). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A Float32Array of `shape`'s size, uniform in [lo, hi). */
export function randomF32(shape: readonly number[], seed = 1, lo = -1, hi = 1): Float32Array {
  const r = seededRandom(seed);
  const a = new Float32Array(sizeOf(shape));
  for (let i = 0; i < a.length; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

/**
 * Elementwise |a − f32(e)| ≤ atol + rtol·|f32(e)|; NaN must meet NaN and ±Inf the same infinity (an
 * expected value beyond the f32 range is an infinity). Throws naming the first bad index.
 */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol = 1e-6,
  atol = 1e-6,
): void {
  if (actual.length !== expected.length) {
    throw new Error(`length ${actual.length}, expected ${expected.length}`);
  }
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = Math.fround(expected[i]!);
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e))) {
        throw new Error(`index ${i}: got ${a}, expected ${e}`);
      }
      continue;
    }
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      throw new Error(`index ${i}: got ${a}, expected ${e} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

function strides(shape: readonly number[]): number[] {
  const s: number[] = [];
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return idx;
}

function bshape(a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  return Array.from({ length: r }, (_, i) => {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    return x === 1 ? y : x;
  });
}

/** Index into `shape` (right-aligned to `idx`) with broadcasting. */
function bidx(idx: readonly number[], shape: readonly number[]): number {
  const st = strides(shape);
  let o = 0;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (d !== 1) o += idx[idx.length - shape.length + i]! * st[i]!;
  }
  return o;
}

const binRef: Record<BinaryOp, (x: number, y: number) => number> = {
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
  max: Math.max,
  min: Math.min,
};

/** Float64 numpy-broadcasting binary op. */
export function refBinary(
  op: BinaryOp,
  a: ArrayLike<number>,
  as: readonly number[],
  b: ArrayLike<number>,
  bs: readonly number[],
): { out: Float64Array; shape: number[] } {
  const os = bshape(as, bs);
  const out = new Float64Array(sizeOf(os));
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, os);
    out[i] = binRef[op](a[bidx(idx, as)]!, b[bidx(idx, bs)]!);
  }
  return { out, shape: os };
}

export const unaryRef: Record<UnaryOp, (x: number) => number> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  recip: (x) => 1 / x,
  abs: Math.abs,
  square: (x) => x * x,
  silu: (x) => x / (1 + Math.exp(-x)),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  tanh: Math.tanh,
  relu: (x) => (Number.isNaN(x) ? x : Math.max(0, x)),
};

/** Float64 batched matmul with numpy batch broadcasting. */
export function refMatmul(
  a: ArrayLike<number>,
  as: readonly number[],
  b: ArrayLike<number>,
  bs: readonly number[],
  tA = false,
  tB = false,
): { out: Float64Array; shape: number[] } {
  const ra = as.length;
  const rb = bs.length;
  const M = tA ? as[ra - 1]! : as[ra - 2]!;
  const K = tA ? as[ra - 2]! : as[ra - 1]!;
  const N = tB ? bs[rb - 2]! : bs[rb - 1]!;
  const batchA = as.slice(0, -2);
  const batchB = bs.slice(0, -2);
  const batch = bshape(batchA, batchB);
  const out = new Float64Array(sizeOf(batch) * M * N);
  for (let p = 0; p < sizeOf(batch); p++) {
    const idx = unravel(p, batch);
    const ao = bidx(idx, batchA) * M * K;
    const bo = bidx(idx, batchB) * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const x = a[ao + (tA ? k * M + i : i * K + k)]!;
          const y = b[bo + (tB ? j * K + k : k * N + j)]!;
          s += x * y;
        }
        out[p * M * N + i * N + j] = s;
      }
    }
  }
  return { out, shape: [...batch, M, N] };
}

export function refSoftmaxRow(row: readonly number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((x) => Math.exp(x - m));
  const s = e.reduce((p, x) => p + x, 0);
  return e.map((x) => x / s);
}

function refLogSoftmaxRow(row: readonly number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((p, x) => p + Math.exp(x - m), 0));
  return row.map((x) => x - lse);
}

function rows(a: ArrayLike<number>, L: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < a.length; i += L) out.push(Array.from(a).slice(i, i + L));
  return out;
}

export function refReduce(
  op: ReduceOp,
  x: ArrayLike<number>,
  shape: readonly number[],
  axes: readonly number[],
  keep: boolean,
): { out: Float64Array; shape: number[] } {
  const red = shape.map((_, i) => axes.some((a) => (a < 0 ? a + shape.length : a) === i));
  const os = shape.filter((_, i) => !red[i]);
  const acc = new Float64Array(sizeOf(os)).fill(op === 'max' ? -Infinity : 0);
  let count = 1;
  shape.forEach((d, i) => {
    if (red[i]) count *= d;
  });
  for (let i = 0; i < x.length; i++) {
    const idx = unravel(i, shape).filter((_, d) => !red[d]);
    let o = 0;
    for (let d = 0; d < os.length; d++) o = o * os[d]! + idx[d]!;
    const v = x[i]!;
    acc[o] =
      op === 'max' ? (Number.isNaN(v) || Number.isNaN(acc[o]!) ? NaN : Math.max(acc[o]!, v)) : acc[o]! + v;
  }
  if (op === 'mean') for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! / count;
  return { out: acc, shape: keep ? shape.map((d, i) => (red[i] ? 1 : d)) : os };
}

export function refTranspose(
  x: ArrayLike<number>,
  shape: readonly number[],
  perm: readonly number[],
): number[] {
  const os = perm.map((p) => shape[p]!);
  const st = strides(shape);
  return Array.from({ length: sizeOf(os) }, (_, i) => {
    const idx = unravel(i, os);
    return x[idx.reduce((o, v, d) => o + v * st[perm[d]!]!, 0)]!;
  });
}

export function refRmsNorm(x: ArrayLike<number>, w: ArrayLike<number>, L: number, eps: number): number[] {
  return rows(x, L).flatMap((r) => {
    const ms = r.reduce((p, v) => p + v * v, 0) / L;
    return r.map((v, j) => (v / Math.sqrt(ms + eps)) * w[j]!);
  });
}

export function refRope(
  x: ArrayLike<number>,
  shape: readonly number[],
  cos: ArrayLike<number>,
  sin: ArrayLike<number>,
): Float64Array {
  const [T, H, D] = shape.slice(-3) as [number, number, number];
  const outer = sizeOf(shape.slice(0, -3));
  const ref = new Float64Array(x.length);
  const h2 = D / 2;
  for (let b = 0; b < outer; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < H; h++) {
        const p = ((b * T + t) * H + h) * D;
        for (let j = 0; j < h2; j++) {
          const c = cos[t * h2 + j]!;
          const s = sin[t * h2 + j]!;
          ref[p + j] = x[p + j]! * c - x[p + j + h2]! * s;
          ref[p + j + h2] = x[p + j + h2]! * c + x[p + j]! * s;
        }
      }
  return ref;
}

/** Float64 attention: q [B,T,H,D], k/v [B,S,Hkv,D] → [B,T,H·D]. */
export function refAttention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  qShape: readonly number[],
  kvShape: readonly number[],
  o: AttentionOptions,
): Float64Array {
  const [B, T, H, D] = qShape as [number, number, number, number];
  const [, S, Hkv] = kvShape as [number, number, number, number];
  const offset = o.offset ?? S - T;
  const out = new Float64Array(B * T * H * D);
  const G = H / Hkv;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < H; h++) {
        if (S === 0) continue; // no keys: zeros, as an empty softmax · v gives
        const kh = Math.floor(h / G);
        const sc: number[] = [];
        for (let s = 0; s < S; s++) {
          let d = 0;
          for (let j = 0; j < D; j++)
            d += q[((b * T + t) * H + h) * D + j]! * k[((b * S + s) * Hkv + kh) * D + j]!;
          sc.push(o.causal && s > offset + t ? Number.NEGATIVE_INFINITY : d * o.scale);
        }
        const p = refSoftmaxRow(sc);
        for (let j = 0; j < D; j++) {
          let acc = 0;
          for (let s = 0; s < S; s++) acc += p[s]! * v[((b * S + s) * Hkv + kh) * D + j]!;
          out[((b * T + t) * H + h) * D + j] = acc;
        }
      }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The suite

/** What each test body gets: the backend, an Ops over it, and tracked helpers. */
interface Ctx {
  be: Backend;
  ops: Ops;
  /** Uploads f32 (numbers or Float32Array) or i32 (Int32Array) data, disposed after the test. */
  up(data: Float32Array | Int32Array | number[], shape: readonly number[]): Tensor;
  upI(data: number[], shape: readonly number[]): Tensor;
  vals(t: Tensor): Promise<number[]>;
  /** Compares an f32 tensor with a float64 reference under the scaled tolerance of `kind`. */
  close(t: Tensor, expected: ArrayLike<number>, kind: ToleranceKind, atol?: number): Promise<void>;
  tol(kind: ToleranceKind): [number, number];
}

const NAN = Number.NaN;
const INF = Number.POSITIVE_INFINITY;

/**
 * Registers the conformance suite for one backend under `describe('backend conformance: <label>')`.
 * `create` runs once (in `beforeAll`); the backend's `close()` runs after the suite.
 */
export function describeBackendConformance(
  label: string,
  create: () => Promise<Backend>,
  options: ConformanceOptions = {},
): void {
  if (!vitest) throw new Error('describeBackendConformance must be called from a vitest test file');
  const { afterAll, beforeAll, describe, expect, it } = vitest;
  const mult = options.tolerance ?? 1;
  const skips = (options.skip ?? []).map((s) => {
    const i = s.indexOf(' # ');
    return i < 0
      ? { pattern: s, reason: 'skipped by the backend' }
      : { pattern: s.slice(0, i), reason: s.slice(i + 3) };
  });
  const leakOps = options.leakOps ?? 1000;

  describe(`backend conformance: ${label}`, () => {
    let be: Backend | undefined;
    let ops: Ops | undefined;
    beforeAll(async () => {
      be = await create();
      ops = new Ops(be);
    }, 120_000);
    afterAll(async () => {
      await be?.close?.();
    });

    const tol = (kind: ToleranceKind): [number, number] => {
      const [r, a] = TOLERANCES[kind];
      return [r * mult, a * mult];
    };

    /** Registers one test; its body runs inside Ops.tidy so every tracked tensor is released. */
    function check(group: string, name: string, fn: (c: Ctx) => Promise<void>): void {
      const title = `${group} › ${name}`;
      const skip = skips.find((s) => title.includes(s.pattern));
      if (skip) {
        it.skip(`${name} (skipped: ${skip.reason})`, () => {});
        return;
      }
      it(
        name,
        async () => {
          if (!be || !ops) throw new Error(`backend '${label}' did not initialise`);
          const b = be;
          const o = ops;
          const up = (data: Float32Array | Int32Array | number[], shape: readonly number[]): Tensor =>
            o.upload(Array.isArray(data) ? Float32Array.from(data) : data, shape);
          const vals = async (t: Tensor) => Array.from(await b.read(t));
          const ctx: Ctx = {
            be: b,
            ops: o,
            up,
            upI: (data, shape) => o.upload(Int32Array.from(data), shape),
            vals,
            tol,
            close: async (t, expected, kind, atol) => {
              expect(t.dtype).toBe('f32');
              const [r, a] = tol(kind);
              expectClose(await b.read(t), expected, r, atol ?? a);
            },
          };
          await o.tidy(() => fn(ctx));
        },
        options.timeout,
      );
    }

    describe('tensors', () => {
      check('tensors', 'uploads, reads copies, counts and disposes', async ({ be, vals }) => {
        const base = be.liveTensors();
        const t = be.upload(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
        expect(t.shape).toEqual([2, 3]);
        expect(t.dtype).toBe('f32');
        expect(t.backend).toBe(be);
        expect(be.liveTensors()).toBe(base + 1);
        const r = await be.read(t);
        expect(r).toBeInstanceOf(Float32Array);
        r[0] = 99;
        expect((await be.read(t))[0]).toBe(1);
        const v = await be.reshape(t, [3, -1]);
        expect(v.shape).toEqual([3, 2]);
        expect(be.liveTensors()).toBe(base + 2);
        be.dispose(t);
        be.dispose(t); // harmless
        expect(be.liveTensors()).toBe(base + 1);
        expect(await vals(v)).toEqual([1, 2, 3, 4, 5, 6]); // a reshape outlives its source
        await expect(be.read(t)).rejects.toThrow();
        be.dispose(v);
        expect(be.liveTensors()).toBe(base);
      });

      check('tensors', 'i32 and empty tensors', async ({ be, up, upI, vals, ops }) => {
        const i = upI([1, -2, 2147483647], [3]);
        expect(i.dtype).toBe('i32');
        const ri = await be.read(i);
        expect(ri).toBeInstanceOf(Int32Array);
        expect(Array.from(ri)).toEqual([1, -2, 2147483647]);
        const e = up([], [0, 3]);
        expect(e.shape).toEqual([0, 3]);
        expect(await vals(e)).toEqual([]);
        expect((await ops.reshape(e, [3, 0])).shape).toEqual([3, 0]);
        const s = up([7], []);
        expect(s.shape).toEqual([]);
        expect(await vals(s)).toEqual([7]);
        expect((await ops.reshape(s, [1, 1])).shape).toEqual([1, 1]);
      });

      check('tensors', 'validates uploads and reshapes', async ({ be, up, upI, ops }) => {
        expect(() => be.upload(Float32Array.from([1, 2, 3]), [2, 2])).toThrow();
        const i = upI([1, 2], [2]);
        await expect(ops.reshape(i, [3])).rejects.toThrow();
        await expect(ops.reshape(i, [-1, -1])).rejects.toThrow();
        const x = up(randomF32([2, 3, 4]), [2, 3, 4]);
        expect((await ops.reshape(x, [4, -1, 2])).shape).toEqual([4, 3, 2]);
        expect((await ops.reshape(x, [24])).shape).toEqual([24]);
      });

      check('tensors', 'ops never mutate their inputs', async ({ up, vals, ops }) => {
        const xs = randomF32([3, 8], 2);
        const x = up(xs.slice(), [3, 8]);
        const w = up(randomF32([8], 3), [8]);
        await ops.unary('exp', x);
        await ops.scale(x, 3, 1);
        await ops.binary('mul', x, x);
        await ops.softmax(x);
        await ops.rmsNorm(x, w, 1e-5);
        await ops.matmul(x, x, { transposeB: true });
        await ops.transpose(x, [1, 0]);
        const r = await ops.reshape(x, [24]);
        await ops.slice(r, [2], [5]);
        expect(await vals(x)).toEqual(Array.from(xs));
        expect(await vals(r)).toEqual(Array.from(xs));
      });
    });

    describe('binary', () => {
      const cases: [number[], number[]][] = [
        [
          [3, 5],
          [3, 5],
        ],
        [[3, 5], []],
        [[], [3, 5]],
        [[], []],
        [[3, 5], [1]],
        [[2, 3, 4], [4]],
        [
          [2, 3, 4],
          [1, 1, 4],
        ],
        [[4], [2, 3, 4]],
        [
          [2, 3, 4],
          [3, 1],
        ],
        [
          [2, 1, 4],
          [3, 1],
        ],
        [
          [5, 1, 3],
          [1, 4, 1],
        ],
        [
          [2, 3, 4, 5],
          [3, 1, 5],
        ],
        [[1, 7], [7]],
        [
          [1, 4099],
          [1, 4099],
        ],
        [[67, 129], [129]],
        [
          [67, 129],
          [67, 1],
        ],
        [[0, 3], [3]],
        [
          [0, 3],
          [1, 3],
        ],
        [
          [2, 0],
          [2, 1],
        ],
      ];
      const opsList: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'max', 'min'];
      for (const [as, bs] of cases) {
        check('binary', `[${as}] ⊕ [${bs}]`, async ({ up, ops, close }) => {
          const a = randomF32(as, 3);
          const b = randomF32(bs, 4, 0.5, 2);
          const ta = up(a, as);
          const tb = up(b, bs);
          for (const op of opsList) {
            const { out, shape } = refBinary(op, a, as, b, bs);
            const t = await ops.binary(op, ta, tb);
            expect(t.shape).toEqual(shape);
            await close(t, out, 'arith');
          }
        });
      }

      check('binary', 'propagates NaN and Inf', async ({ up, ops, close }) => {
        const a = up([NAN, 1, INF, -0, 2, -INF], [6]);
        const b = up([1, NAN, INF, 0, -INF, 3], [6]);
        await close(await ops.binary('max', a, b), [NAN, NAN, INF, 0, 2, 3], 'arith');
        await close(await ops.binary('min', a, b), [NAN, NAN, INF, -0, -INF, -INF], 'arith');
        await close(await ops.binary('add', a, b), [NAN, NAN, INF, 0, -INF, -INF], 'arith');
        await close(await ops.binary('sub', a, b), [NAN, NAN, NAN, -0, INF, -INF], 'arith');
        await close(await ops.binary('mul', a, b), [NAN, NAN, INF, -0, -INF, -INF], 'arith');
        await close(await ops.binary('div', a, b), [NAN, NAN, NAN, NAN, -0, -INF], 'arith');
        await close(await ops.binary('div', up([1, -1, 0], [3]), up([0], [])), [INF, -INF, NAN], 'arith');
      });

      check('binary', 'large and tiny magnitudes', async ({ up, ops, close }) => {
        const big = Float32Array.from(randomF32([4, 9], 5), (v) => v * 1e30);
        const small = Float32Array.from(randomF32([4, 9], 6), (v) => v * 1e-30);
        const tb = up(big, [4, 9]);
        const ts = up(small, [4, 9]);
        for (const op of opsList) {
          await close(await ops.binary(op, tb, tb), refBinary(op, big, [4, 9], big, [4, 9]).out, 'arith');
          // Products of tiny values underflow; flushing subnormals to zero is allowed.
          await close(
            await ops.binary(op, ts, ts),
            refBinary(op, small, [4, 9], small, [4, 9]).out,
            'arith',
            1e-37,
          );
          await close(
            await ops.binary(op, tb, ts),
            refBinary(op, big, [4, 9], small, [4, 9]).out,
            'arith',
            1e-37,
          );
        }
      });

      check('binary', 'i32 arithmetic keeps i32', async ({ upI, vals, ops }) => {
        const a = upI([7, -7, 3, 100000], [4]);
        const b = upI([2], [1]);
        const p = upI([7, 9, 3, 100000], [4]);
        const want: Record<string, number[]> = {
          add: [9, -5, 5, 100002],
          sub: [5, -9, 1, 99998],
          mul: [14, -14, 6, 200000],
          max: [7, 2, 3, 100000],
          min: [2, -7, 2, 2],
        };
        for (const [op, w] of Object.entries(want)) {
          const t = await ops.binary(op as BinaryOp, a, b);
          expect(t.dtype).toBe('i32');
          expect(await vals(t)).toEqual(w);
        }
        const d = await ops.binary('div', p, b);
        expect(d.dtype).toBe('i32');
        expect(await vals(d)).toEqual([3, 4, 1, 50000]);
      });

      check('binary', 'rejects mixed dtypes and shapes that do not broadcast', async ({ up, upI, ops }) => {
        await expect(ops.binary('add', upI([1], [1]), up([1], [1]))).rejects.toThrow();
        await expect(
          ops.binary('add', up(randomF32([2, 3]), [2, 3]), up(randomF32([2]), [2])),
        ).rejects.toThrow();
      });
    });

    describe('unary and scale', () => {
      const positive = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt']);
      for (const op of Object.keys(unaryRef) as UnaryOp[]) {
        check('unary', op, async ({ up, ops, close }) => {
          for (const shape of [[3, 37], [1, 4099], [5]]) {
            const x = positive.has(op) ? randomF32(shape, 5, 0.01, 4) : randomF32(shape, 5, -6, 6);
            const t = await ops.unary(op, up(x, shape));
            expect(t.shape).toEqual(shape);
            await close(t, Array.from(x, unaryRef[op]), 'unary');
          }
          expect((await ops.unary(op, up([], [0, 4]))).shape).toEqual([0, 4]);
        });
      }

      check('unary', 'NaN, ±Inf and zero', async ({ up, ops, close }) => {
        const edge = [NAN, INF, -INF, 0];
        const x = up(edge, [4]);
        const want: Record<UnaryOp, number[]> = {
          neg: [NAN, -INF, INF, -0],
          exp: [NAN, INF, 0, 1],
          log: [NAN, INF, NAN, -INF],
          sqrt: [NAN, INF, NAN, 0],
          rsqrt: [NAN, 0, NAN, INF],
          recip: [NAN, 0, -0, INF],
          abs: [NAN, INF, INF, 0],
          square: [NAN, INF, INF, 0],
          silu: [NAN, INF, NAN, 0],
          sigmoid: [NAN, 1, 0, 0.5],
          tanh: [NAN, 1, -1, 0],
          relu: [NAN, INF, 0, 0],
        };
        for (const [op, w] of Object.entries(want)) {
          // silu(−∞) = −∞·0 is NaN in exact arithmetic; backends may return −0 or NaN.
          if (op === 'silu') {
            const v = Array.from(await ops.read(await ops.unary('silu', x)));
            expectClose([v[0]!, v[1]!, v[3]!], [NAN, INF, 0]);
            expect(Number.isNaN(v[2]!) || v[2] === 0).toBe(true);
            continue;
          }
          await close(await ops.unary(op as UnaryOp, x), w, 'unary');
        }
      });

      check('unary', 'large and tiny magnitudes', async ({ up, ops, close }) => {
        const big = [1e30, -1e30, 3e38, 100, -100, 88, -88];
        const tiny = [1e-30, 3e-38, 1e-20, 1e-10];
        for (const op of Object.keys(unaryRef) as UnaryOp[]) {
          const xs = positive.has(op)
            ? [...big.filter((v) => v > 0), ...tiny]
            : [...big, ...tiny, ...tiny.map((v) => -v)];
          // Results below the smallest normal f32 may flush to zero.
          await close(await ops.unary(op, up(xs, [xs.length])), xs.map(unaryRef[op]), 'unary', 1e-37);
        }
      });

      check('unary', 'i32 neg and abs keep i32', async ({ upI, vals, ops }) => {
        const x = upI([1, -2, 0, 300000], [4]);
        const n = await ops.unary('neg', x);
        expect(n.dtype).toBe('i32');
        expect(await vals(n)).toEqual([-1, 2, -0, -300000].map((v) => v | 0));
        const a = await ops.unary('abs', x);
        expect(a.dtype).toBe('i32');
        expect(await vals(a)).toEqual([1, 2, 0, 300000]);
      });

      check('scale', 'x·mul + add', async ({ up, ops, close }) => {
        for (const shape of [
          [4, 9],
          [1, 4099],
          [0, 3],
        ]) {
          const x = randomF32(shape, 6);
          const t = up(x, shape);
          await close(
            await ops.scale(t, 2.5, -1),
            Array.from(x, (v) => v * 2.5 - 1),
            'arith',
            1e-6,
          );
          await close(
            await ops.scale(t, 0.5),
            Array.from(x, (v) => v * 0.5),
            'arith',
          );
          await close(
            await ops.scale(t, 1e30),
            Array.from(x, (v) => v * 1e30),
            'arith',
          );
        }
        await close(await ops.scale(up([NAN, INF, -INF, 1e38], [4]), 10, 1), [NAN, INF, -INF, INF], 'arith');
      });
    });

    describe('reduce', () => {
      const shapes: [number[], number[][]][] = [
        [
          [2, 3, 4],
          [[], [0], [1], [2], [-1], [0, 2], [1, 2], [0, 1], [2, 0, 1], [-3, -1]],
        ],
        [
          [3, 1, 5, 2],
          [[1], [0, 2], [0, 3], [1, 3], [0, 1, 3]],
        ],
        [
          [1, 1000],
          [[1], [0]],
        ],
        [
          [3, 1031],
          [[1], [0]],
        ],
        [[7], [[0]]],
      ];
      for (const [shape, axesList] of shapes) {
        for (const axes of axesList) {
          check('reduce', `[${shape}] axes [${axes}]`, async ({ up, ops, close }) => {
            const x = randomF32(shape, 7);
            const tx = up(x, shape);
            for (const op of ['sum', 'mean', 'max'] as ReduceOp[]) {
              for (const keep of [false, true]) {
                const ref = refReduce(op, x, shape, axes, keep);
                const t = await ops.reduce(op, tx, axes, keep);
                expect(t.shape).toEqual(ref.shape);
                await close(t, ref.out, op === 'max' ? 'arith' : 'reduce');
              }
            }
          });
        }
      }

      check('reduce', 'empty, NaN/Inf and magnitudes', async ({ up, vals, ops, close }) => {
        const e = up([], [0, 3]);
        expect(await vals(await ops.reduce('sum', e, [0]))).toEqual([0, 0, 0]);
        expect((await ops.reduce('max', e, [1])).shape).toEqual([0]);
        expect((await ops.reduce('sum', e, [1], true)).shape).toEqual([0, 1]);
        const n = up([1, NAN, 3, -INF, -INF, 2, INF, 1, -INF], [3, 3]);
        await close(await ops.reduce('max', n, [1]), [NAN, 2, INF], 'arith');
        await close(await ops.reduce('sum', n, [1]), [NAN, -INF, NAN], 'arith');
        await close(await ops.reduce('mean', n, [1]), [NAN, -INF, NAN], 'arith');
        const big = Float32Array.from(randomF32([3, 50], 8), (v) => v * 1e30);
        const tb = up(big, [3, 50]);
        for (const op of ['sum', 'mean', 'max'] as ReduceOp[]) {
          const ref = refReduce(op, big, [3, 50], [1], false).out;
          const [r] = tol('reduce');
          await close(await ops.reduce(op, tb, [1]), ref, 'reduce', r * 50e30);
        }
      });

      check('reduce', 'i32 sum keeps i32', async ({ upI, vals, ops }) => {
        const i = upI([1, 2, 3, 4, 100000, -7], [3, 2]);
        const s = await ops.reduce('sum', i, [0]);
        expect(s.dtype).toBe('i32');
        expect(await vals(s)).toEqual([100004, -1]);
        const m = await ops.reduce('max', i, [1]);
        expect(await vals(m)).toEqual([2, 4, 100000]);
      });

      check('reduce', 'rejects bad axes', async ({ up, ops }) => {
        const x = up(randomF32([2, 2]), [2, 2]);
        await expect(ops.reduce('sum', x, [2])).rejects.toThrow();
        await expect(ops.reduce('sum', x, [0, -2])).rejects.toThrow();
      });
    });

    describe('softmax, logSoftmax, rmsNorm, rope', () => {
      const shapes = [[3, 7], [1, 1000], [2, 1025], [2, 3, 5], [4, 1], [5], [2, 0], [0, 4]];
      for (const shape of shapes) {
        check('softmax', `softmax/logSoftmax [${shape}]`, async ({ up, ops, close }) => {
          const x = randomF32(shape, 8, -10, 10);
          const L = shape[shape.length - 1]!;
          const t = up(x, shape);
          const s = await ops.softmax(t);
          expect(s.shape).toEqual(shape);
          await close(s, rows(x, L || 1).flatMap(refSoftmaxRow), 'softmax');
          const l = await ops.logSoftmax(t);
          expect(l.shape).toEqual(shape);
          await close(l, rows(x, L || 1).flatMap(refLogSoftmaxRow), 'logSoftmax');
        });
      }

      check('softmax', 'stable, and numpy-like on Inf/NaN rows', async ({ up, ops, close }) => {
        const x = up(
          [1000, 1001, 999, -INF, 0, -INF, -INF, -INF, -INF, 1, INF, 2, 1, NAN, 2, -1e30, 0, 1e30],
          [6, 3],
        );
        const e = refSoftmaxRow([0, 1, -1]);
        const nan9 = new Array<number>(9).fill(NAN);
        await close(await ops.softmax(x), [...e, 0, 1, 0, ...nan9, 0, 0, 1], 'softmax');
        await close(
          await ops.logSoftmax(x),
          [...e.map(Math.log), -INF, 0, -INF, ...nan9, -2e30, -1e30, 0],
          'logSoftmax',
        );
      });

      check('softmax', 'tiny and large magnitudes', async ({ up, ops, close }) => {
        for (const m of [1e-30, 1e-6, 1e3, 1e30]) {
          const x = Float32Array.from(randomF32([3, 17], 9), (v) => v * m);
          const t = up(x, [3, 17]);
          await close(await ops.softmax(t), rows(x, 17).flatMap(refSoftmaxRow), 'softmax', 1e-37);
          const [r] = tol('logSoftmax');
          await close(
            await ops.logSoftmax(t),
            rows(x, 17).flatMap(refLogSoftmaxRow),
            'logSoftmax',
            2e-6 + r * m,
          );
        }
      });

      check('rmsNorm', 'rmsNorm over awkward shapes', async ({ up, ops, close }) => {
        for (const shape of [
          [3, 17],
          [2, 2, 64],
          [1, 1],
          [1, 1031],
          [5, 288],
          [0, 8],
        ]) {
          const L = shape[shape.length - 1]!;
          const x = randomF32(shape, 9, -3, 3);
          const w = randomF32([L], 10);
          const y = await ops.rmsNorm(up(x, shape), up(w, [L]), 1e-5);
          expect(y.shape).toEqual(shape);
          await close(y, refRmsNorm(x, w, L, 1e-5), 'rmsNorm');
        }
      });

      check('rmsNorm', 'rmsNorm magnitudes, eps and NaN', async ({ up, ops, close }) => {
        const w = randomF32([16], 10);
        for (const [m, eps] of [
          [1e15, 1e-5],
          [1e-15, 1e-5],
          [1e-15, 1e-36],
          [1e-3, 0],
        ] as const) {
          const x = Float32Array.from(randomF32([2, 16], 11), (v) => v * m);
          await close(
            await ops.rmsNorm(up(x, [2, 16]), up(w, [16]), eps),
            refRmsNorm(x, w, 16, eps),
            'rmsNorm',
            1e-30,
          );
        }
        const n = randomF32([2, 16], 12);
        n[3] = NAN;
        const y = Array.from(await ops.read(await ops.rmsNorm(up(n, [2, 16]), up(w, [16]), 1e-5)));
        expect(y.slice(0, 16).every(Number.isNaN)).toBe(true);
        expectClose(y.slice(16), refRmsNorm(n.slice(16), w, 16, 1e-5), ...tol('rmsNorm'));
      });

      check('rmsNorm', 'rmsNorm rejects a weight that does not match', async ({ up, ops }) => {
        await expect(
          ops.rmsNorm(up(randomF32([2, 3]), [2, 3]), up(randomF32([2]), [2]), 1e-5),
        ).rejects.toThrow();
      });

      for (const shape of [
        [2, 3, 4, 6],
        [1, 1, 1, 2],
        [3, 5, 3, 10],
        [2, 2, 3, 4, 8],
        [7, 2, 64],
        [1, 0, 2, 4],
      ]) {
        check('rope', `rope (rotate-half) [${shape}]`, async ({ up, ops, close }) => {
          const [T, , D] = shape.slice(-3) as [number, number, number];
          const x = randomF32(shape, 11);
          const cos = randomF32([T, D / 2], 12);
          const sin = randomF32([T, D / 2], 13);
          const y = await ops.rope(up(x, shape), up(cos, [T, D / 2]), up(sin, [T, D / 2]));
          expect(y.shape).toEqual(shape);
          await close(y, refRope(x, shape, cos, sin), 'rope');
        });
      }

      check('rope', 'rope rejects cos/sin of the wrong shape', async ({ up, ops }) => {
        const x = up(randomF32([2, 3, 4, 6]), [2, 3, 4, 6]);
        await expect(
          ops.rope(x, up(randomF32([3, 3]), [3, 3]), up(randomF32([3, 6]), [3, 6])),
        ).rejects.toThrow();
      });
    });

    describe('gather and crossEntropy', () => {
      check('gather', 'rows at any ids shape, f32 and i32 tables', async ({ up, upI, vals, ops }) => {
        const table = randomF32([5, 3], 14);
        const ids = [4, 0, 2, 2];
        const g = await ops.gather(up(table, [5, 3]), upI(ids, [2, 2]));
        expect(g.shape).toEqual([2, 2, 3]);
        expect(await vals(g)).toEqual(ids.flatMap((i) => Array.from(table.subarray(i * 3, i * 3 + 3))));
        const wide = randomF32([3, 1031], 15);
        const gw = await ops.gather(up(wide, [3, 1031]), upI([2, 1], [2]));
        expect(await vals(gw)).toEqual([...wide.subarray(2062, 3093), ...wide.subarray(1031, 2062)]);
        const t3 = randomF32([4, 2, 3], 16);
        const g3 = await ops.gather(up(t3, [4, 2, 3]), upI([3], []));
        expect(g3.shape).toEqual([2, 3]);
        expect(await vals(g3)).toEqual(Array.from(t3.subarray(18, 24)));
        const it32 = await ops.gather(upI([10, 11, 12], [3]), upI([2, 0], [2]));
        expect(it32.dtype).toBe('i32');
        expect(await vals(it32)).toEqual([12, 10]);
        expect((await ops.gather(up(table, [5, 3]), upI([], [0]))).shape).toEqual([0, 3]);
        expect((await ops.gather(up(table, [5, 3]), upI([], [2, 0]))).shape).toEqual([2, 0, 3]);
      });

      check('gather', 'rejects out-of-range and non-i32 ids', async ({ up, upI, ops }) => {
        const t = up(randomF32([5, 3]), [5, 3]);
        await expect(ops.gather(t, upI([1, 5], [2]))).rejects.toThrow();
        await expect(ops.gather(t, upI([-1], [1]))).rejects.toThrow();
        await expect(ops.gather(t, up([1], [1]))).rejects.toThrow();
      });

      check('crossEntropy', '−log softmax[target]', async ({ up, upI, ops, close }) => {
        for (const [N, V] of [
          [6, 33],
          [1, 1],
          [3, 1031],
          [0, 5],
        ] as const) {
          const x = randomF32([N, V], 16, -20, 20);
          if (N > 0 && V > 5) x[5] = 1e4; // stability
          const tg = Array.from({ length: N }, (_, i) => (i * 7 + 3) % V);
          const ref = rows(x, V).map((r, i) => -refLogSoftmaxRow(r)[tg[i]!]!);
          const ce = await ops.crossEntropy(up(x, [N, V]), upI(tg, [N]));
          expect(ce.shape).toEqual([N]);
          await close(ce, ref, 'crossEntropy');
        }
        const big = Float32Array.from(randomF32([2, 9], 17), (v) => v * 1e30);
        const ref = rows(big, 9).map((r) => -refLogSoftmaxRow(r)[4]!);
        await close(await ops.crossEntropy(up(big, [2, 9]), upI([4, 4], [2])), ref, 'crossEntropy', 1e25);
      });

      check(
        'crossEntropy',
        'rejects out-of-range targets and mismatched shapes',
        async ({ up, upI, ops }) => {
          const x = up(randomF32([3, 4]), [3, 4]);
          await expect(ops.crossEntropy(x, upI([0, 0, 4], [3]))).rejects.toThrow();
          await expect(ops.crossEntropy(x, upI([0, -1, 0], [3]))).rejects.toThrow();
          await expect(ops.crossEntropy(x, upI([0], [1]))).rejects.toThrow();
        },
      );
    });

    describe('transpose, slice, concat', () => {
      const cases: [number[], number[]][] = [
        [
          [3, 4],
          [1, 0],
        ],
        [
          [67, 45],
          [1, 0],
        ],
        [
          [1, 4099],
          [1, 0],
        ],
        [
          [3, 4, 5],
          [2, 0, 1],
        ],
        [
          [3, 4, 5],
          [0, 2, 1],
        ],
        [
          [3, 4, 5],
          [1, 0, 2],
        ],
        [
          [2, 1, 3, 4],
          [0, 2, 1, 3],
        ],
        [
          [2, 3, 4, 5],
          [0, 2, 1, 3],
        ],
        [
          [2, 3, 4, 5],
          [3, 2, 1, 0],
        ],
        [
          [2, 3, 4, 5],
          [-1, 0, -3, 2],
        ],
        [
          [2, 3, 2, 3, 4],
          [0, 3, 1, 2, 4],
        ],
        [
          [2, 0, 3],
          [2, 1, 0],
        ],
        [
          [3, 4],
          [0, 1],
        ],
        [
          [40, 3, 50],
          [2, 1, 0],
        ],
        [
          [300, 7],
          [1, 0],
        ],
        [
          [5, 301, 6],
          [0, 2, 1],
        ],
      ];
      for (const [shape, perm] of cases) {
        check('transpose', `transpose [${shape}] by [${perm}]`, async ({ up, upI, vals, ops }) => {
          const x = randomF32(shape, 17);
          const p = perm.map((a) => (a < 0 ? a + shape.length : a));
          const t = await ops.transpose(up(x, shape), perm);
          expect(t.shape).toEqual(p.map((a) => shape[a]));
          expect(await vals(t)).toEqual(refTranspose(x, shape, p));
          const xi = Array.from(x, (v) => Math.round(v * 1000) | 0);
          const ti = await ops.transpose(upI(xi, shape), perm);
          expect(ti.dtype).toBe('i32');
          expect(await vals(ti)).toEqual(refTranspose(xi, shape, p));
        });
      }

      check('transpose', 'rejects bad perms', async ({ up, ops }) => {
        await expect(ops.transpose(up(randomF32([2, 3]), [2, 3]), [0, 0])).rejects.toThrow();
        await expect(ops.transpose(up(randomF32([2, 3]), [2, 3]), [0])).rejects.toThrow();
      });

      check(
        'slice',
        'slices any box, negative begins, -1 sizes, empty results, i32',
        async ({ up, upI, vals, ops }) => {
          const shape = [4, 5, 40];
          const x = randomF32(shape, 18);
          const xi = Array.from(x, (v) => Math.round(v * 1000) | 0);
          const tx = up(x, shape);
          const txi = upI(xi, shape);
          const check = async (begin: number[], sz: number[]) => {
            const b = begin.map((v, i) => (v < 0 ? v + shape[i]! : v));
            const s = sz.map((v, i) => (v === -1 ? shape[i]! - b[i]! : v));
            const st = strides(shape);
            const at = (i: number) => unravel(i, s).reduce((o, v, d) => o + (v + b[d]!) * st[d]!, 0);
            const t = await ops.slice(tx, begin, sz);
            expect(t.shape).toEqual(s);
            expect(await vals(t)).toEqual(Array.from({ length: sizeOf(s) }, (_, i) => x[at(i)]));
            const ti = await ops.slice(txi, begin, sz);
            expect(ti.dtype).toBe('i32');
            expect(await vals(ti)).toEqual(Array.from({ length: sizeOf(s) }, (_, i) => xi[at(i)]));
          };
          await check([1, 2, 3], [2, 2, 5]);
          await check([0, 0, 0], [4, 5, 40]);
          await check([0, 1, 0], [4, 3, 40]);
          await check([-1, -2, 0], [-1, -1, 33]);
          await check([2, 0, 0], [0, 5, 40]);
          await check([3, 4, 39], [1, 1, 1]);
          await check([0, 0, 7], [4, 5, 33]);
          await expect(ops.slice(tx, [0, 0, 30], [1, 1, 11])).rejects.toThrow();
        },
      );

      check('concat', 'along any axis, with empty parts, i32', async ({ up, upI, vals, ops }) => {
        const a = randomF32([2, 3, 4], 19);
        const b = randomF32([2, 5, 4], 20);
        const c = randomF32([2, 0, 4], 21);
        const t = await ops.concat([up(a, [2, 3, 4]), up(c, [2, 0, 4]), up(b, [2, 5, 4])], 1);
        expect(t.shape).toEqual([2, 8, 4]);
        const ref: number[] = [];
        for (let i = 0; i < 2; i++)
          ref.push(...a.subarray(i * 12, i * 12 + 12), ...b.subarray(i * 20, i * 20 + 20));
        expect(await vals(t)).toEqual(ref);
        const big = randomF32([3, 50], 22);
        const t0 = await ops.concat([up(big, [3, 50]), up(big, [3, 50])], 0);
        expect(await vals(t0)).toEqual([...big, ...big]);
        const tl = await ops.concat([up(a, [2, 3, 4]), up(a, [2, 3, 4])], -1);
        expect(tl.shape).toEqual([2, 3, 8]);
        expect((await vals(tl)).slice(0, 8)).toEqual([...a.subarray(0, 4), ...a.subarray(0, 4)]);
        const one = await ops.concat([up(a, [2, 3, 4])], 2);
        expect(await vals(one)).toEqual(Array.from(a));
        const many = await ops.concat(
          Array.from({ length: 7 }, (_, i) => up([i, i + 0.5], [1, 2])),
          0,
        );
        expect(many.shape).toEqual([7, 2]);
        expect(await vals(many)).toEqual(Array.from({ length: 7 }, (_, i) => [i, i + 0.5]).flat());
        const ti = await ops.concat([upI([1, 2], [2, 1]), upI([3, 4], [2, 1])], 1);
        expect(ti.dtype).toBe('i32');
        expect(await vals(ti)).toEqual([1, 3, 2, 4]);
        await expect(ops.concat([up(a, [2, 3, 4]), up(b, [2, 5, 4])], 0)).rejects.toThrow();
        await expect(ops.concat([], 0)).rejects.toThrow();
      });
    });

    describe('matmul', () => {
      const mkn: [number, number, number][] = [
        [1, 1, 1],
        [1, 7, 5],
        [5, 7, 1],
        [4, 8, 4],
        [3, 5, 9],
        [13, 17, 11],
        [33, 65, 70],
        [9, 130, 300],
        [301, 5, 6],
        [2, 0, 3],
        [0, 4, 3],
        [3, 4, 0],
      ];
      for (const [M, K, N] of mkn) {
        check('matmul', `[${M}×${K}]·[${K}×${N}], all transposes`, async ({ up, ops, close }) => {
          for (const tA of [false, true]) {
            for (const tB of [false, true]) {
              const as = tA ? [K, M] : [M, K];
              const bs = tB ? [N, K] : [K, N];
              const a = randomF32(as, M * 7 + K);
              const b = randomF32(bs, N * 3 + K);
              const ref = refMatmul(a, as, b, bs, tA, tB);
              const t = await ops.matmul(up(a, as), up(b, bs), { transposeA: tA, transposeB: tB });
              expect(t.shape).toEqual(ref.shape);
              await close(t, ref.out, 'matmul');
            }
          }
        });
      }

      const batched: [number[], number[], boolean, boolean][] = [
        [[2, 3, 5, 7], [7, 4], false, false],
        [[2, 3, 5, 7], [4, 7], false, true],
        [[2, 1, 5, 7], [1, 3, 7, 4], false, false],
        [[2, 2, 3, 4, 8], [2, 2, 1, 6, 8], false, true], // [B,Hkv,G,T,D]·[B,Hkv,1,S,D]ᵀ
        [[2, 2, 3, 4, 6], [2, 2, 1, 6, 8], false, false], // probabilities · v
        [[5, 7], [3, 7, 4], false, false],
        [[3, 7, 5], [3, 7, 4], true, false],
        [[3, 2, 7, 5], [2, 4, 7], true, true],
        [[3, 1, 2], [3, 2, 6], false, false],
        [[1, 2, 20, 9], [4, 1, 9, 3], false, false],
        [[2, 0, 3, 4], [4, 5], false, false],
        [[4, 37, 288], [768, 288], false, true], // x·Wᵀ with a model-like weight
      ];
      for (const [as, bs, tA, tB] of batched) {
        check(
          'matmul',
          `batched [${as}]${tA ? 'ᵀ' : ''} · [${bs}]${tB ? 'ᵀ' : ''}`,
          async ({ up, ops, close }) => {
            const a = randomF32(as, 23);
            const b = randomF32(bs, 24);
            const ref = refMatmul(a, as, b, bs, tA, tB);
            const t = await ops.matmul(up(a, as), up(b, bs), { transposeA: tA, transposeB: tB });
            expect(t.shape).toEqual(ref.shape);
            await close(t, ref.out, 'matmul');
          },
        );
      }

      check('matmul', 'large and tiny magnitudes', async ({ up, ops, close }) => {
        for (const m of [1e-18, 1e18]) {
          const a = Float32Array.from(randomF32([5, 16], 25), (v) => v * m);
          const b = Float32Array.from(randomF32([16, 3], 26), (v) => v * m);
          const ref = refMatmul(a, [5, 16], b, [16, 3]);
          const [r] = tol('matmul');
          await close(await ops.matmul(up(a, [5, 16]), up(b, [16, 3])), ref.out, 'matmul', r * m * m);
        }
      });

      check('matmul', 'propagates NaN/Inf', async ({ up, ops, close }) => {
        const t = await ops.matmul(up([1, NAN, 2, 3], [2, 2]), up([1, 0, 0, INF], [2, 2]));
        await close(t, [NAN, NAN, 2, INF], 'matmul');
        const big = await ops.matmul(up([3e38, 3e38], [1, 2]), up([1, 1], [2, 1]));
        await close(big, [INF], 'matmul');
      });

      check('matmul', 'rejects bad shapes', async ({ up, ops }) => {
        await expect(
          ops.matmul(up(randomF32([2, 3]), [2, 3]), up(randomF32([2, 3]), [2, 3])),
        ).rejects.toThrow();
        await expect(ops.matmul(up(randomF32([3]), [3]), up(randomF32([3, 2]), [3, 2]))).rejects.toThrow();
        await expect(
          ops.matmul(up(randomF32([2, 2, 3]), [2, 2, 3]), up(randomF32([3, 3, 2]), [3, 3, 2])),
        ).rejects.toThrow();
      });
    });

    describe('attention', () => {
      const cases: { name: string; q: number[]; kv: number[]; causal: boolean; offset?: number }[] = [
        { name: 'MHA causal T=S', q: [2, 5, 2, 8], kv: [2, 5, 2, 8], causal: true },
        { name: 'MHA non-causal T≠S', q: [1, 3, 2, 8], kv: [1, 7, 2, 8], causal: false },
        { name: 'GQA 4/2 causal', q: [2, 6, 4, 5], kv: [2, 6, 2, 5], causal: true },
        { name: 'GQA 6/1 causal, default offset S−T', q: [1, 3, 6, 4], kv: [1, 7, 1, 4], causal: true },
        {
          name: 'GQA 4/2 causal, explicit offset',
          q: [1, 3, 4, 8],
          kv: [1, 7, 2, 8],
          causal: true,
          offset: 2,
        },
        { name: 'decode T=1', q: [2, 1, 4, 16], kv: [2, 9, 2, 16], causal: true },
        { name: 'causal, offset beyond S', q: [1, 2, 2, 3], kv: [1, 4, 2, 3], causal: true, offset: 10 },
        { name: 'GQA 6/2, odd sizes, causal', q: [2, 9, 6, 7], kv: [2, 13, 2, 7], causal: true, offset: 3 },
        { name: 'GQA 6/3, odd sizes, non-causal', q: [1, 5, 6, 6], kv: [1, 11, 3, 6], causal: false },
        { name: 'longer causal prefill', q: [1, 40, 4, 16], kv: [1, 40, 2, 16], causal: true },
        { name: 'model-like, 8 heads of 32', q: [3, 33, 8, 32], kv: [3, 33, 8, 32], causal: true },
        { name: 'no keys', q: [1, 2, 2, 4], kv: [1, 0, 2, 4], causal: false },
      ];
      for (const c of cases) {
        check('attention', `${c.name}: composite == reference`, async ({ up, ops, close }) => {
          const q = randomF32(c.q, 25);
          const k = randomF32(c.kv, 26);
          const v = randomF32(c.kv, 27);
          const o = { scale: 1 / Math.sqrt(c.q[3]!), causal: c.causal, offset: c.offset };
          const comp = await ops.attentionComposite(up(q, c.q), up(k, c.kv), up(v, c.kv), o);
          const [B, T, H, D] = c.q as [number, number, number, number];
          expect(comp.shape).toEqual([B, T, H * D]);
          await close(comp, refAttention(q, k, v, c.q, c.kv, o), 'attention');
        });
        check('attention', `${c.name}: fused attention == composite == reference`, async (ctx) => {
          const { be, up, ops, close } = ctx;
          if (!be.attention) return; // optional op: nothing to check
          const q = randomF32(c.q, 25);
          const k = randomF32(c.kv, 26);
          const v = randomF32(c.kv, 27);
          const o = { scale: 1 / Math.sqrt(c.q[3]!), causal: c.causal, offset: c.offset };
          const [tq, tk, tv] = [up(q, c.q), up(k, c.kv), up(v, c.kv)];
          const fused = await ops.attention(tq, tk, tv, o);
          const [B, T, H, D] = c.q as [number, number, number, number];
          expect(fused.shape).toEqual([B, T, H * D]);
          const comp = await ops.attentionComposite(tq, tk, tv, o);
          const [r, a] = tol('attention');
          expectClose(await be.read(fused), await be.read(comp), r, a);
          await close(fused, refAttention(q, k, v, c.q, c.kv, o), 'attention');
        });
      }

      check('attention', 'flat and peaked score distributions', async ({ be, up, ops, close }) => {
        for (const m of [1e-10, 4]) {
          const shape = [1, 4, 2, 8];
          const q = Float32Array.from(randomF32(shape, 28), (x) => x * m);
          const k = Float32Array.from(randomF32(shape, 29), (x) => x * m);
          const v = randomF32(shape, 30);
          const o = { scale: 1 / Math.sqrt(8), causal: true };
          const ref = refAttention(q, k, v, shape, shape, o);
          await close(
            await ops.attentionComposite(up(q, shape), up(k, shape), up(v, shape), o),
            ref,
            'attention',
            1e-4,
          );
          if (be.attention)
            await close(
              await ops.attention(up(q, shape), up(k, shape), up(v, shape), o),
              ref,
              'attention',
              1e-4,
            );
        }
      });

      check(
        'attention',
        'a query with no visible key gives NaN, as the composite does',
        async ({ be, up, ops }) => {
          const [q, k, v] = [
            up(randomF32([1, 2, 1, 4], 1), [1, 2, 1, 4]),
            up(randomF32([1, 3, 1, 4], 2), [1, 3, 1, 4]),
            up(randomF32([1, 3, 1, 4], 3), [1, 3, 1, 4]),
          ];
          const o = { scale: 0.5, causal: true, offset: -1 };
          const c = Array.from(await be.read(await ops.attentionComposite(q, k, v, o)));
          expect(c.slice(0, 4).every(Number.isNaN)).toBe(true);
          expect(c.slice(4).every(Number.isFinite)).toBe(true);
          if (!be.attention) return;
          const f = Array.from(await be.read(await ops.attention(q, k, v, o)));
          expect(f.slice(0, 4).every(Number.isNaN)).toBe(true);
          const [r, a] = tol('attention');
          expectClose(f, c, r, a);
        },
      );

      check('attention', 'fused attention rejects mismatched shapes', async ({ be, up, ops }) => {
        if (!be.attention) return;
        await expect(
          ops.attention(
            up(randomF32([1, 2, 3, 4]), [1, 2, 3, 4]),
            up(randomF32([1, 2, 2, 4]), [1, 2, 2, 4]),
            up(randomF32([1, 2, 2, 4]), [1, 2, 2, 4]),
            { scale: 1, causal: false },
          ),
        ).rejects.toThrow();
      });
    });

    describe('no leaks', () => {
      check(
        'leaks',
        'composites inside Ops.tidy release everything but what they return',
        async ({ be, ops }) => {
          const base = be.liveTensors();
          const x = ops.upload(randomF32([2, 4, 4, 8], 30), [2, 4, 4, 8]);
          const kv = ops.upload(randomF32([2, 6, 2, 8], 31), [2, 6, 2, 8]);
          const kept = await ops.tidy(async () => {
            const a = await ops.attentionComposite(x, kv, kv, { scale: 0.3, causal: true });
            const b = await ops.attention(x, kv, kv, { scale: 0.3, causal: true });
            const d = await ops.sub(a, b);
            const r = await ops.reduce('max', await ops.unary('abs', d), [0, 1, 2]);
            const s = await ops.softmax(await ops.reshape(await ops.transpose(x, [0, 2, 1, 3]), [8, 32]));
            await ops.concat([s, await ops.slice(s, [0, 0], [8, 4])], 1);
            await ops.linear(s, await ops.reshape(x, [8, 32]));
            return r;
          });
          expect(be.liveTensors()).toBe(base + 3);
          ops.dispose(kept, x, kv);
          expect(be.liveTensors()).toBe(base);
        },
      );

      check(
        'leaks',
        `liveTensors back to baseline after ${leakOps} ops inside Ops.tidy`,
        async ({ be, ops }) => {
          const base = be.liveTensors();
          let count = 0;
          const kept = await ops.tidy(async () => {
            const x = ops.upload(randomF32([4, 6, 2, 8], 32), [4, 6, 2, 8]);
            const w = ops.upload(randomF32([8], 33), [8]);
            const cs = ops.upload(randomF32([6, 4], 34), [6, 4]);
            const ids = ops.upload(Int32Array.from([0, 3, 1]), [3]);
            const tg = ops.upload(Int32Array.from([1, 2, 0, 7]), [4]);
            let acc = await ops.reshape(x, [4, 6, 2, 8]);
            while (count < leakOps) {
              const steps: (() => Promise<Tensor>)[] = [
                () => ops.unary('tanh', acc),
                () => ops.binary('add', acc, x),
                () => ops.scale(acc, 0.5, 0.1),
                () => ops.rmsNorm(acc, w, 1e-5),
                () => ops.rope(acc, cs, cs),
                () => ops.softmax(acc),
                async () => ops.binary('sub', acc, await ops.reduce('mean', acc, [3], true)),
                async () => ops.binary('mul', acc, await ops.reduce('sum', acc, [0], true)),
                async () =>
                  ops
                    .reshape(
                      await ops.matmul(await ops.reshape(acc, [48, 8]), await ops.reshape(x, [48, 8]), {
                        transposeA: true,
                      }),
                      [1, 1, 8, 8],
                    )
                    .then(async (m) =>
                      ops.binary('add', acc, await ops.slice(m, [0, 0, 0, 0], [1, 1, 1, 8])),
                    ),
                async () =>
                  ops.reshape(await ops.attention(acc, x, x, { scale: 0.3, causal: true }), [4, 6, 2, 8]),
                async () =>
                  ops.concat(
                    [
                      await ops.slice(acc, [0, 0, 0, 0], [4, 6, 2, 4]),
                      await ops.slice(acc, [0, 0, 0, 4], [4, 6, 2, 4]),
                    ],
                    3,
                  ),
                async () =>
                  ops.binary(
                    'sub',
                    acc,
                    await ops
                      .reshape(await ops.gather(await ops.reshape(acc, [4, 96]), ids), [3, 6, 2, 8])
                      .then((g) => ops.reduce('mean', g, [0], true)),
                  ),
                async () => ops.reshape(await ops.transpose(acc, [0, 2, 1, 3]), [4, 6, 2, 8]),
                async () =>
                  ops.binary(
                    'add',
                    acc,
                    await ops.reshape(
                      await ops.crossEntropy(await ops.reshape(await ops.logSoftmax(acc), [4, 96]), tg),
                      [4, 1, 1, 1],
                    ),
                  ),
              ];
              for (const step of steps) {
                if (count >= leakOps) break;
                const before = be.liveTensors();
                acc = await ops.tidy(step);
                expect(be.liveTensors()).toBe(before + 1);
                count++;
              }
            }
            return ops.reduce('sum', acc, [0, 1, 2, 3]);
          });
          expect(count).toBe(leakOps);
          expect(Number.isFinite((await be.read(kept))[0]!)).toBe(true);
          ops.dispose(kept);
          expect(be.liveTensors()).toBe(base);
        },
      );
    });
  });
}
