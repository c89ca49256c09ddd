import type { Shape } from '../tensor/host-tensor.js';
import type {
  AttentionOptions,
  Backend,
  BinaryOp,
  MatmulOptions,
  ReduceOp,
  Tensor,
  UnaryOp,
} from './backend.js';

/**
 * The op surface core code calls: the backend's kernels plus composites (linear, attention), with
 * scoped disposal. `tidy(fn)` disposes every tensor created inside `fn` except those it returns (or
 * `keep`s). Scopes nest; they assume one async call chain per Ops at a time (no interleaved tidy).
 */
export class Ops {
  private scopes: Set<Tensor>[] = [];

  constructor(readonly backend: Backend) {}

  private track<T extends Tensor>(t: T): T {
    this.scopes[this.scopes.length - 1]?.add(t);
    return t;
  }

  /** Removes t from the current scope so it outlives it. */
  keep<T extends Tensor>(t: T): T {
    for (const s of this.scopes) s.delete(t);
    return t;
  }

  dispose(...ts: (Tensor | undefined)[]): void {
    for (const t of ts) {
      if (!t) continue;
      for (const s of this.scopes) s.delete(t);
      this.free(t);
    }
  }

  /**
   * Releases a tensor whose scope ended or that was disposed explicitly. A hook for subclasses: GradOps
   * defers tensors its tape still needs for the backward pass.
   */
  protected free(t: Tensor): void {
    this.backend.dispose(t);
  }

  async tidy<R>(fn: () => Promise<R>): Promise<R> {
    const scope = new Set<Tensor>();
    this.scopes.push(scope);
    let result: R;
    try {
      result = await fn();
    } finally {
      this.scopes.pop();
    }
    const kept = new Set<Tensor>();
    collectTensors(result, kept);
    for (const t of scope) {
      if (kept.has(t)) this.scopes[this.scopes.length - 1]?.add(t);
      else this.free(t);
    }
    return result;
  }

  upload(data: Float32Array | Int32Array, shape: Shape): Tensor {
    return this.track(this.backend.upload(data, shape));
  }
  read(t: Tensor): Promise<Float32Array | Int32Array> {
    return this.backend.read(t);
  }
  async readF32(t: Tensor): Promise<Float32Array> {
    const d = await this.backend.read(t);
    if (!(d instanceof Float32Array)) throw new TypeError('readF32: tensor is not f32');
    return d;
  }
  /** readF32 of a tensor disposed right after with no other use: no copy where the backend can hand over its array. */
  async readF32Once(t: Tensor): Promise<Float32Array> {
    const d = await (this.backend.readOnce ?? this.backend.read).call(this.backend, t);
    if (!(d instanceof Float32Array)) throw new TypeError('readF32: tensor is not f32');
    return d;
  }

