import { type Shape, sizeOf } from '../../tensor/host-tensor.js';
import { LineageError } from '../../util/errors.js';
import type {
  AttentionOptions,
  Backend,
  BackendOptions,
  BinaryOp,
  ComputeDType,
  MatmulOptions,
  ReduceOp,
  Tensor,
  UnaryOp,
} from '../backend.js';
import {
  attentionDims,
  checkGatherIds,
  checkTargets,
  checkUpload,
  concatShape,
  crossEntropyDims,
  foldBatch,
  matmulDims,
  normAxis,
  reduceDims,
  reshapeDims,
  rmsNormDims,
  ropeDims,
  rowMajorStrides,
  sliceDims,
  transposeDims,
} from '../shapes.js';
import type { Data } from './kernels.js';
import * as K from './kernels.js';
import { gemmNNSmallM, gemmNT, transpose2d } from './matmul.js';

/** Mutable box so dispose can drop the data while the tensor object itself stays immutable. */
class JsHandle {
  constructor(
    public data: Data | null,
    readonly owner: JsBackend,
  ) {}
}

class JsTensor implements Tensor {
  constructor(
    readonly shape: Shape,
    readonly dtype: ComputeDType,
    readonly backend: Backend,
    readonly handle: JsHandle,
  ) {}
}

/**
 * Below this many rows of A, A·B multiplies B in place (axpy, ~2 GFLOP/s) rather than packing it into Bᵀ
 * first (~1 ns per element of B) for the faster dot-product kernel; measured break-even is 3–4 rows.
 */
const SMALL_M = 4;

const INT_UNARY: ReadonlySet<UnaryOp> = new Set(['neg', 'abs', 'square', 'relu']);

/**
 * The pure-TypeScript reference backend: host Float32Array/Int32Array tensors, single-threaded kernels.
 * Ops are synchronous underneath; they are async only to match the contract.
 */
export class JsBackend implements Backend {
  readonly name = 'js';
  readonly device = 'cpu';
  private live = 0;

  private make(data: Data, shape: Shape): Tensor {
    this.live++;
    return new JsTensor(
      Object.freeze([...shape]),
      data instanceof Int32Array ? 'i32' : 'f32',
      this,
      new JsHandle(data, this),
    );
  }

  private data(t: Tensor, op: string): Data {
    const h = t.handle;
    if (!(h instanceof JsHandle)) {
      throw new TypeError(
        `js backend ${op}: not a js-backend tensor (it belongs to backend '${t.backend?.name}')`,
      );
    }
    if (h.data === null) throw new Error(`js backend ${op}: tensor [${t.shape}] was already disposed`);
    return h.data;
  }

  private f32(t: Tensor, op: string): Float32Array {
    const d = this.data(t, op);
    if (!(d instanceof Float32Array))
      throw new TypeError(`js backend ${op}: expected an f32 tensor, got i32 [${t.shape}]`);
    return d;
  }

  private i32(t: Tensor, op: string): Int32Array {
    const d = this.data(t, op);
    if (!(d instanceof Int32Array))
      throw new TypeError(`js backend ${op}: expected an i32 tensor, got f32 [${t.shape}]`);
    return d;
  }

  private alloc(like: Data, n: number): Data {
    return like instanceof Int32Array ? new Int32Array(n) : new Float32Array(n);
  }

  upload(data: Float32Array | Int32Array, shape: Shape): Tensor {
    checkUpload('js', data, shape);
    return this.make(data, shape);
  }

  async read(t: Tensor): Promise<Float32Array | Int32Array> {
    // A copy: reshape shares buffers, so handing out the storage would let callers mutate other tensors.
    return this.data(t, 'read').slice();
  }

  dispose(t: Tensor): void {
    const h = t.handle;
    if (!(h instanceof JsHandle)) throw new TypeError('js backend dispose: not a js-backend tensor');
    if (h.data === null) return;
    h.data = null;
    h.owner.live--;
  }

  liveTensors(): number {
    return this.live;
  }

