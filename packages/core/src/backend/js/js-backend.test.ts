import { describe, expect, it } from 'vitest';
import type { BinaryOp, ReduceOp, Tensor, UnaryOp } from '../backend.js';
import { Ops } from '../ops.js';
import { createJsBackend, JsBackend } from './js-backend.js';

const be = new JsBackend();
const ops = new Ops(be);

// ---------------------------------------------------------------------------------------------------
// Helpers: deterministic data, float64 references, tolerant comparison

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rand(shape: readonly number[], seed = 1, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(size(shape));
  for (let i = 0; i < a.length; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

function size(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

function up(data: Float32Array | Int32Array | number[], shape: readonly number[]): Tensor {
  return be.upload(Array.isArray(data) ? Float32Array.from(data) : data, shape);
}

async function vals(t: Tensor): Promise<number[]> {
  return Array.from(await be.read(t));
}

/** Elementwise |a − e| ≤ atol + rtol·|e|; NaN must meet NaN and ±Inf the same infinity. */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol = 1e-6, atol = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e))) {
        throw new Error(`index ${i}: got ${a}, expected ${e}`);
      }
      continue;
    }
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e)))
      throw new Error(`index ${i}: got ${a}, expected ${e}`);
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

function refBinary(op: BinaryOp, a: ArrayLike<number>, as: number[], b: ArrayLike<number>, bs: number[]) {
  const os = bshape(as, bs);
  const out = new Float64Array(size(os));
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, os);
    out[i] = binRef[op](a[bidx(idx, as)]!, b[bidx(idx, bs)]!);
  }
  return { out, shape: os };
}