  async matmul(a: Tensor, b: Tensor, o?: MatmulOptions) {
    return this.track(await this.backend.matmul(a, b, o));
  }
  async binary(op: BinaryOp, a: Tensor, b: Tensor) {
    return this.track(await this.backend.binary(op, a, b));
  }
  add(a: Tensor, b: Tensor) {
    return this.binary('add', a, b);
  }
  sub(a: Tensor, b: Tensor) {
    return this.binary('sub', a, b);
  }
  mul(a: Tensor, b: Tensor) {
    return this.binary('mul', a, b);
  }
  div(a: Tensor, b: Tensor) {
    return this.binary('div', a, b);
  }
  async unary(op: UnaryOp, x: Tensor) {
    return this.track(await this.backend.unary(op, x));
  }
  async scale(x: Tensor, mul: number, add = 0) {
    return this.track(await this.backend.scale(x, mul, add));
  }
  async reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims = false) {
    return this.track(await this.backend.reduce(op, x, axes, keepDims));
  }
  async softmax(x: Tensor) {
    return this.track(await this.backend.softmax(x));
  }
  async logSoftmax(x: Tensor) {
    return this.track(await this.backend.logSoftmax(x));
  }
  async rmsNorm(x: Tensor, w: Tensor, eps: number) {
    return this.track(await this.backend.rmsNorm(x, w, eps));
  }
  async rope(x: Tensor, cos: Tensor, sin: Tensor) {
    return this.track(await this.backend.rope(x, cos, sin));
  }
  async gather(table: Tensor, ids: Tensor) {
    return this.track(await this.backend.gather(table, ids));
  }
  async crossEntropy(logits: Tensor, targets: Tensor) {
    return this.track(await this.backend.crossEntropy(logits, targets));
  }
  async reshape(x: Tensor, shape: Shape) {
    return this.track(await this.backend.reshape(x, shape));
  }
  async transpose(x: Tensor, perm: readonly number[]) {
    return this.track(await this.backend.transpose(x, perm));
  }
  async slice(x: Tensor, begin: readonly number[], size: readonly number[]) {
    return this.track(await this.backend.slice(x, begin, size));
  }
  async concat(xs: readonly Tensor[], axis: number) {
    return this.track(await this.backend.concat(xs, axis));
  }

  /** y = x·Wᵀ (+ b): x [..., in], W [out, in] (PyTorch/HF layout). */
  async linear(x: Tensor, weight: Tensor, bias?: Tensor): Promise<Tensor> {
    const y = await this.matmul(x, weight, { transposeB: true });
    return bias ? this.add(y, bias) : y;
  }

  /** Attention with the backend's fused kernel when it has one, else the composite below. */
  async attention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Promise<Tensor> {
    if (this.backend.attention) return this.track(await this.backend.attention(q, k, v, o));
    return this.attentionComposite(q, k, v, o);
  }

  /** Reference attention from primitive ops; GQA by broadcasting kv heads over each query group. */
  async attentionComposite(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Promise<Tensor> {
    const [B, T, H, D] = q.shape as [number, number, number, number];
    const [, S, Hkv] = k.shape as [number, number, number, number];
    const G = H / Hkv;
    return this.tidy(async () => {
      // q: [B,T,Hkv,G,D] -> [B,Hkv,G,T,D]; k,v: [B,S,Hkv,D] -> [B,Hkv,1,S,D]
      const qh = await this.transpose(await this.reshape(q, [B, T, Hkv, G, D]), [0, 2, 3, 1, 4]);
      const kh = await this.reshape(await this.transpose(k, [0, 2, 1, 3]), [B, Hkv, 1, S, D]);
      const vh = await this.reshape(await this.transpose(v, [0, 2, 1, 3]), [B, Hkv, 1, S, D]);
      let scores = await this.scale(await this.matmul(qh, kh, { transposeB: true }), o.scale);
      if (o.causal) scores = await this.add(scores, this.causalMask(T, S, o.offset ?? S - T));
      const p = await this.softmax(scores);
      const ctx = await this.matmul(p, vh); // [B,Hkv,G,T,D]
      return this.reshape(await this.transpose(ctx, [0, 3, 1, 2, 4]), [B, T, H * D]);
    });
  }

  /** [T, S] additive mask: 0 where key s ≤ offset + t, −∞ elsewhere. */
  causalMask(T: number, S: number, offset: number): Tensor {
    const m = new Float32Array(T * S);
    for (let t = 0; t < T; t++)
      for (let s = offset + t + 1; s < S; s++) m[t * S + s] = Number.NEGATIVE_INFINITY;
    return this.upload(m, [T, S]);
  }
}

function collectTensors(v: unknown, out: Set<Tensor>, depth = 0): void {
  if (!v || typeof v !== 'object' || depth > 4) return;
  if ('handle' in v && 'backend' in v && 'shape' in v) {
    out.add(v as Tensor);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collectTensors(x, out, depth + 1);
  else if (v.constructor === Object || v instanceof Map) {
    for (const x of v instanceof Map ? v.values() : Object.values(v)) collectTensors(x, out, depth + 1);
  }
}
