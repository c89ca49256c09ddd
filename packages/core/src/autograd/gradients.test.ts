import { afterAll, describe, expect, it } from 'vitest';
import type { Backend, BinaryOp, Tensor, UnaryOp } from '../backend/backend.js';
import { JsBackend } from '../backend/js/js-backend.js';
import type { Ops } from '../backend/ops.js';
import { Parameter } from '../nn/parameter.js';
import { HostTensor, type Shape, sizeOf } from '../tensor/host-tensor.js';
import { Random } from '../util/random.js';
import { checkGradients } from './grad-check.js';

/*
 * Gradient checks of every op of the contract: autodiff on the f32 js backend against float64 central
 * differences (F64Backend). Each check differentiates sum(op(inputs) ⊙ R) for a fixed random probe R.
 *
 * Tolerance: the error is |analytic − numeric| / (|numeric| + 1e-3·max|analytic|). The numeric side is
 * accurate to ~1e-9 (float64, h = 1e-6), so the error is the f32 rounding of the forward and backward
 * kernels: ~1e-7 per op, amplified by sums over ≤ 100 terms and cancellation, so 1e-5 … 1e-4 in practice.
 * We require < 1e-3 (TOL), which any wrong term of a VJP (an error of order 1) fails by orders of magnitude.
 */
const TOL = 1e-3;
const js = new JsBackend();
const measured: [string, number][] = [];

afterAll(() => {
  measured.sort((a, b) => b[1] - a[1]);
  console.log(
    `op gradient checks: ${measured.length}, worst errors: ${measured
      .slice(0, 5)
      .map(([n, e]) => `${n} ${e.toExponential(1)}`)
      .join(', ')}`,
  );
});

function values(shape: Shape, seed: number, lo = -1, hi = 1, awayFromZero = 0): Float32Array {
  const r = new Random(seed);
  const a = new Float32Array(sizeOf(shape));
  for (let i = 0; i < a.length; i++) {
    let v = lo + (hi - lo) * r.next();
    if (awayFromZero && Math.abs(v) < awayFromZero)
      v = v < 0 ? -awayFromZero - r.next() : awayFromZero + r.next();
    a[i] = v;
  }
  return a;
}

function param(shape: Shape, seed: number, lo = -1, hi = 1, awayFromZero = 0): Parameter {
  return new Parameter(new HostTensor('f32', shape, values(shape, seed, lo, hi, awayFromZero)));
}

let probeSeed = 1000;

/** Checks d sum(f(inputs)·R) / d input for every input against float64 differences. */
async function check(
  name: string,
  inputs: Record<string, Parameter>,
  f: (ops: Ops, x: Record<string, Tensor>) => Promise<Tensor>,
  backend: Backend = js,
): Promise<void> {
  const seed = probeSeed++;
  const results = await checkGradients({
    backend,
    params: new Map(Object.entries(inputs)),
    loss: async (ops) => {
      const x: Record<string, Tensor> = {};
      for (const [k, p] of Object.entries(inputs)) x[k] = p.tensor(ops.backend);
      const y = await f(ops, x);
      const probe = ops.upload(values(y.shape, seed), y.shape);
      return ops.reduce(
        'sum',
        await ops.mul(y, probe),
        y.shape.map((_, i) => i),
      );
    },
  });
  for (const r of results) {
    measured.push([`${name}:${r.name}`, r.maxError]);
    expect(r.scale, `${name}: gradient of ${r.name} is all zeros`).toBeGreaterThan(0);
    expect(r.maxError, `${name}: d/d${r.name}`).toBeLessThan(TOL);
  }
}