/** Float64 batched matmul with numpy batch broadcasting. */
function refMatmul(
  a: ArrayLike<number>,
  as: number[],
  b: ArrayLike<number>,
  bs: number[],
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
  const out = new Float64Array(size(batch) * M * N);
  for (let p = 0; p < size(batch); p++) {
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

function refSoftmaxRow(row: number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((x) => Math.exp(x - m));
  const s = e.reduce((p, x) => p + x, 0);
  return e.map((x) => x / s);
}

function rows(a: ArrayLike<number>, L: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < a.length; i += L) out.push(Array.from(a).slice(i, i + L));
  return out;
}

// ---------------------------------------------------------------------------------------------------

describe('js backend: tensors', () => {
  it('uploads, reads copies, counts and disposes', async () => {
    const base = be.liveTensors();
    const t = up([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('f32');
    expect(t.backend).toBe(be);
    expect(be.liveTensors()).toBe(base + 1);
    const r = await be.read(t);
    r[0] = 99;
    expect((await be.read(t))[0]).toBe(1);
    const v = await be.reshape(t, [3, -1]);
    expect(v.shape).toEqual([3, 2]);
    expect(be.liveTensors()).toBe(base + 2);
    be.dispose(t);
    be.dispose(t); // harmless
    expect(be.liveTensors()).toBe(base + 1);
    expect(await vals(v)).toEqual([1, 2, 3, 4, 5, 6]); // a view outlives its source
    await expect(be.read(t)).rejects.toThrow(/disposed/);
    await expect(be.unary('exp', t)).rejects.toThrow(/disposed/);
    be.dispose(v);
    expect(be.liveTensors()).toBe(base);
  });

  it('validates uploads and reshape', async () => {
    expect(() => up([1, 2, 3], [2, 2])).toThrow(/needs 4/);
    expect(() => up([], [-1])).toThrow(/bad dimension/);
    const i = be.upload(Int32Array.from([1, 2]), [2]);
    expect(i.dtype).toBe('i32');
    await expect(be.reshape(i, [3])).rejects.toThrow(/size/);
    await expect(be.reshape(i, [-1, -1])).rejects.toThrow(/infer/);
    const e = up([], [0, 3]);
    expect((await be.reshape(e, [3, 0])).shape).toEqual([3, 0]);
  });

  it('createJsBackend is cpu-only', async () => {
    const b = await createJsBackend({});
    expect(b.name).toBe('js');
    expect(b.device).toBe('cpu');
    await expect(createJsBackend({ device: 'cuda' })).rejects.toThrow(/cpu only/);
  });
});

describe('js backend: binary', () => {
  const cases: [number[], number[]][] = [
    [
      [3, 5],
      [3, 5],
    ],
    [[3, 5], []],
    [[], [3, 5]],
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
    it(`[${as}] ⊕ [${bs}]`, async () => {
      const a = rand(as, 3);
      const b = rand(bs, 4, 0.5, 2);
      const ta = up(a, as);
      const tb = up(b, bs);
      for (const op of opsList) {
        const { out, shape } = refBinary(op, a, as, b, bs);
        const t = await be.binary(op, ta, tb);
        expect(t.shape).toEqual(shape);
        expectClose(await be.read(t), out, 1e-6, 1e-7);
        be.dispose(t);
      }
      be.dispose(ta);
      be.dispose(tb);
    });
  }

  it('propagates NaN and Inf', async () => {
    const a = up([Number.NaN, 1, Number.POSITIVE_INFINITY, -0, 2], [5]);
    const b = up([1, Number.NaN, Number.POSITIVE_INFINITY, 0, Number.NEGATIVE_INFINITY], [5]);
    expectClose(await vals(await be.binary('max', a, b)), [Number.NaN, Number.NaN, Infinity, 0, 2]);
    expectClose(await vals(await be.binary('min', a, b)), [Number.NaN, Number.NaN, Infinity, -0, -Infinity]);
    expectClose(await vals(await be.binary('sub', a, b)), [Number.NaN, Number.NaN, Number.NaN, -0, Infinity]);
    expectClose(await vals(await be.binary('div', a, b)), [
      Number.NaN,
      Number.NaN,
      Number.NaN,
      Number.NaN,
      -0,
    ]);
  });

  it('i32 arithmetic, dtype and shape errors', async () => {
    const a = be.upload(Int32Array.from([7, -7, 3]), [3]);
    const b = be.upload(Int32Array.from([2]), [1]);
    const d = await be.binary('div', a, b);
    expect(d.dtype).toBe('i32');
    expect(await vals(d)).toEqual([3, -3, 1]);
    expect(await vals(await be.binary('add', a, b))).toEqual([9, -5, 5]);
    await expect(be.binary('add', a, up([1], [1]))).rejects.toThrow(/dtypes differ/);
    await expect(be.binary('add', up(rand([2, 3]), [2, 3]), up(rand([2]), [2]))).rejects.toThrow(/broadcast/);
  });
});

describe('js backend: unary and scale', () => {
  const ref: Record<UnaryOp, (x: number) => number> = {
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
    relu: (x) => Math.max(0, x),
  };
  const positive = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt']);
  for (const op of Object.keys(ref) as UnaryOp[]) {
    it(op, async () => {
      const shape = [3, 37];
      const x = positive.has(op) ? rand(shape, 5, 0.01, 4) : rand(shape, 5, -6, 6);
      const t = await be.unary(op, up(x, shape));
      expect(t.shape).toEqual(shape);
      expectClose(await be.read(t), Array.from(x, ref[op]), 2e-6, 1e-7);
      expect((await be.unary(op, up([], [0, 4]))).shape).toEqual([0, 4]);
    });
  }

  it('edge values', async () => {
    const x = up([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0], [4]);
    expectClose(await vals(await be.unary('relu', x)), [Number.NaN, Infinity, 0, 0]);
    expectClose(await vals(await be.unary('exp', x)), [Number.NaN, Infinity, 0, 1]);
    expectClose(await vals(await be.unary('sigmoid', x)), [Number.NaN, 1, 0, 0.5]);
    expectClose(await vals(await be.unary('recip', x)), [Number.NaN, 0, -0, Infinity]);
    expect(await vals(await be.unary('neg', be.upload(Int32Array.from([1, -2]), [2])))).toEqual([-1, 2]);
    await expect(be.unary('exp', be.upload(Int32Array.from([1]), [1]))).rejects.toThrow(/f32/);
  });

  it('scale', async () => {
    const x = rand([4, 9], 6);
    expectClose(
      await be.read(await be.scale(up(x, [4, 9]), 2.5, -1)),
      Array.from(x, (v) => v * 2.5 - 1),
      1e-6,
      1e-6,
    );
    expectClose(
      await be.read(await be.scale(up(x, [4, 9]), 0.5)),
      Array.from(x, (v) => v * 0.5),
    );
  });
});

describe('js backend: reduce', () => {
  function refReduce(op: ReduceOp, x: Float32Array, shape: number[], axes: number[], keep: boolean) {
    const red = shape.map((_, i) => axes.some((a) => (a < 0 ? a + shape.length : a) === i));
    const os = shape.filter((_, i) => !red[i]);
    const acc = new Float64Array(size(os)).fill(op === 'max' ? -Infinity : 0);
    let count = 1;
    shape.forEach((d, i) => {
      if (red[i]) count *= d;
    });
    for (let i = 0; i < x.length; i++) {
      const idx = unravel(i, shape).filter((_, d) => !red[d]);
      let o = 0;
      for (let d = 0; d < os.length; d++) o = o * os[d]! + idx[d]!;
      acc[o] = op === 'max' ? Math.max(acc[o]!, x[i]!) : acc[o]! + x[i]!;
    }
    if (op === 'mean') for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! / count;
    return { out: acc, shape: keep ? shape.map((d, i) => (red[i] ? 1 : d)) : os };
  }
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
    [[7], [[0]]],
  ];
  for (const [shape, axesList] of shapes) {
    for (const axes of axesList) {
      for (const op of ['sum', 'mean', 'max'] as ReduceOp[]) {
        it(`${op} [${shape}] axes [${axes}]`, async () => {
          const x = rand(shape, 7);
          const tx = up(x, shape);
          for (const keep of [false, true]) {
            const ref = refReduce(op, x, shape, axes, keep);
            const t = await be.reduce(op, tx, axes, keep);
            expect(t.shape).toEqual(ref.shape);
            expectClose(await be.read(t), ref.out, 1e-6, 1e-6);
          }
        });
      }
    }
  }

  it('empty, NaN, i32 and bad axes', async () => {
    const e = up([], [0, 3]);
    expect(await vals(await be.reduce('sum', e, [0]))).toEqual([0, 0, 0]);
    expectClose(await vals(await be.reduce('mean', e, [0])), [Number.NaN, Number.NaN, Number.NaN]);
    await expect(be.reduce('max', e, [0])).rejects.toThrow(/zero-size/);
    expect((await be.reduce('max', e, [1])).shape).toEqual([0]);
    const n = up([1, Number.NaN, 3, -Infinity, -Infinity, 2], [2, 3]);
    expectClose(await vals(await be.reduce('max', n, [1])), [Number.NaN, 2]);
    expectClose(await vals(await be.reduce('sum', n, [1])), [Number.NaN, -Infinity]);
    const i = be.upload(Int32Array.from([1, 2, 3, 4]), [2, 2]);
    const s = await be.reduce('sum', i, [0]);
    expect(s.dtype).toBe('i32');
    expect(await vals(s)).toEqual([4, 6]);
    expect((await be.reduce('mean', i, [0, 1])).dtype).toBe('f32');
    await expect(be.reduce('sum', i, [2])).rejects.toThrow(/out of range/);
    await expect(be.reduce('sum', i, [0, -2])).rejects.toThrow(/repeated/);
  });

  it('sum accumulates in float64', async () => {
    const x = new Float32Array(1 << 20).fill(0.1);
    const [s] = await vals(await be.reduce('sum', up(x, [x.length]), [0]));
    expect(Math.abs(s! - 0.1 * x.length * (Math.fround(0.1) / 0.1))).toBeLessThan(1e-2);
  });
});

describe('js backend: softmax, logSoftmax, rmsNorm, rope', () => {
  const shapes = [[3, 7], [1, 1000], [2, 3, 5], [4, 1], [5], [2, 0]];
  for (const shape of shapes) {
    it(`softmax/logSoftmax [${shape}]`, async () => {
      const x = rand(shape, 8, -10, 10);
      const L = shape[shape.length - 1]!;
      const ref = rows(x, L || 1).flatMap(refSoftmaxRow);
      expectClose(await be.read(await be.softmax(up(x, shape))), ref, 1e-6, 1e-7);
      expectClose(await be.read(await be.logSoftmax(up(x, shape))), ref.map(Math.log), 1e-6, 1e-6);
    });
  }

  it('softmax is stable and follows numpy on Inf/NaN rows', async () => {
    const inf = Number.POSITIVE_INFINITY;
    const x = up(
      [1000, 1001, 999, -inf, 0, -inf, -inf, -inf, -inf, 1, inf, 2, 1, Number.NaN, 2, -1e30, 0, 1e30],
      [6, 3],
    );
    const e = refSoftmaxRow([0, 1, -1]);
    const nan = Number.NaN;
    const want = [...e, 0, 1, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, 0, 1];
    expectClose(await vals(await be.softmax(x)), want, 1e-6, 1e-7);
    const lw = [
      ...e.map(Math.log),
      -inf,
      0,
      -inf,
      nan,
      nan,
      nan,
      nan,
      nan,
      nan,
      nan,
      nan,
      nan,
      -2e30,
      -1e30,
      0,
    ];
    expectClose(await vals(await be.logSoftmax(x)), lw, 1e-6, 1e-6);
  });

  it('rmsNorm', async () => {
    for (const shape of [
      [3, 17],
      [2, 2, 64],
      [1, 1],
    ]) {
      const L = shape[shape.length - 1]!;
      const x = rand(shape, 9, -3, 3);
      const w = rand([L], 10);
      const ref = rows(x, L).flatMap((r) => {
        const ms = r.reduce((p, v) => p + v * v, 0) / L;
        return r.map((v, j) => (v / Math.sqrt(ms + 1e-5)) * w[j]!);
      });
      expectClose(await be.read(await be.rmsNorm(up(x, shape), up(w, [L]), 1e-5)), ref, 2e-6, 1e-6);
    }
    await expect(be.rmsNorm(up(rand([2, 3]), [2, 3]), up(rand([2]), [2]), 1e-5)).rejects.toThrow(/weight/);
  });

  it('rope (rotate-half)', async () => {
    const [Bn, T, H, D] = [2, 3, 4, 6];
    const x = rand([Bn, T, H, D], 11);
    const cos = rand([T, D / 2], 12);
    const sin = rand([T, D / 2], 13);
    const ref = new Float64Array(x.length);
    const h2 = D / 2;
    for (let b = 0; b < Bn; b++)
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
    const y = await be.rope(up(x, [Bn, T, H, D]), up(cos, [T, h2]), up(sin, [T, h2]));
    expectClose(await be.read(y), ref, 1e-6, 1e-6);
    await expect(be.rope(up(x, [Bn, T, H, D]), up(cos, [T, h2]), up(rand([T, D]), [T, D]))).rejects.toThrow(
      /sin/,
    );
  });
});

describe('js backend: gather and crossEntropy', () => {
  it('gather rows at any ids shape', async () => {
    const table = rand([5, 3], 14);
    const ids = Int32Array.from([4, 0, 2, 2]);
    const g = await be.gather(up(table, [5, 3]), be.upload(ids, [2, 2]));
    expect(g.shape).toEqual([2, 2, 3]);
    expect(await vals(g)).toEqual(
      Array.from(ids).flatMap((i) => Array.from(table.subarray(i * 3, i * 3 + 3))),
    );
    const wide = rand([3, 40], 15); // the block-copy path
    const gw = await be.gather(up(wide, [3, 40]), be.upload(Int32Array.from([2]), [1]));
    expect(await vals(gw)).toEqual(Array.from(wide.subarray(80, 120)));
    const it32 = await be.gather(
      be.upload(Int32Array.from([10, 11, 12]), [3]),
      be.upload(Int32Array.from([2, 0]), [2]),
    );
    expect(it32.dtype).toBe('i32');
    expect(await vals(it32)).toEqual([12, 10]);
    expect((await be.gather(up(table, [5, 3]), be.upload(new Int32Array(0), [0]))).shape).toEqual([0, 3]);
  });

  it('gather rejects out-of-range ids naming the id and range', async () => {
    const t = up(rand([5, 3]), [5, 3]);
    await expect(be.gather(t, be.upload(Int32Array.from([1, 5]), [2]))).rejects.toThrow(/id 5 .*\[0, 5\)/);
    await expect(be.gather(t, be.upload(Int32Array.from([-1]), [1]))).rejects.toThrow(/id -1 .*\[0, 5\)/);
    await expect(be.gather(t, up([1], [1]))).rejects.toThrow(/i32/);
  });

  it('crossEntropy = −log softmax[target]', async () => {
    const [N, V] = [6, 33];
    const x = rand([N, V], 16, -20, 20);
    x[5] = 1e4; // stability
    const tg = Int32Array.from([0, 5, 32, 7, 7, 1]);
    const ref = rows(x, V).map((r, i) => -Math.log(refSoftmaxRow(r)[tg[i]!]!));
    ref[0] = 1e4 - x[0]!;
    const ce = await be.crossEntropy(up(x, [N, V]), be.upload(tg, [N]));
    expect(ce.shape).toEqual([N]);
    expectClose(await be.read(ce), ref, 1e-6, 1e-5);
    await expect(
      be.crossEntropy(up(x, [N, V]), be.upload(Int32Array.from([0, 0, 0, 0, 0, 33]), [N])),
    ).rejects.toThrow(/target 33 .*\[0, 33\)/);
    await expect(be.crossEntropy(up(x, [N, V]), be.upload(Int32Array.from([0]), [1]))).rejects.toThrow(
      /targets/,
    );
  });
});

describe('js backend: transpose, slice, concat', () => {
  function refTranspose(x: ArrayLike<number>, shape: number[], perm: number[]): number[] {
    const os = perm.map((p) => shape[p]!);
    const st = strides(shape);
    return Array.from({ length: size(os) }, (_, i) => {
      const idx = unravel(i, os);
      return x[idx.reduce((o, v, d) => o + v * st[perm[d]!]!, 0)]!;
    });
  }
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
    it(`transpose [${shape}] by [${perm}]`, async () => {
      const x = rand(shape, 17);
      const p = perm.map((a) => (a < 0 ? a + shape.length : a));
      const t = await be.transpose(up(x, shape), perm);
      expect(t.shape).toEqual(p.map((a) => shape[a]));
      expect(await vals(t)).toEqual(refTranspose(x, shape, p));
    });
  }

  it('transpose rejects bad perms', async () => {
    await expect(be.transpose(up(rand([2, 3]), [2, 3]), [0, 0])).rejects.toThrow(/permutation/);
    await expect(be.transpose(up(rand([2, 3]), [2, 3]), [0])).rejects.toThrow(/rank/);
  });

  it('slice', async () => {
    const shape = [4, 5, 40];
    const x = rand(shape, 18);
    const check = async (begin: number[], sz: number[]) => {
      const b = begin.map((v, i) => (v < 0 ? v + shape[i]! : v));
      const s = sz.map((v, i) => (v === -1 ? shape[i]! - b[i]! : v));
      const t = await be.slice(up(x, shape), begin, sz);
      expect(t.shape).toEqual(s);
      const st = strides(shape);
      const ref = Array.from(
        { length: size(s) },
        (_, i) => x[unravel(i, s).reduce((o, v, d) => o + (v + b[d]!) * st[d]!, 0)],
      );
      expect(await vals(t)).toEqual(ref);
    };
    await check([1, 2, 3], [2, 2, 5]);
    await check([0, 0, 0], [4, 5, 40]);
    await check([0, 1, 0], [4, 3, 40]);
    await check([-1, -2, 0], [-1, -1, 33]);
    await check([2, 0, 0], [0, 5, 40]);
    await expect(be.slice(up(x, shape), [0, 0, 30], [1, 1, 11])).rejects.toThrow(/out of bounds/);
  });

  it('concat', async () => {
    const a = rand([2, 3, 4], 19);
    const b = rand([2, 5, 4], 20);
    const c = rand([2, 0, 4], 21);
    const t = await be.concat([up(a, [2, 3, 4]), up(c, [2, 0, 4]), up(b, [2, 5, 4])], 1);
    expect(t.shape).toEqual([2, 8, 4]);
    const ref: number[] = [];
    for (let i = 0; i < 2; i++)
      ref.push(...a.subarray(i * 12, i * 12 + 12), ...b.subarray(i * 20, i * 20 + 20));
    expect(await vals(t)).toEqual(ref);
    const big = rand([3, 50], 22);
    const t0 = await be.concat([up(big, [3, 50]), up(big, [3, 50])], 0);
    expect(await vals(t0)).toEqual([...big, ...big]);
    const tl = await be.concat([up(a, [2, 3, 4]), up(a, [2, 3, 4])], -1);
    expect(tl.shape).toEqual([2, 3, 8]);
    expect((await vals(tl)).slice(0, 8)).toEqual([...a.subarray(0, 4), ...a.subarray(0, 4)]);
    await expect(be.concat([up(a, [2, 3, 4]), up(b, [2, 5, 4])], 0)).rejects.toThrow(/does not match/);
    await expect(be.concat([], 0)).rejects.toThrow(/no tensors/);
  });
});

describe('js backend: matmul', () => {
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
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        it(`[${M}×${K}]·[${K}×${N}] tA=${tA} tB=${tB}`, async () => {
          const as = tA ? [K, M] : [M, K];
          const bs = tB ? [N, K] : [K, N];
          const a = rand(as, M * 7 + K);
          const b = rand(bs, N * 3 + K);
          const ref = refMatmul(a, as, b, bs, tA, tB);
          const t = await be.matmul(up(a, as), up(b, bs), { transposeA: tA, transposeB: tB });
          expect(t.shape).toEqual(ref.shape);
          expectClose(await be.read(t), ref.out, 1e-5, 1e-5);
        });
      }
    }
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
    [[3, 1, 2], [3, 2, 6], false, false], // small-M path, batched B
    [[1, 2, 20, 9], [4, 1, 9, 3], false, false],
    [[2, 0, 3, 4], [4, 5], false, false],
  ];
  for (const [as, bs, tA, tB] of batched) {
    it(`batched [${as}]${tA ? 'ᵀ' : ''} · [${bs}]${tB ? 'ᵀ' : ''}`, async () => {
      const a = rand(as, 23);
      const b = rand(bs, 24);
      const ref = refMatmul(a, as, b, bs, tA, tB);
      const t = await be.matmul(up(a, as), up(b, bs), { transposeA: tA, transposeB: tB });
      expect(t.shape).toEqual(ref.shape);
      expectClose(await be.read(t), ref.out, 1e-5, 1e-5);
    });
  }

  it('propagates NaN/Inf and rejects bad shapes', async () => {
    const t = await be.matmul(
      up([1, Number.NaN, 2, 3], [2, 2]),
      up([1, 0, 0, Number.POSITIVE_INFINITY], [2, 2]),
    );
    expectClose(await vals(t), [Number.NaN, Number.NaN, 2, Infinity]);
    await expect(be.matmul(up(rand([2, 3]), [2, 3]), up(rand([2, 3]), [2, 3]))).rejects.toThrow(
      /inner dimensions/,
    );
    await expect(be.matmul(up(rand([3]), [3]), up(rand([3, 2]), [3, 2]))).rejects.toThrow(/rank/);
    await expect(be.matmul(up(rand([2, 2, 3]), [2, 2, 3]), up(rand([3, 3, 2]), [3, 3, 2]))).rejects.toThrow(
      /broadcast/,
    );
  });
});

