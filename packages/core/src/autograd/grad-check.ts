import type {
  Backend,
  BinaryOp,
  ComputeDType,
  MatmulOptions,
  ReduceOp,
  Tensor,
  UnaryOp,
} from '../backend/backend.js';
import { Ops } from '../backend/ops.js';
import { broadcastShapes, rowMajorStrides } from '../backend/shapes.js';
import type { Parameter } from '../nn/parameter.js';
import { type Shape, sizeOf } from '../tensor/host-tensor.js';
import { Random } from '../util/random.js';
import { valueAndGrad } from './value-and-grad.js';

/*
 * Gradient checking: analytic gradients (autodiff on any backend, usually the f32 `js` backend) against
 * central finite differences of the same loss evaluated in float64 by `F64Backend`, a naive float64
 * implementation of the op contract used only as a reference. In float64 a central difference with
 * h = 1e-6 is accurate to ~1e-9 relative, so the comparison measures the f32 autodiff alone.
 */

class F64Handle {
  constructor(public data: Float64Array | Int32Array | null) {}
}

class F64Tensor implements Tensor {
  constructor(
    readonly shape: Shape,
    readonly dtype: ComputeDType,
    readonly backend: Backend,
    readonly handle: F64Handle,
  ) {}
}

type D = Float64Array | Int32Array;

/** Flat index into `shape` (broadcast against `out`) of the out multi-index `idx`. */
function bIndex(idx: number[], shape: Shape, out: Shape): number {
  const off = out.length - shape.length;
  let k = 0;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    k = k * d + (d === 1 ? 0 : idx[i + off]!);
  }
  return k;
}

function unravel(i: number, shape: Shape): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d]!;
    idx[d] = i % n;
    i = Math.floor(i / n);
  }
  return idx;
}

/** A float64 reference implementation of the op contract (naive kernels; small tensors only). */
export class F64Backend implements Backend {
  readonly name = 'f64-reference';
  readonly device = 'cpu';
  private live = 0;

  private make(data: D, shape: Shape): Tensor {
    this.live++;
    return new F64Tensor(
      Object.freeze([...shape]),
      data instanceof Int32Array ? 'i32' : 'f32',
      this,
      new F64Handle(data),
    );
  }

  /** The float64 (or i32) storage of a tensor: mutate it to perturb an input in place. */
  data(t: Tensor): D {
    const h = t.handle as F64Handle;
    if (!(h instanceof F64Handle) || !h.data) throw new Error('f64: not a live f64 tensor');
    return h.data;
  }

  private f(t: Tensor): Float64Array {
    const d = this.data(t);
    if (!(d instanceof Float64Array)) throw new TypeError('f64: expected a float tensor');
    return d;
  }

  upload(data: Float32Array | Int32Array, shape: Shape): Tensor {
    if (data.length !== sizeOf(shape))
      throw new RangeError(`f64 upload: ${data.length} values for [${shape}]`);
    return this.make(data instanceof Int32Array ? data.slice() : Float64Array.from(data), shape);
  }
  async read(t: Tensor): Promise<Float32Array | Int32Array> {
    const d = this.data(t);
    return d instanceof Int32Array ? d.slice() : Float32Array.from(d);
  }
  /** Values in float64. */
  readF64(t: Tensor): Float64Array {
    return Float64Array.from(this.data(t));
  }
  dispose(t: Tensor): void {
    const h = t.handle as F64Handle;
    if (h.data) {
      h.data = null;
      this.live--;
    }
  }
  liveTensors(): number {
    return this.live;
  }