  async matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Promise<Tensor> {
    const A = this.f32(a, 'matmul');
    const B = this.f32(b, 'matmul');
    const tA = options.transposeA === true;
    const tB = options.transposeB === true;
    const { M, K: Kd, N, batchA, batchB, batch } = matmulDims(a.shape, b.shape, tA, tB);
    const out = new Float32Array(sizeOf(batch) * M * N);
    const result = this.make(out, [...batch, M, N]);
    if (out.length === 0 || Kd === 0) return result;

    // A as row-major [M, K] matrices (same batch layout as a).
    let Ap = A;
    const mk = M * Kd;
    if (tA) {
      Ap = new Float32Array(A.length);
      for (let o = 0; o < A.length; o += mk) transpose2d(A, o, Kd, M, Ap, o);
    }

    // Trailing batch axes over which b broadcasts and a does not fold into M.
    const { pa, pb, keep, fold } = foldBatch(batchA, batchB, batch);
    const Mf = M * fold;
    const outer = batch.slice(0, keep);
    const nOuter = sizeOf(outer);
    const aStr = K.broadcastStrides(pa.slice(0, keep), outer);
    const bStr = K.broadcastStrides(pb.slice(0, keep), outer);
    const kn = Kd * N;

    let Bp = B;
    const nn = !tB && Mf < SMALL_M;
    if (!tB && !nn) {
      // Pack each B [K, N] into Bᵀ [N, K] so the kernel's inner loop is unit-stride in both operands.
      Bp = new Float32Array(B.length);
      for (let o = 0; o < B.length; o += kn) transpose2d(B, o, Kd, N, Bp, o);
    }
    const acc = nn ? new Float64Array(N) : null;
    for (let o = 0; o < nOuter; o++) {
      let ai = 0;
      let bi = 0;
      for (let d = keep - 1, rem = o; d >= 0; d--) {
        const dim = outer[d]!;
        const idx = rem % dim;
        rem = (rem - idx) / dim;
        ai += idx * aStr[d]!;
        bi += idx * bStr[d]!;
      }
      const aOff = ai * fold * mk;
      const bOff = bi * kn;
      const cOff = o * Mf * N;
      if (acc) gemmNNSmallM(Ap, aOff, Bp, bOff, out, cOff, Mf, N, Kd, acc);
      else gemmNT(Ap, aOff, Bp, bOff, out, cOff, Mf, N, Kd);
    }
    return result;
  }

  async binary(op: BinaryOp, a: Tensor, b: Tensor): Promise<Tensor> {
    const A = this.data(a, op);
    const B = this.data(b, op);
    if (a.dtype !== b.dtype) throw new TypeError(`binary ${op}: dtypes differ (${a.dtype} and ${b.dtype})`);
    const shape = K.sameShape(a.shape, b.shape) ? a.shape : K.broadcastShapes(a.shape, b.shape, op);
    const out = this.alloc(A, sizeOf(shape));
    K.binary(op, A, a.shape, B, b.shape, out, shape);
    return this.make(out, shape);
  }

  async unary(op: UnaryOp, x: Tensor): Promise<Tensor> {
    const X = this.data(x, op);
    if (X instanceof Int32Array && !INT_UNARY.has(op))
      throw new TypeError(`unary ${op}: needs an f32 tensor, got i32`);
    const out = this.alloc(X, X.length);
    K.unary(op, X, out);
    return this.make(out, x.shape);
  }

  async scale(x: Tensor, mul: number, add = 0): Promise<Tensor> {
    const X = this.f32(x, 'scale');
    const out = new Float32Array(X.length);
    K.scale(X, mul, add, out);
    return this.make(out, x.shape);
  }