describe('js backend: fused attention', () => {
  function refAttention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    [B, T, H, D]: number[],
    [S, Hkv]: number[],
    scale: number,
    causal: boolean,
    offset: number,
  ): Float64Array {
    const out = new Float64Array(B! * T! * H! * D!);
    const G = H! / Hkv!;
    for (let b = 0; b < B!; b++)
      for (let t = 0; t < T!; t++)
        for (let h = 0; h < H!; h++) {
          const kh = Math.floor(h / G);
          const sc: number[] = [];
          for (let s = 0; s < S!; s++) {
            let d = 0;
            for (let j = 0; j < D!; j++)
              d += q[((b * T! + t) * H! + h) * D! + j]! * k[((b * S! + s) * Hkv! + kh) * D! + j]!;
            sc.push(causal && s > offset + t ? Number.NEGATIVE_INFINITY : d * scale);
          }
          const p = refSoftmaxRow(sc);
          for (let j = 0; j < D!; j++) {
            let acc = 0;
            for (let s = 0; s < S!; s++) acc += p[s]! * v[((b * S! + s) * Hkv! + kh) * D! + j]!;
            out[((b * T! + t) * H! + h) * D! + j] = acc;
          }
        }
    return out;
  }
  const cases: { name: string; q: number[]; kv: number[]; causal: boolean; offset?: number }[] = [
    { name: 'MHA causal T=S', q: [2, 5, 2, 8], kv: [2, 5, 2, 8], causal: true },
    { name: 'MHA non-causal T≠S', q: [1, 3, 2, 8], kv: [1, 7, 2, 8], causal: false },
    { name: 'GQA 4/2 causal', q: [2, 6, 4, 5], kv: [2, 6, 2, 5], causal: true },
    { name: 'GQA 6/1 causal, default offset S−T', q: [1, 3, 6, 4], kv: [1, 7, 1, 4], causal: true },
    { name: 'GQA 4/2 causal, explicit offset', q: [1, 3, 4, 8], kv: [1, 7, 2, 8], causal: true, offset: 2 },
    { name: 'decode T=1', q: [2, 1, 4, 16], kv: [2, 9, 2, 16], causal: true },
    { name: 'causal, offset beyond S', q: [1, 2, 2, 3], kv: [1, 4, 2, 3], causal: true, offset: 10 },
    { name: 'GQA 6/2, odd sizes, causal', q: [2, 9, 6, 7], kv: [2, 13, 2, 7], causal: true, offset: 3 },
    { name: 'GQA 6/3, odd sizes, non-causal', q: [1, 5, 6, 6], kv: [1, 11, 3, 6], causal: false },
    { name: 'longer causal prefill', q: [1, 40, 4, 16], kv: [1, 40, 2, 16], causal: true },
    { name: 'no keys', q: [1, 2, 2, 4], kv: [1, 0, 2, 4], causal: false },
  ];
  for (const c of cases) {
    it(`${c.name}: fused == composite == reference`, async () => {
      const q = rand(c.q, 25);
      const k = rand(c.kv, 26);
      const v = rand(c.kv, 27);
      const o = { scale: 1 / Math.sqrt(c.q[3]!), causal: c.causal, offset: c.offset };
      const [tq, tk, tv] = [up(q, c.q), up(k, c.kv), up(v, c.kv)];
      const fused = await be.attention(tq, tk, tv, o);
      const [B, T, H, D] = c.q as [number, number, number, number];
      expect(fused.shape).toEqual([B, T, H * D]);
      const comp = await ops.tidy(() => ops.attentionComposite(tq, tk, tv, o));
      expect(comp.shape).toEqual(fused.shape);
      const f = await be.read(fused);
      expectClose(f, await be.read(comp), 1e-5, 1e-6);
      const offset = c.offset ?? c.kv[1]! - c.q[1]!;
      expectClose(f, refAttention(q, k, v, c.q, [c.kv[1]!, c.kv[2]!], o.scale, c.causal, offset), 1e-5, 1e-6);
    });
  }

  it('a query with no visible key gives NaN, as the composite does', async () => {
    const [q, k, v] = [
      up(rand([1, 2, 1, 4], 1), [1, 2, 1, 4]),
      up(rand([1, 3, 1, 4], 2), [1, 3, 1, 4]),
      up(rand([1, 3, 1, 4], 3), [1, 3, 1, 4]),
    ];
    const o = { scale: 0.5, causal: true, offset: -1 };
    const f = await vals(await be.attention(q, k, v, o));
    expect(f.slice(0, 4).every(Number.isNaN)).toBe(true);
    expectClose(f, await be.read(await ops.tidy(() => ops.attentionComposite(q, k, v, o))), 1e-5, 1e-6);
  });

  it('rejects mismatched shapes', async () => {
    await expect(
      be.attention(
        up(rand([1, 2, 3, 4]), [1, 2, 3, 4]),
        up(rand([1, 2, 2, 4]), [1, 2, 2, 4]),
        up(rand([1, 2, 2, 4]), [1, 2, 2, 4]),
        { scale: 1, causal: false },
      ),
    ).rejects.toThrow(/multiple/);
  });
});

describe('js backend: no leaks', () => {
  it('liveTensors returns to baseline after work inside Ops.tidy', async () => {
    const base = be.liveTensors();
    const x = ops.upload(rand([2, 4, 4, 8], 30), [2, 4, 4, 8]);
    const kv = ops.upload(rand([2, 6, 2, 8], 31), [2, 6, 2, 8]);
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
  });
});

describe('js backend: matmul speed', () => {
  it('a 256×256×256 product takes well under a second', async () => {
    const a = up(rand([256, 256], 40), [256, 256]);
    const b = up(rand([256, 256], 41), [256, 256]);
    await be.matmul(a, b, { transposeB: true }); // warm the JIT
    const t0 = performance.now();
    await be.matmul(a, b, { transposeB: true });
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