describe('gradients of the op contract vs float64 finite differences', () => {
  it('matmul: every transpose combination, batched, broadcast and folded (linear) shapes', async () => {
    for (const [tA, tB] of [
      [false, false],
      [false, true],
      [true, false],
      [true, true],
    ] as const) {
      const a = param(tA ? [4, 3] : [3, 4], 1);
      const b = param(tB ? [5, 4] : [4, 5], 2);
      await check(`matmul tA=${tA} tB=${tB}`, { a, b }, (ops, x) =>
        ops.matmul(x.a!, x.b!, { transposeA: tA, transposeB: tB }),
      );
      const ab = param(tA ? [2, 3, 4, 3] : [2, 3, 3, 4], 3);
      const bb = param(tB ? [3, 5, 4] : [3, 4, 5], 4);
      await check(`batched matmul tA=${tA} tB=${tB}`, { a: ab, b: bb }, (ops, x) =>
        ops.matmul(x.a!, x.b!, { transposeA: tA, transposeB: tB }),
      );
    }
    await check('linear-shaped matmul (folded)', { x: param([2, 3, 4], 5), w: param([6, 4], 6) }, (ops, x) =>
      ops.matmul(x.x!, x.w!, { transposeB: true }),
    );
    await check('matmul x·W, W 2-D', { x: param([2, 3, 4], 7), w: param([4, 6], 8) }, (ops, x) =>
      ops.matmul(x.x!, x.w!),
    );
    await check(
      'matmul broadcast both',
      { a: param([2, 1, 3, 4], 9), b: param([1, 2, 4, 5], 10) },
      (ops, x) => ops.matmul(x.a!, x.b!),
    );
    await check('matmul rank-2 · batched', { a: param([3, 4], 11), b: param([2, 4, 5], 12) }, (ops, x) =>
      ops.matmul(x.a!, x.b!),
    );
  });

  it('binary ops with broadcasting', async () => {
    const ops: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'max', 'min'];
    for (const op of ops) {
      const lo = op === 'div' ? 0.5 : -1;
      for (const [sa, sb] of [
        [
          [2, 3, 4],
          [2, 3, 4],
        ],
        [
          [2, 3, 4],
          [3, 1],
        ],
        [
          [1, 4],
          [2, 3, 1],
        ],
      ] as [number[], number[]][]) {
        const a = param(sa, 20);
        const b = param(sb, 21, lo, 1.5);
        await check(`${op} [${sa}]·[${sb}]`, { a, b }, (o, x) => o.binary(op, x.a!, x.b!));
      }
    }
    // the same tensor on both sides
    await check('mul(x, x)', { x: param([3, 4], 22) }, (o, x) => o.mul(x.x!, x.x!));
  });

  it('unary ops', async () => {
    const ops: UnaryOp[] = [
      'neg',
      'exp',
      'log',
      'sqrt',
      'rsqrt',
      'recip',
      'abs',
      'square',
      'silu',
      'sigmoid',
      'tanh',
      'relu',
    ];
    const positive = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt', 'recip']);
    for (const op of ops) {
      const x = positive.has(op) ? param([3, 5], 30, 0.3, 2) : param([3, 5], 31, -2, 2, 0.05);
      await check(op, { x }, (o, t) => o.unary(op, t.x!));
    }
  });

  it('scale', async () => {
    await check('scale', { x: param([4, 3], 40) }, (o, t) => o.scale(t.x!, 2.5, 0.3));
  });

  it('reductions (sum, mean, max) over several axes, with and without keepDims', async () => {
    for (const op of ['sum', 'mean', 'max'] as const) {
      for (const [axes, keep] of [
        [[1], false],
        [[0, 2], true],
        [[-1], true],
        [[0, 1, 2], false],
      ] as [number[], boolean][]) {
        await check(`reduce ${op} [${axes}] keep=${keep}`, { x: param([2, 3, 4], 50) }, (o, t) =>
          o.reduce(op, t.x!, axes, keep),
        );
      }
    }
  });

  it('softmax and logSoftmax', async () => {
    await check('softmax', { x: param([3, 6], 60, -3, 3) }, (o, t) => o.softmax(t.x!));
    await check('logSoftmax', { x: param([2, 2, 6], 61, -3, 3) }, (o, t) => o.logSoftmax(t.x!));
  });

  it('rmsNorm (input and weight)', async () => {
    await check('rmsNorm', { x: param([2, 3, 8], 70), w: param([8], 71, 0.5, 1.5) }, (o, t) =>
      o.rmsNorm(t.x!, t.w!, 1e-5),
    );
  });

  it('rope', async () => {
    const T = 3;
    const half = 3;
    const cos = new Float32Array(T * half);
    const sin = new Float32Array(T * half);
    for (let i = 0; i < T * half; i++) {
      cos[i] = Math.cos(0.7 * i + 0.1);
      sin[i] = Math.sin(0.7 * i + 0.1);
    }
    await check('rope', { x: param([2, T, 2, 2 * half], 80) }, (o, t) =>
      o.rope(t.x!, o.upload(cos.slice(), [T, half]), o.upload(sin.slice(), [T, half])),
    );
  });

  it('gather (duplicates, unused rows, every row)', async () => {
    await check('gather', { table: param([7, 3], 90) }, (o, t) =>
      o.gather(t.table!, o.upload(Int32Array.from([3, 1, 3, 6, 0, 3]), [2, 3])),
    );
    await check('gather all rows', { table: param([4, 2, 2], 91) }, (o, t) =>
      o.gather(t.table!, o.upload(Int32Array.from([3, 2, 1, 0, 0]), [5])),
    );
  });

  it('crossEntropy', async () => {
    await check('crossEntropy', { logits: param([5, 7], 100, -3, 3) }, (o, t) =>
      o.crossEntropy(t.logits!, o.upload(Int32Array.from([0, 6, 3, 3, 1]), [5])),
    );
  });

  it('reshape, transpose, slice, concat', async () => {
    await check('reshape', { x: param([2, 3, 4], 110) }, (o, t) => o.reshape(t.x!, [6, -1]));
    await check('transpose', { x: param([2, 3, 4], 111) }, (o, t) => o.transpose(t.x!, [2, 0, -2]));
    await check('slice', { x: param([3, 4, 5], 112) }, (o, t) => o.slice(t.x!, [1, -3, 0], [2, -1, 3]));
    await check(
      'concat',
      { a: param([2, 1, 3], 113), b: param([2, 3, 3], 114), c: param([2, 2, 3], 115) },
      (o, t) => o.concat([t.a!, t.b!, t.c!], 1),
    );
  });

  it('attention: GQA, MHA, causal, non-causal, KV offset (fused kernel)', async () => {
    const cases: [string, number, number, number, number, boolean, number | undefined][] = [
      // name, T, S, H, Hkv, causal, offset
      ['GQA causal', 3, 3, 4, 2, true, undefined],
      ['MHA causal', 4, 4, 2, 2, true, undefined],
      ['MQA non-causal', 3, 5, 3, 1, false, undefined],
      ['GQA causal with offset', 2, 4, 4, 2, true, 2],
    ];
    for (const [name, T, S, H, Hkv, causal, offset] of cases) {
      const D = 4;
      await check(
        `attention ${name}`,
        { q: param([2, T, H, D], 120), k: param([2, S, Hkv, D], 121), v: param([2, S, Hkv, D], 122) },
        (o, t) =>
          o.attention(t.q!, t.k!, t.v!, { scale: 0.6, causal, ...(offset !== undefined ? { offset } : {}) }),
      );
    }
  });

  it('attention on a backend without a fused kernel (composite forward)', async () => {
    const plain = new JsBackend() as Backend & { attention?: unknown };
    Object.defineProperty(plain, 'attention', { value: undefined });
    expect(plain.attention).toBeUndefined();
    await check(
      'attention composite',
      { q: param([1, 3, 4, 4], 130), k: param([1, 3, 2, 4], 131), v: param([1, 3, 2, 4], 132) },
      (o, t) => o.attention(t.q!, t.k!, t.v!, { scale: 0.5, causal: true }),
      plain,
    );
  });
});
