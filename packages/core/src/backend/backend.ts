import type { LlamaModel } from '../nn/llama.js';
import type { Shape } from '../tensor/host-tensor.js';
import type { FusedTraining } from './fused-training.js';

/** Element types backends compute in. Stored dtypes (f16, bf16, packed ints) are decoded by layers first. */
export type ComputeDType = 'f32' | 'i32';

/**
 * A tensor owned by a backend (host memory for `js`, an OrtValue or GPU buffer for others). Opaque to
 * core except for shape and dtype. Release it with `backend.dispose(t)` (or inside `Ops.tidy`).
 */
export interface Tensor {
  readonly shape: Shape;
  readonly dtype: ComputeDType;
  readonly backend: Backend;
  /** Backend-private payload. */
  readonly handle: unknown;
}

export interface MatmulOptions {
  transposeA?: boolean;
  transposeB?: boolean;
}

/** The elementwise unary ops of the contract (`Backend.unary`). */
export const UNARY_OPS = [
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
] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'max' | 'min';
export type ReduceOp = 'sum' | 'mean' | 'max';

export interface AttentionOptions {
  /** Multiplier on q·k (usually 1/sqrt(headDim)). */
  scale: number;
  /** Causal mask: query i (absolute position offset+i) sees keys 0..offset+i. */
  causal: boolean;
  /** Absolute position of the first query; keys start at 0 (KV-cache decoding uses offset = S - T). */
  offset?: number;
}

/**
 * The op contract. Every op returns a new tensor and never mutates its inputs. Binary ops broadcast
 * with numpy rules. Axes may be negative. All float math is f32 (accumulation may be wider).
 * A backend implements these kernels only: models, layers and methods are written once in core over them.
 */
export interface Backend {
  readonly name: string;
  /** Where tensors live / kernels run: 'cpu', 'webgpu', 'cuda', … */
  readonly device: string;

  /** Takes ownership of `data` (callers must not mutate it afterwards). */
  upload(data: Float32Array | Int32Array, shape: Shape): Tensor;
  /** Copies a tensor's values to the host. */
  read(t: Tensor): Promise<Float32Array | Int32Array>;
  /**
   * Optional: `read` for a tensor the caller disposes right after without any other use, so the backend
   * may hand over its own host array instead of a copy (gradients read once per step: a copy of every
   * weight's gradient each step otherwise). The caller owns the result.
   */
  readOnce?(t: Tensor): Promise<Float32Array | Int32Array>;
  /**
   * Optional: writes `data` (t's size, f32) into t in place and returns true, or returns false when it
   * cannot (the caller uploads afresh). Lets a parameter that changes every optimiser step keep its device
   * copy: a fresh upload of every weight each step costs a fresh allocation of every weight.
   */
  overwrite?(t: Tensor, data: Float32Array): boolean;
  /**
   * Optional: t[rows[i], …] += values[i, …] in place (t f32 of shape [R, …], `rows` distinct, `values` one
   * row of t per entry of `rows`) and returns true, or returns false when it cannot (storage shared or not
   * on the host). Lets an embedding's gradient add the rows a batch touched into the gradient its tied
   * output head already produced: a dense [vocab × dim] table and a dense sum (two fresh arrays of the
   * whole table per step) otherwise.
   */
  addRowsInPlace?(t: Tensor, rows: Int32Array, values: Float32Array): boolean;
  dispose(t: Tensor): void;
  /** Tensors allocated and not yet disposed (for leak checks). */
  liveTensors(): number;

