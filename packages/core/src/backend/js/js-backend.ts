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

function rowMajorStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

function normAxis(axis: number, rank: number, op: string): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new RangeError(`${op}: axis ${axis} is out of range for rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

function checkShape(shape: Shape, op: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`${op}: bad dimension ${d} in [${shape}]`);
  }
}

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
    if (!(data instanceof Float32Array || data instanceof Int32Array)) {
      throw new TypeError('js backend upload: data must be a Float32Array or Int32Array');
    }
    checkShape(shape, 'upload');
    if (data.length !== sizeOf(shape)) {
      throw new RangeError(
        `js backend upload: ${data.length} values for shape [${shape}] (needs ${sizeOf(shape)})`,
      );
    }
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
    const ra = a.shape.length;
    const rb = b.shape.length;
    if (ra < 2 || rb < 2)
      throw new RangeError(`matmul: operands need rank ≥ 2, got [${a.shape}] and [${b.shape}]`);
    const M = a.shape[tA ? ra - 1 : ra - 2]!;
    const Ka = a.shape[tA ? ra - 2 : ra - 1]!;
    const N = b.shape[tB ? rb - 2 : rb - 1]!;
    const Kb = b.shape[tB ? rb - 1 : rb - 2]!;
    if (Ka !== Kb) {
      throw new RangeError(
        `matmul: inner dimensions differ (${Ka} vs ${Kb}) for [${a.shape}]${tA ? 'ᵀ' : ''} · [${b.shape}]${tB ? 'ᵀ' : ''}`,
      );
    }
    const Kd = Ka;
    const batchA = a.shape.slice(0, -2);
    const batchB = b.shape.slice(0, -2);
    const batch = K.broadcastShapes(batchA, batchB, 'matmul');
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

    // Trailing batch axes over which b broadcasts and a does not fold into M: [B,H,G,T,D]·[B,H,1,S,D]ᵀ runs
    // as one [G·T, D]·[S, D]ᵀ product per (B, H), and x [.., K]·W for a 2-D W as a single product.
    const r = batch.length;
    const pa = [...new Array<number>(r - batchA.length).fill(1), ...batchA];
    const pb = [...new Array<number>(r - batchB.length).fill(1), ...batchB];
    let keep = r;
    let fold = 1;
    while (keep > 0 && pb[keep - 1] === 1 && pa[keep - 1] === batch[keep - 1]) {
      fold *= batch[keep - 1]!;
      keep--;
    }
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
    const rank = x.shape.length;
    const reduced = new Array<boolean>(rank).fill(false);
    for (const ax of axes) {
      const a = normAxis(ax, rank, `reduce ${op}`);
      if (reduced[a]) throw new RangeError(`reduce ${op}: axis ${ax} is repeated in [${axes}]`);
      reduced[a] = true;
    }
    const shape: number[] = [];
    for (let i = 0; i < rank; i++) {
      if (!reduced[i]) shape.push(x.shape[i]!);
      else if (keepDims) shape.push(1);
    }
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
    const L = x.shape[x.shape.length - 1] ?? 1;
    if (weight.shape.length !== 1 || weight.shape[0] !== L) {
      throw new RangeError(
        `rmsNorm: weight [${weight.shape}] does not match the last axis of x [${x.shape}]`,
      );
    }
    const out = new Float32Array(X.length);
    if (X.length) K.rmsNorm(X, W, eps, out, L);
    return this.make(out, x.shape);
  }

  async rope(x: Tensor, cos: Tensor, sin: Tensor): Promise<Tensor> {
    const X = this.f32(x, 'rope');
    const C = this.f32(cos, 'rope');
    const S = this.f32(sin, 'rope');
    const r = x.shape.length;
    if (r < 3) throw new RangeError(`rope: x must be [..., T, H, D], got [${x.shape}]`);
    const [T, H, D] = x.shape.slice(-3) as [number, number, number];
    if (D % 2 !== 0) throw new RangeError(`rope: head dim ${D} is odd`);
    const want = [T, D / 2];
    if (!K.sameShape(cos.shape, want) || !K.sameShape(sin.shape, want)) {
      throw new RangeError(
        `rope: cos [${cos.shape}] and sin [${sin.shape}] must be [${want}] for x [${x.shape}]`,
      );
    }
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
    const out = this.alloc(Tb, I.length * L);
    for (let i = 0; i < I.length; i++) {
      const id = I[i]!;
      if (id < 0 || id >= V)
        throw new LineageError(`gather: id ${id} (at position ${i}) is out of range [0, ${V})`);
      const s = id * L;
      if (L >= 32) out.set(Tb.subarray(s, s + L), i * L);
      else for (let j = 0, o = i * L; j < L; j++) out[o + j] = Tb[s + j]!;
    }
    return this.make(out, [...ids.shape, ...rest]);
  }

  async crossEntropy(logits: Tensor, targets: Tensor): Promise<Tensor> {
    const X = this.f32(logits, 'crossEntropy');
    const Tg = this.i32(targets, 'crossEntropy');
    if (logits.shape.length !== 2)
      throw new RangeError(`crossEntropy: logits must be [N, V], got [${logits.shape}]`);
    const [N, V] = logits.shape as [number, number];
    if (targets.shape.length !== 1 || targets.shape[0] !== N) {
      throw new RangeError(
        `crossEntropy: targets [${targets.shape}] must be [${N}] for logits [${logits.shape}]`,
      );
    }
    for (let i = 0; i < N; i++) {
      const t = Tg[i]!;
      if (t < 0 || t >= V)
        throw new LineageError(`crossEntropy: target ${t} (row ${i}) is out of range [0, ${V})`);
    }
    const out = new Float32Array(N);
    K.crossEntropy(X, Tg, out, V);
    return this.make(out, [N]);
  }

  async reshape(x: Tensor, shape: Shape): Promise<Tensor> {
    const X = this.data(x, 'reshape');
    const dims = [...shape];
    const free = dims.indexOf(-1);
    if (free >= 0) {
      dims[free] = 1;
      const known = sizeOf(dims);
      if (dims.includes(-1) || known === 0 || X.length % known !== 0) {
        throw new RangeError(`reshape: cannot infer -1 in [${shape}] for ${X.length} values`);
      }
      dims[free] = X.length / known;
    }
    checkShape(dims, 'reshape');
    if (sizeOf(dims) !== X.length)
      throw new RangeError(`reshape: [${x.shape}] -> [${shape}] changes the size`);
    // Shares the buffer: tensors are immutable, and read() copies.
    return this.make(X, dims);
  }

  async transpose(x: Tensor, perm: readonly number[]): Promise<Tensor> {
    const X = this.data(x, 'transpose');
    const r = x.shape.length;
    if (perm.length !== r) throw new RangeError(`transpose: perm [${perm}] does not match rank ${r}`);
    const p = perm.map((ax) => normAxis(ax, r, 'transpose'));
    if (new Set(p).size !== r) throw new RangeError(`transpose: [${perm}] is not a permutation`);
    const shape = p.map((ax) => x.shape[ax]!);
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
    const r = x.shape.length;
    if (begin.length !== r || size.length !== r) {
      throw new RangeError(
        `slice: begin [${begin}] and size [${size}] must both have rank ${r} for [${x.shape}]`,
      );
    }
    const st = rowMajorStrides(x.shape);
    const shape: number[] = [];
    let off = 0;
    for (let i = 0; i < r; i++) {
      const dim = x.shape[i]!;
      const b0 = begin[i]!;
      const b = b0 < 0 ? b0 + dim : b0;
      const s = size[i] === -1 ? dim - b : size[i]!;
      if (!Number.isInteger(b) || !Number.isInteger(s) || b < 0 || s < 0 || b + s > dim) {
        throw new RangeError(`slice: begin [${begin}] size [${size}] is out of bounds for [${x.shape}]`);
      }
      shape.push(s);
      off += b * st[i]!;
    }
    const out = this.alloc(X, sizeOf(shape));
    K.copyStrided(X, off, shape, st, out, 0);
    return this.make(out, shape);
  }

  async concat(xs: readonly Tensor[], axis: number): Promise<Tensor> {
    const first = xs[0];
    if (!first) throw new RangeError('concat: no tensors');
    const r = first.shape.length;
    const ax = normAxis(axis, r, 'concat');
    const datas = xs.map((t) => this.data(t, 'concat'));
    let total = 0;
    for (const t of xs) {
      const ok =
        t.dtype === first.dtype &&
        t.shape.length === r &&
        t.shape.every((d, i) => i === ax || d === first.shape[i]);
      if (!ok)
        throw new RangeError(
          `concat: [${t.shape}] ${t.dtype} does not match [${first.shape}] ${first.dtype} off axis ${ax}`,
        );
      total += t.shape[ax]!;
    }
    const shape = first.shape.map((d, i) => (i === ax ? total : d));
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
    if (q.shape.length !== 4 || k.shape.length !== 4 || !K.sameShape(k.shape, v.shape)) {
      throw new RangeError(
        `attention: need q [B,T,H,D] and k, v [B,S,Hkv,D]; got [${q.shape}], [${k.shape}], [${v.shape}]`,
      );
    }
    const [B, T, H, D] = q.shape as [number, number, number, number];
    const [Bk, S, Hkv, Dk] = k.shape as [number, number, number, number];
    if (Bk !== B || Dk !== D || Hkv === 0 || H % Hkv !== 0) {
      throw new RangeError(
        `attention: q [${q.shape}] is incompatible with k/v [${k.shape}] (H must be a multiple of Hkv)`,
      );
    }
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