  async matmul(a: Tensor, b: Tensor, o: MatmulOptions = {}): Promise<Tensor> {
    const A = this.f(a);
    const B = this.f(b);
    const ra = a.shape.length;
    const rb = b.shape.length;
    const tA = o.transposeA === true;
    const tB = o.transposeB === true;
    const M = a.shape[tA ? ra - 1 : ra - 2]!;
    const K = a.shape[tA ? ra - 2 : ra - 1]!;
    const N = b.shape[tB ? rb - 2 : rb - 1]!;
    if (K !== b.shape[tB ? rb - 1 : rb - 2]) throw new RangeError('f64 matmul: inner dimensions differ');
    const ba = a.shape.slice(0, -2);
    const bb = b.shape.slice(0, -2);
    const batch = broadcastShapes(ba, bb, 'f64 matmul');
    const nb = sizeOf(batch);
    const out = new Float64Array(nb * M * N);
    for (let z = 0; z < nb; z++) {
      const idx = unravel(z, batch);
      const ao = bIndex(idx, ba, batch) * M * K;
      const bo = bIndex(idx, bb, batch) * K * N;
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let k = 0; k < K; k++) {
            const x = A[ao + (tA ? k * M + i : i * K + k)]!;
            const y = B[bo + (tB ? j * K + k : k * N + j)]!;
            s += x * y;
          }
          out[z * M * N + i * N + j] = s;
        }
    }
    return this.make(out, [...batch, M, N]);
  }

  async binary(op: BinaryOp, a: Tensor, b: Tensor): Promise<Tensor> {
    const A = this.data(a);
    const B = this.data(b);
    const shape = broadcastShapes(a.shape, b.shape, 'f64');
    const out = A instanceof Int32Array ? new Int32Array(sizeOf(shape)) : new Float64Array(sizeOf(shape));
    const fn: Record<BinaryOp, (x: number, y: number) => number> = {
      add: (x, y) => x + y,
      sub: (x, y) => x - y,
      mul: (x, y) => x * y,
      div: (x, y) => x / y,
      max: Math.max,
      min: Math.min,
    };
    const f = fn[op];
    if (A.length === out.length && B.length === out.length) {
      for (let i = 0; i < out.length; i++) out[i] = f(A[i]!, B[i]!);
      return this.make(out, shape);
    }
    if (B.length === 1) {
      for (let i = 0; i < out.length; i++) out[i] = f(A[i]!, B[0]!);
      return this.make(out, shape);
    }
    for (let i = 0; i < out.length; i++) {
      const idx = unravel(i, shape);
      out[i] = f(A[bIndex(idx, a.shape, shape)]!, B[bIndex(idx, b.shape, shape)]!);
    }
    return this.make(out, shape);
  }

  async unary(op: UnaryOp, x: Tensor): Promise<Tensor> {
    const X = this.f(x);
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    const fn: Record<UnaryOp, (v: number) => number> = {
      neg: (v) => -v,
      exp: Math.exp,
      log: Math.log,
      sqrt: Math.sqrt,
      rsqrt: (v) => 1 / Math.sqrt(v),
      recip: (v) => 1 / v,
      abs: Math.abs,
      square: (v) => v * v,
      silu: (v) => v * sig(v),
      sigmoid: sig,
      tanh: Math.tanh,
      relu: (v) => Math.max(v, 0),
    };
    return this.make(X.map(fn[op]), x.shape);
  }

  async scale(x: Tensor, mul: number, add = 0): Promise<Tensor> {
    return this.make(
      this.f(x).map((v) => v * mul + add),
      x.shape,
    );
  }

  async reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims = false): Promise<Tensor> {
    const X = this.f(x);
    const r = x.shape.length;
    const red = new Set(axes.map((a) => (a < 0 ? a + r : a)));
    const kshape = x.shape.map((d, i) => (red.has(i) ? 1 : d));
    const n = sizeOf(kshape);
    const out = new Float64Array(n).fill(op === 'max' ? Number.NEGATIVE_INFINITY : 0);
    const count = sizeOf(x.shape) / Math.max(1, n);
    for (let i = 0; i < X.length; i++) {
      const k = bIndex(unravel(i, x.shape), kshape, x.shape);
      out[k] = op === 'max' ? Math.max(out[k]!, X[i]!) : out[k]! + X[i]!;
    }
    if (op === 'mean') for (let i = 0; i < n; i++) out[i] = out[i]! / count;
    return this.make(out, keepDims ? kshape : x.shape.filter((_, i) => !red.has(i)));
  }

  private rows(x: Tensor, f: (row: Float64Array) => Float64Array): Tensor {
    const X = this.f(x);
    const L = x.shape[x.shape.length - 1] ?? 1;
    const out = new Float64Array(X.length);
    for (let o = 0; o < X.length; o += L) out.set(f(X.subarray(o, o + L)), o);
    return this.make(out, x.shape);
  }

  async softmax(x: Tensor): Promise<Tensor> {
    return this.rows(x, (r) => {
      const m = Math.max(...r);
      const e = r.map((v) => Math.exp(v - m));
      const s = e.reduce((p, v) => p + v, 0);
      return e.map((v) => v / s);
    });
  }

  async logSoftmax(x: Tensor): Promise<Tensor> {
    return this.rows(x, (r) => {
      const m = Math.max(...r);
      const lse = m + Math.log(r.reduce((p, v) => p + Math.exp(v - m), 0));
      return r.map((v) => v - lse);
    });
  }

  async rmsNorm(x: Tensor, weight: Tensor, eps: number): Promise<Tensor> {
    const W = this.f(weight);
    return this.rows(x, (r) => {
      const ms = r.reduce((p, v) => p + v * v, 0) / r.length;
      const s = 1 / Math.sqrt(ms + eps);
      return r.map((v, i) => v * s * W[i]!);
    });
  }

  async rope(x: Tensor, cos: Tensor, sin: Tensor): Promise<Tensor> {
    const X = this.f(x);
    const C = this.f(cos);
    const S = this.f(sin);
    const [T, H, Dh] = x.shape.slice(-3) as [number, number, number];
    const half = Dh / 2;
    const out = new Float64Array(X.length);
    for (let o = 0; o < X.length; o += Dh) {
      const t = Math.floor(o / (H * Dh)) % T;
      for (let j = 0; j < half; j++) {
        const c = C[t * half + j]!;
        const s = S[t * half + j]!;
        const a = X[o + j]!;
        const b = X[o + j + half]!;
        out[o + j] = a * c - b * s;
        out[o + j + half] = b * c + a * s;
      }
    }
    return this.make(out, x.shape);
  }

  async gather(table: Tensor, ids: Tensor): Promise<Tensor> {
    const Tb = this.f(table);
    const I = this.data(ids) as Int32Array;
    const rest = table.shape.slice(1);
    const L = sizeOf(rest);
    const out = new Float64Array(I.length * L);
    I.forEach((id, i) => {
      if (id < 0 || id >= table.shape[0]!) throw new RangeError(`f64 gather: id ${id} out of range`);
      out.set(Tb.subarray(id * L, id * L + L), i * L);
    });
    return this.make(out, [...ids.shape, ...rest]);
  }

  async crossEntropy(logits: Tensor, targets: Tensor): Promise<Tensor> {
    const X = this.f(logits);
    const Tg = this.data(targets) as Int32Array;
    const [N, V] = logits.shape as [number, number];
    const out = new Float64Array(N);
    for (let r = 0; r < N; r++) {
      const row = X.subarray(r * V, r * V + V);
      const m = Math.max(...row);
      out[r] = m + Math.log(row.reduce((p, v) => p + Math.exp(v - m), 0)) - row[Tg[r]!]!;
    }
    return this.make(out, [N]);
  }

  async reshape(x: Tensor, shape: Shape): Promise<Tensor> {
    const X = this.data(x);
    const dims = [...shape];
    const free = dims.indexOf(-1);
    if (free >= 0) {
      dims[free] = 1;
      dims[free] = X.length / sizeOf(dims);
    }
    if (sizeOf(dims) !== X.length) throw new RangeError('f64 reshape: size changes');
    return this.make(X.slice(), dims);
  }

  async transpose(x: Tensor, perm: readonly number[]): Promise<Tensor> {
    const X = this.data(x);
    const r = x.shape.length;
    const p = perm.map((a) => (a < 0 ? a + r : a));
    const shape = p.map((a) => x.shape[a]!);
    const st = rowMajorStrides(x.shape);
    const out = X instanceof Int32Array ? new Int32Array(X.length) : new Float64Array(X.length);
    for (let i = 0; i < X.length; i++) {
      const idx = unravel(i, shape);
      let k = 0;
      for (let d = 0; d < r; d++) k += idx[d]! * st[p[d]!]!;
      out[i] = X[k]!;
    }
    return this.make(out, shape);
  }

  async slice(x: Tensor, begin: readonly number[], size: readonly number[]): Promise<Tensor> {
    const X = this.data(x);
    const b = begin.map((v, i) => (v < 0 ? v + x.shape[i]! : v));
    const shape = size.map((s, i) => (s === -1 ? x.shape[i]! - b[i]! : s));
    const st = rowMajorStrides(x.shape);
    const out = X instanceof Int32Array ? new Int32Array(sizeOf(shape)) : new Float64Array(sizeOf(shape));
    for (let i = 0; i < out.length; i++) {
      const idx = unravel(i, shape);
      let k = 0;
      for (let d = 0; d < idx.length; d++) k += (idx[d]! + b[d]!) * st[d]!;
      out[i] = X[k]!;
    }
    return this.make(out, shape);
  }

  async concat(xs: readonly Tensor[], axis: number): Promise<Tensor> {
    const first = xs[0]!;
    const r = first.shape.length;
    const ax = axis < 0 ? axis + r : axis;
    const total = xs.reduce((p, t) => p + t.shape[ax]!, 0);
    const shape = first.shape.map((d, i) => (i === ax ? total : d));
    const out = new Float64Array(sizeOf(shape));
    let off = 0;
    for (const t of xs) {
      const X = this.data(t);
      for (let i = 0; i < X.length; i++) {
        const idx = unravel(i, t.shape);
        idx[ax] = idx[ax]! + off;
        let k = 0;
        for (let d = 0; d < r; d++) k = k * shape[d]! + idx[d]!;
        out[k] = X[i]!;
      }
      off += t.shape[ax]!;
    }
    return this.make(out, shape);
  }
}