  /** Batched matmul over the last two axes; leading (batch) axes broadcast. */
  matmul(a: Tensor, b: Tensor, options?: MatmulOptions): Promise<Tensor>;
  binary(op: BinaryOp, a: Tensor, b: Tensor): Promise<Tensor>;
  unary(op: UnaryOp, x: Tensor): Promise<Tensor>;
  /** x·mul + add, elementwise. */
  scale(x: Tensor, mul: number, add?: number): Promise<Tensor>;
  reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims?: boolean): Promise<Tensor>;
  /** Softmax over the last axis (numerically stable). */
  softmax(x: Tensor): Promise<Tensor>;
  logSoftmax(x: Tensor): Promise<Tensor>;
  /** x / sqrt(mean(x², last axis) + eps) · weight, weight of shape [lastDim]. */
  rmsNorm(x: Tensor, weight: Tensor, eps: number): Promise<Tensor>;
  /**
   * Rotary embedding, rotate-half (Hugging Face) convention: x of shape [..., T, H, D], cos and sin of
   * shape [T, D/2]; for j < D/2: y[j] = x[j]·cos[j] − x[j+D/2]·sin[j], y[j+D/2] = x[j+D/2]·cos[j] + x[j]·sin[j].
   */
  rope(x: Tensor, cos: Tensor, sin: Tensor): Promise<Tensor>;
  /** Rows of `table` ([V, ...rest]) at i32 `ids` (any shape) → [...ids.shape, ...rest]. Out-of-range ids throw. */
  gather(table: Tensor, ids: Tensor): Promise<Tensor>;
  /** Per-row −log softmax(logits)[target]: logits [N, V], targets i32 [N] → [N]. */
  crossEntropy(logits: Tensor, targets: Tensor): Promise<Tensor>;
  reshape(x: Tensor, shape: Shape): Promise<Tensor>;
  transpose(x: Tensor, perm: readonly number[]): Promise<Tensor>;
  slice(x: Tensor, begin: readonly number[], size: readonly number[]): Promise<Tensor>;
  concat(xs: readonly Tensor[], axis: number): Promise<Tensor>;

  /**
   * Optional fused attention. q [B, T, H, D], k and v [B, S, Hkv, D] with H a multiple of Hkv (grouped-
   * query attention: query head h uses kv head floor(h / (H/Hkv))) → [B, T, H·D]. When absent, core
   * composes it from the ops above; the conformance suite checks both agree.
   */
  attention?(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Promise<Tensor>;

  /**
   * Optional fused evaluation: the whole model as one graph of the backend's own (see FusedEvaluation).
   * `perplexity(..., { fused: true })` uses it when present and falls back to the ops above otherwise.
   */
  readonly fused?: FusedEvaluation;

  /**
   * Optional fused training pieces (see FusedTraining): distillation uses them when present and falls back
   * to the ops above otherwise.
   */
  readonly fusedTraining?: FusedTraining;

  /** Releases backend-wide resources (sessions, devices). */
  close?(): Promise<void>;
}

/** Why a fused capability cannot serve a model (e.g. a layer kind it cannot express); the caller falls back. */
export interface FusedUnsupported {
  unsupported: string;
}

/**
 * A backend capability: the forward of a whole model to per-token losses in one call, so that the
 * [tokens × vocab] logits never reach JavaScript. The per-op path (model.hidden → logits → crossEntropy)
 * stays the reference it must agree with. Implementations may cache per model (weights bound once) and
 * must not serve stale weights: a parameter whose value is replaced (`Parameter.value = …`, as optimisers
 * and surgery do) invalidates the cache; values mutated in place are not seen, so callers pass `fused: true`
 * only for a model that does not change during the evaluation.
 */
export interface FusedEvaluation {
  /**
   * −log softmax(logits)[target] per position, [batch·T] f32, for right-padded `ids` [batch, T] (i32) and
   * `targets` [batch, T] (every entry a valid token id; padded positions' values are ignored by callers).
   */
  nll(
    model: LlamaModel,
    ids: Int32Array,
    targets: Int32Array,
    batch: number,
  ): Promise<Float32Array | FusedUnsupported>;
}

export interface BackendOptions {
  /** Requested device ('cpu', 'webgpu', 'cuda', …); a backend that cannot provide it throws. */
  device?: string;
  /** Free-form backend-specific settings (threads, engine, injected modules). */
  [key: string]: unknown;
}

export type BackendFactory = (options: BackendOptions) => Promise<Backend>;