  async reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims = false): Promise<Tensor> {
    const X = this.data(x, `reduce ${op}`);
    const { reduced, shape } = reduceDims(op, x.shape, axes, keepDims);
    const n = sizeOf(shape);
    const out = X instanceof Int32Array && op !== 'mean' ? new Int32Array(n) : new Float32Array(n);
    K.reduce(op, X, x.shape, reduced, out);
    return this.make(out, shape);
  }

  async softmax(x: Tensor): Promise<Tensor> {
    const X = this.f32(x, 'softmax');
    const out = new Float32Array(X.length);
    if (X.length) K.softmax(X, out, x.shape[x.shape.length - 1] ?? 1);
    return this.make(out, x.shape);
  }

  async logSoftmax(x: Tensor): Promise<Tensor> {
    const X = this.f32(x, 'logSoftmax');
    const out = new Float32Array(X.length);
    if (X.length) K.logSoftmax(X, out, x.shape[x.shape.length - 1] ?? 1);
    return this.make(out, x.shape);
  }

  async rmsNorm(x: Tensor, weight: Tensor, eps: number): Promise<Tensor> {
    const X = this.f32(x, 'rmsNorm');
    const W = this.f32(weight, 'rmsNorm');
    const L = rmsNormDims(x.shape, weight.shape);
    const out = new Float32Array(X.length);
    if (X.length) K.rmsNorm(X, W, eps, out, L);
    return this.make(out, x.shape);
  }

  async rope(x: Tensor, cos: Tensor, sin: Tensor): Promise<Tensor> {
    const X = this.f32(x, 'rope');
    const C = this.f32(cos, 'rope');
    const S = this.f32(sin, 'rope');
    const [T, H, D] = ropeDims(x.shape, cos.shape, sin.shape);
    const out = new Float32Array(X.length);
    if (X.length) K.rope(X, C, S, out, T, H, D);
    return this.make(out, x.shape);
  }

  async gather(table: Tensor, ids: Tensor): Promise<Tensor> {
    const Tb = this.data(table, 'gather');
    const I = this.i32(ids, 'gather');
    if (table.shape.length < 1) throw new RangeError('gather: table must have rank ≥ 1');
    const V = table.shape[0]!;
    const rest = table.shape.slice(1);
    const L = sizeOf(rest);
    checkGatherIds(I, V);
    const out = this.alloc(Tb, I.length * L);
    for (let i = 0; i < I.length; i++) {
      const s = I[i]! * L;
      if (L >= 32) out.set(Tb.subarray(s, s + L), i * L);
      else for (let j = 0, o = i * L; j < L; j++) out[o + j] = Tb[s + j]!;
    }
    return this.make(out, [...ids.shape, ...rest]);
  }

  async crossEntropy(logits: Tensor, targets: Tensor): Promise<Tensor> {
    const X = this.f32(logits, 'crossEntropy');
    const Tg = this.i32(targets, 'crossEntropy');
    const [N, V] = crossEntropyDims(logits.shape, targets.shape);
    checkTargets(Tg, N, V);
    const out = new Float32Array(N);
    K.crossEntropy(X, Tg, out, V);
    return this.make(out, [N]);
  }

  async reshape(x: Tensor, shape: Shape): Promise<Tensor> {
    const X = this.data(x, 'reshape');
    const dims = reshapeDims(x.shape, shape);
    // Shares the buffer: tensors are immutable, and read() copies.
    return this.make(X, dims);
  }

  async transpose(x: Tensor, perm: readonly number[]): Promise<Tensor> {
    const X = this.data(x, 'transpose');
    const { perm: p, shape } = transposeDims(x.shape, perm);
    if (p.every((ax, i) => ax === i)) return this.make(X, shape);
    const st = rowMajorStrides(x.shape);
    const out = this.alloc(X, X.length);
    K.copyStrided(
      X,
      0,
      shape,
      p.map((ax) => st[ax]!),
      out,
      0,
    );
    return this.make(out, shape);
  }

  async slice(x: Tensor, begin: readonly number[], size: readonly number[]): Promise<Tensor> {
    const X = this.data(x, 'slice');
    const { begin: b, shape } = sliceDims(x.shape, begin, size);
    const st = rowMajorStrides(x.shape);
    let off = 0;
    for (let i = 0; i < b.length; i++) off += b[i]! * st[i]!;
    const out = this.alloc(X, sizeOf(shape));
    K.copyStrided(X, off, shape, st, out, 0);
    return this.make(out, shape);
  }

  async concat(xs: readonly Tensor[], axis: number): Promise<Tensor> {
    const first = xs[0];
    if (!first) throw new RangeError('concat: no tensors');
    const ax = normAxis(axis, first.shape.length, 'concat');
    const datas = xs.map((t) => this.data(t, 'concat'));
    const shape = concatShape(xs, ax);
    const out = this.alloc(datas[0]!, sizeOf(shape));
    const outer = sizeOf(first.shape.slice(0, ax));
    const inner = sizeOf(first.shape.slice(ax + 1));
    let o = 0;
    for (let i = 0; i < outer; i++) {
      for (let j = 0; j < xs.length; j++) {
        const src = datas[j]!;
        const chunk = xs[j]!.shape[ax]! * inner;
        const s = i * chunk;
        if (chunk >= 32) out.set(src.subarray(s, s + chunk), o);
        else for (let q = 0; q < chunk; q++) out[o + q] = src[s + q]!;
        o += chunk;
      }
    }
    return this.make(out, shape);
  }

  async attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Promise<Tensor> {
    const Q = this.f32(q, 'attention');
    const Kt = this.f32(k, 'attention');
    const V = this.f32(v, 'attention');
    const { B, T, H, D, S, Hkv } = attentionDims(q.shape, k.shape, v.shape);
    const out = new Float32Array(B * T * H * D);
    const offset = options.offset ?? S - T;
    // No keys at all: zeros, as the composite's empty softmax · v gives.
    if (out.length && S > 0)
      K.attention(Q, Kt, V, out, B, T, S, H, Hkv, D, options.scale, options.causal, offset);
    return this.make(out, [B, T, H * D]);
  }
}

/** BackendFactory for `js`: always available, CPU only. */
export async function createJsBackend(options: BackendOptions = {}): Promise<Backend> {
  if (options.device !== undefined && options.device !== 'cpu') {
    throw new LineageError(
      `the js backend runs on the cpu only (device '${String(options.device)}' requested)`,
    );
  }
  return new JsBackend();
}