export interface GradCheckOptions {
  /** Backend of the analytic (autodiff) gradients. */
  backend: Backend;
  /** Parameters to check, by name. Frozen ones are skipped. */
  params: ReadonlyMap<string, Parameter>;
  /** The loss, written over `Ops` (it runs on `backend` under autodiff and on F64Backend for differences). */
  loss: (ops: Ops) => Promise<Tensor>;
  /** Coordinates checked per parameter (a seeded random subset when the parameter is larger; default all). */
  coords?: number;
  seed?: number;
  /** Finite-difference step (default 1e-6·max(1, |x|)). */
  h?: number;
}

export interface GradCheckResult {
  name: string;
  /** Coordinates compared. */
  checked: number;
  /**
   * max |analytic − numeric| / (|numeric| + 1e-3·max|analytic|) over the checked coordinates: a relative
   * error, floored at a thousandth of the tensor's largest gradient so near-zero entries do not dominate.
   */
  maxError: number;
  /** max |analytic| over the whole tensor. */
  scale: number;
}

/**
 * Compares autodiff gradients of `loss` with float64 central differences, per parameter. The F64 device
 * copies of the parameters are released afterwards.
 */
export async function checkGradients(o: GradCheckOptions): Promise<GradCheckResult[]> {
  const named = [...o.params].filter(([, p]) => p.trainable);
  const { grads } = await valueAndGrad(
    o.backend,
    (ops) => o.loss(ops),
    named.map(([, p]) => p),
  );
  const f64 = new F64Backend();
  const ops = new Ops(f64);
  const evaluate = async () => {
    const t = await ops.tidy(() => o.loss(ops));
    const v = f64.readF64(t).reduce((p, x) => p + x, 0);
    ops.dispose(t);
    return v;
  };
  const rng = new Random(o.seed ?? 1);
  const results: GradCheckResult[] = [];
  for (const [name, p] of named) {
    const n = p.value.size;
    const g = grads.get(p) ?? new Float32Array(n);
    const data = f64.data(p.tensor(f64)) as Float64Array;
    let idx = [...Array(n).keys()];
    if (o.coords !== undefined && o.coords < n) {
      for (let i = n - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [idx[i], idx[j]] = [idx[j]!, idx[i]!];
      }
      idx = idx.slice(0, o.coords);
    }
    let scale = 0;
    for (const v of g) scale = Math.max(scale, Math.abs(v));
    let maxError = 0;
    for (const i of idx) {
      const x = data[i]!;
      const h = o.h ?? 1e-6 * Math.max(1, Math.abs(x));
      data[i] = x + h;
      const lp = await evaluate();
      data[i] = x - h;
      const lm = await evaluate();
      data[i] = x;
      const num = (lp - lm) / (2 * h);
      const err = Math.abs(g[i]! - num) / (Math.abs(num) + 1e-3 * scale + 1e-30);
      maxError = Math.max(maxError, err);
    }
    results.push({ name, checked: idx.length, maxError, scale });
  }
  for (const [, p] of named) p.release();
  return results;
}
