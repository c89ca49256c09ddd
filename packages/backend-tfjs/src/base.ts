/**
 * The tfjs backend: Lineage's op contract on TensorFlow.js. Side-effect free: importing this module
 * registers nothing and loads no engine (see `index.ts` for the registering entry point).
 */
import type {
  AttentionOptions,
  Backend,
  BackendOptions,
  BinaryOp,
  ComputeDType,
  MatmulOptions,
  ReduceOp,
  Shape,
  Tensor,
  UnaryOp,
} from '@lineage/core';
import { LineageError, sizeOf } from '@lineage/core';
import {
  attentionDims,
  broadcastShapes,
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
  sameShape,
  sliceDims,
  transposeDims,
} from '@lineage/core/backend';
import type * as tfc from '@tensorflow/tfjs-core';
import {
  type EngineModules,
  type EngineName,
  type EngineOptions,
  type LoadedEngine,
  loadEngine,
  type Tf,
} from './load-engine.js';
import { BATCH_MATMUL, ROPE, registerWasmKernels, SLICE } from './wasm-kernels.js';

type TfTensor = tfc.Tensor;

export interface TfjsBackendOptions extends BackendOptions {
  /** Force an engine: 'node-gpu' | 'node' | 'webgpu' | 'wasm' | 'cpu' (default: the best that starts). */
  engine?: EngineName;
  /** 'cuda' (tfjs-node-gpu), 'webgpu', or 'cpu' (the best CPU engine). */
  device?: string;
  /** Engine modules to use instead of importing them; `null` marks one as not installed. */
  modules?: EngineModules;
  /** Dawn backends to try for WebGPU, in order (default: vulkan then opengles on Linux). */
  dawnBackends?: string[];
  /** Let automatic selection use a software WebGPU adapter (lavapipe/llvmpipe); default false. */
  allowSoftwareAdapter?: boolean;
  /**
   * Fused attention (default: on). It runs the same math as the composite with fewer passes: the scale
   * folded into q, one transpose per operand, a cached causal mask, tfjs's softmax kernel, and causal
   * prefill in blocks of queries that skip the keys they cannot see. `false` uses core's composite.
   */
  fusedAttention?: boolean;
}

/** Mutable box so dispose can drop the tf tensor while the Lineage tensor object stays immutable. */
class Handle {
  /** x·Wᵀ on wasm: Wᵀ kept beside a 2-D operand reused as the right side of transposed products. */
  transposed: TfTensor | undefined;
  constructor(
    public t: TfTensor | null,
    readonly owner: TfjsBackend,
    /** Host copy of uploaded i32 data (ids, targets): range checks without a device read. */
    readonly host: Int32Array | undefined,
  ) {}
}

class TfjsTensor implements Tensor {
  constructor(
    readonly shape: Shape,
    readonly dtype: ComputeDType,
    readonly backend: Backend,
    readonly handle: Handle,
  ) {}
}

const INT_UNARY: ReadonlySet<UnaryOp> = new Set(['neg', 'abs', 'square', 'relu']);

/**
 * where(cond, a, b) with a and b each a scalar or of cond's shape, run flat: the webgpu engine's Select
 * handles rank ≤ 4 only.
 */
function select(tf: Tf, cond: TfTensor, a: TfTensor, b: TfTensor): TfTensor {
  const flat = (t: TfTensor) => (t.rank === 0 ? t : tf.reshape(t, [-1]));
  return tf.reshape(tf.where(flat(cond), flat(a), flat(b)), cond.shape);
}

/** Transpose of host i32 data. */
function transposeHost(x: Int32Array, shape: readonly number[], perm: readonly number[]): Int32Array {
  const st = rowMajorStrides(shape);
  const outShape = perm.map((p) => shape[p]!);
  const src = perm.map((p) => st[p]!);
  const out = new Int32Array(x.length);
  const idx = new Array<number>(outShape.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let off = 0;
    for (let d = 0; d < idx.length; d++) off += idx[d]! * src[d]!;
    out[o] = x[off]!;
    for (let d = idx.length - 1; d >= 0; d--) {
      if (++idx[d]! < outShape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** Sum or max of host i32 data over the flagged axes. */
function reduceHost(
  op: 'sum' | 'max',
  x: Int32Array,
  shape: readonly number[],
  reduced: boolean[],
): Int32Array {
  const keptShape = shape.filter((_, i) => !reduced[i]);
  const kst = rowMajorStrides(keptShape);
  const out = new Int32Array(sizeOf(keptShape)).fill(op === 'max' ? -2147483648 : 0);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < x.length; i++) {
    let o = 0;
    for (let d = 0, k = 0; d < shape.length; d++) if (!reduced[d]) o += idx[d]! * kst[k++]!;
    out[o] = op === 'max' ? Math.max(out[o]!, x[i]!) : (out[o]! + x[i]!) | 0;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * What an engine's own kernels get right at the edges, probed once at start: where they do, the backend
 * uses them directly (fast); where they do not, it composes the op so that the contract holds.
 */
export interface EngineQuirks {
  /** max reductions and maximum/minimum propagate NaN. */
  nanMax: boolean;
  /** softmax is numpy-like on rows with ±∞ / NaN (and stable). */
  softmax: boolean;
  /** relu(NaN) is NaN. */
  reluNaN: boolean;
  /** x·sigmoid(x) keeps results that are normal while sigmoid(x) is subnormal (no flush to zero). */
  silu: boolean;
}

const SPECIAL_ROWS = [
  1000,
  1001,
  999,
  -Infinity,
  0,
  -Infinity,
  -Infinity,
  -Infinity,
  -Infinity,
  1,
  Infinity,
  2,
  1,
  Number.NaN,
  2,
  -1e30,
  0,
  1e30,
];

/** Probes the active engine's edge-case semantics (a handful of tiny kernels). */
export async function probeQuirks(tf: Tf): Promise<EngineQuirks> {
  const nan = Number.NaN;
  const [mx, mxi, mn, sm, relu, silu] = tf.tidy(() => {
    const v = tf.tensor2d([1, nan, 2, nan, 1, 2, 1, 2, nan], [3, 3]);
    const a = tf.tensor1d([nan, 1, 2]);
    const b = tf.tensor1d([1, nan, nan]);
    // −88 at every position of a SIMD-sized vector: flushing may depend on the lane.
    const xs = tf.tensor1d(Array.from({ length: 19 }, (_, i) => (i % 3 === 0 ? -88 : 1)));
    return [
      tf.max(v, 1),
      tf.maximum(a, b),
      tf.minimum(a, b),
      tf.softmax(tf.tensor2d(SPECIAL_ROWS, [6, 3])),
      tf.relu(tf.tensor1d([nan, -1])),
      tf.mul(xs, tf.sigmoid(xs)),
    ];
  });
  const read = async (t: TfTensor) => {
    const d = Array.from((await t.data()) as Float32Array);
    t.dispose();
    return d;
  };
  const [vmx, vmxi, vmn, vsm, vrelu, vsilu] = await Promise.all([mx, mxi, mn, sm, relu, silu].map(read));
  const allNaN = (xs: number[] | undefined) => !!xs && xs.every(Number.isNaN);
  const near = (x: number | undefined, e: number, tol: number) => x !== undefined && Math.abs(x - e) <= tol;
  const e0 = [Math.exp(1), Math.exp(2), 1].map((v, _, a) => v / (a[0]! + a[1]! + a[2]!));
  const softmaxOk =
    !!vsm &&
    near(vsm[0], e0[0]!, 1e-6) &&
    near(vsm[1], e0[1]!, 1e-6) &&
    near(vsm[2], e0[2]!, 1e-6) &&
    [0, 1, 0].every((v, i) => vsm[3 + i] === v) &&
    allNaN(vsm.slice(6, 15)) &&
    [0, 0, 1].every((v, i) => vsm[15 + i] === v);
  const siluRef = -88 / (1 + Math.exp(88));
  return {
    nanMax: allNaN(vmx) && allNaN(vmxi) && allNaN(vmn),
    softmax: softmaxOk,
    reluNaN: !!vrelu && Number.isNaN(vrelu[0]) && vrelu[1] === 0,
    silu:
      !!vsilu &&
      vsilu.every((v, i) => (i % 3 === 0 ? near(v, siluRef, 1e-38) : near(v, 1 / (1 + Math.exp(-1)), 1e-6))),
  };
}

/** Causal masks kept per shape (a forward pass reuses one per layer and query block). */
const MASK_CACHE_SIZE = 16;
/** Idle GPU buffer bytes kept for reuse on the webgpu engine before they are freed. */
const GPU_IDLE_BYTES = 256 * 2 ** 20;

/** The parts of tfjs-webgpu's BufferManager used to trim its pool. */
interface GpuBufferPool {
  numBytesAllocated: number;
  numBytesUsed: number;
  numFreeBuffers: number;
  freeBuffers: Map<string, { size: number; destroy(): void }[]>;
}

/** Query rows per block of blocked causal attention. */
const ATTENTION_BLOCK = 128;

/**
 * Lineage backend on a TensorFlow.js engine. Tensors are tf.Tensors of the engine; every op runs inside
 * `tf.tidy` so intermediates are freed, and returns a fresh tf.Tensor owned by the returned tensor.
 */
export class TfjsBackend implements Backend {
  readonly name = 'tfjs';
  /** 'cpu', 'webgpu' or 'cuda'. */
  readonly device: string;
  /** The engine that runs the kernels ('node-gpu', 'node', 'webgpu', 'wasm', 'cpu'). */
  readonly engine: EngineName;
  /** Engine details (SIMD, GPU adapter and Dawn backend, …). */
  readonly engineDescription: string;
  readonly tf: Tf;
  private readonly tfBackend: string;
  private readonly wasm: boolean;
  private readonly attentionFused: boolean;
  private readonly takeError: (() => string | undefined) | undefined;
  private live = 0;
  /** Handles holding a cached transpose (released on close). */
  private readonly withTransposes = new Set<Handle>();
  private readonly masks = new Map<string, TfTensor>();
  private closed = false;

  /** The engine's edge-case semantics (see EngineQuirks). */
  readonly quirks: EngineQuirks;

  constructor(loaded: LoadedEngine, options: { fusedAttention?: boolean; quirks?: EngineQuirks } = {}) {
    this.quirks = options.quirks ?? { nanMax: false, softmax: false, reluNaN: false, silu: false };
    this.tf = loaded.tf;
    this.engine = loaded.engine;
    this.device = loaded.device;
    this.tfBackend = loaded.tfBackend;
    this.engineDescription = loaded.description;
    this.wasm = loaded.tfBackend === 'wasm';
    this.attentionFused = options.fusedAttention !== false;
    this.takeError = loaded.takeError;
    if (this.wasm) registerWasmKernels(this.tf);
    if (!this.attentionFused) this.attention = undefined;
  }

  // -------------------------------------------------------------------------------------------------
  // Tensor bookkeeping

  private wrap(t: TfTensor, host?: Int32Array): Tensor {
    const dtype: ComputeDType =
      t.dtype === 'float32' ? 'f32' : t.dtype === 'int32' ? 'i32' : this.bug(`dtype ${t.dtype}`);
    this.live++;
    return new TfjsTensor(Object.freeze([...t.shape]), dtype, this, new Handle(t, this, host));
  }

  private bug(what: string): never {
    throw new Error(`tfjs backend: unexpected ${what} (a bug)`);
  }

  private handle(t: Tensor, op: string): Handle {
    const h = t.handle;
    if (!(h instanceof Handle)) {
      throw new TypeError(
        `tfjs backend ${op}: not a tfjs tensor (it belongs to backend '${t.backend?.name}')`,
      );
    }
    if (h.t === null) throw new Error(`tfjs backend ${op}: tensor [${t.shape}] was already disposed`);
    return h;
  }

  private tt(t: Tensor, op: string): TfTensor {
    return this.handle(t, op).t!;
  }

  private f32(t: Tensor, op: string): TfTensor {
    if (t.dtype !== 'f32')
      throw new TypeError(`tfjs backend ${op}: expected an f32 tensor, got i32 [${t.shape}]`);
    return this.tt(t, op);
  }

  private i32(t: Tensor, op: string): TfTensor {
    if (t.dtype !== 'i32')
      throw new TypeError(`tfjs backend ${op}: expected an i32 tensor, got f32 [${t.shape}]`);
    return this.tt(t, op);
  }

  /** Host values of an i32 tensor (uploaded ones keep a copy; others are read back). */
  private async intValues(t: Tensor, op: string): Promise<Int32Array> {
    const h = this.handle(t, op);
    if (h.host) return h.host;
    return (await h.t!.data()) as Int32Array;
  }

  /** Makes this backend's engine the active tfjs backend (instances on different engines can coexist). */
  private async ready(): Promise<void> {
    if (this.closed) throw new Error('tfjs backend: used after close()');
    if (this.tf.getBackend() !== this.tfBackend) await this.tf.setBackend(this.tfBackend);
    this.checkGpu();
  }

  /** Fails loudly after a GPU validation error: the results of the failed kernel are garbage. */
  private checkGpu(): void {
    const e = this.takeError?.();
    if (e) throw new Error(`tfjs backend (${this.engineDescription}): GPU error: ${e}`);
  }

  /** Runs `fn` in tf.tidy after activating the engine; the result is always a fresh tf.Tensor. */
  private async run(fn: (tf: Tf) => TfTensor, inputs: readonly TfTensor[] = []): Promise<Tensor> {
    await this.ready();
    const tf = this.tf;
    const out = tf.tidy(() => {
      const r = fn(tf);
      return inputs.includes(r) ? tf.clone(r) : r;
    });
    return this.wrap(out);
  }

  private zeros(shape: readonly number[], dtype: ComputeDType): TfTensor {
    return this.tf.zeros([...shape], dtype === 'f32' ? 'float32' : 'int32');
  }

  upload(data: Float32Array | Int32Array, shape: Shape): Tensor {
    if (this.closed) throw new Error('tfjs backend: used after close()');
    checkUpload('tfjs', data, shape);
    // Uploads are synchronous: with two engines in one process the data may land on the other one, and
    // tfjs moves it to this engine when an op of ours first uses it.
    const t = this.tf.tensor(data, [...shape], data instanceof Int32Array ? 'int32' : 'float32');
    return this.wrap(t, data instanceof Int32Array && data.length <= 1 << 20 ? data : undefined);
  }

  async read(t: Tensor): Promise<Float32Array | Int32Array> {
    const x = this.tt(t, 'read');
    await this.ready();
    const d = await x.data();
    this.checkGpu();
    if (this.engine === 'webgpu') this.trimGpuPool();
    // The cpu engine (and webgpu, for data still on the host) hands out its own storage: copy it.
    const copy = this.engine === 'wasm' ? d : d.slice();
    if (copy instanceof Float32Array || copy instanceof Int32Array) return copy;
    return this.bug('read dtype');
  }

  /**
   * tfjs-webgpu keeps every released GPU buffer for reuse, keyed by exact size, and never frees one: with
   * varying shapes (perplexity batches of different lengths) its pool grows without bound. Past a budget
   * of idle bytes, destroy the idle buffers (the keys stay: its release path expects them).
   */
  private trimGpuPool(): void {
    const bm = (this.tf.backend() as { bufferManager?: GpuBufferPool }).bufferManager;
    if (!bm || bm.numBytesAllocated - bm.numBytesUsed < GPU_IDLE_BYTES) return;
    for (const list of bm.freeBuffers.values()) {
      for (const b of list) {
        bm.numBytesAllocated -= b.size;
        b.destroy();
      }
      list.length = 0;
    }
    bm.numFreeBuffers = 0;
  }

  dispose(t: Tensor): void {
    const h = t.handle;
    if (!(h instanceof Handle)) throw new TypeError('tfjs backend dispose: not a tfjs tensor');
    if (h.t === null) return;
    h.t.dispose();
    h.t = null;
    if (h.transposed) {
      h.transposed.dispose();
      h.transposed = undefined;
      h.owner.withTransposes.delete(h);
    }
    h.owner.live--;
  }

  liveTensors(): number {
    return this.live;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const h of this.withTransposes) {
      h.transposed?.dispose();
      h.transposed = undefined;
    }
    this.withTransposes.clear();
    for (const m of this.masks.values()) m.dispose();
    this.masks.clear();
    this.closed = true;
  }

  // -------------------------------------------------------------------------------------------------
  // Matmul

  async matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Promise<Tensor> {
    const A = this.f32(a, 'matmul');
    const B = this.f32(b, 'matmul');
    const tA = options.transposeA === true;
    const tB = options.transposeB === true;
    const { M, K, N, batchA, batchB, batch } = matmulDims(a.shape, b.shape, tA, tB);
    const rb = b.shape.length;
    const outShape = [...batch, M, N];
    if (sizeOf(outShape) === 0 || K === 0) return this.run(() => this.zeros(outShape, 'f32'));
    await this.ready();
    // On wasm a transposed 2-D right operand (a weight) is transposed once and kept.
    const bt = this.wasm && tB && rb === 2 ? this.transposedOf(b) : undefined;
    return this.run((tf) => {
      // Fold trailing batch axes over which b broadcasts into a's rows.
      const { pa, pb, keep, fold } = foldBatch(batchA, batchB, batch, !tA);
      const outer = batch.slice(0, keep);
      const n = sizeOf(outer);
      const a3 = this.toBatch3(tf, A, pa.slice(0, keep), outer, tA ? [K, M] : [M * fold, K]);
      const b3 = bt
        ? tf.reshape(bt, [1, K, N])
        : this.toBatch3(tf, B, pb.slice(0, keep), outer, tB ? [N, K] : [K, N]);
      const c = this.mm3(tf, a3, b3, tA, tB && !bt, n);
      return tf.reshape(c, outShape);
    });
  }

  /** x [...xOuter, rows, cols] as [1 or n, rows, cols], broadcasting its batch to `outer` when needed. */
  private toBatch3(
    tf: Tf,
    x: TfTensor,
    xOuter: readonly number[],
    outer: readonly number[],
    mat: [number, number],
  ): TfTensor {
    const nx = sizeOf(xOuter);
    const n = sizeOf(outer);
    if (nx === n || nx === 1) return tf.reshape(x, [nx, ...mat]);
    const full = tf.broadcastTo(tf.reshape(x, [...xOuter, ...mat]), [...outer, ...mat]);
    return tf.reshape(full, [n, ...mat]);
  }

  /** [nA, ·, ·]·[nB, ·, ·] → [n, M, N], nA and nB each 1 or n. */
  private mm3(tf: Tf, a: TfTensor, b: TfTensor, tA: boolean, tB: boolean, n: number): TfTensor {
    if (!this.wasm) {
      // tfjs kernels broadcast a batch of 1 against n themselves.
      return tf.matMul(a, b, tA, tB);
    }
    // wasm: only untransposed products with batch 1 reach XNNPACK; transposes are cheap by comparison.
    const a2 = tA ? tf.transpose(a, [0, 2, 1]) : a;
    const b2 = tB ? tf.transpose(b, [0, 2, 1]) : b;
    if (a2.shape[0] === 1 && b2.shape[0] === 1) {
      return tf.reshape(tf.matMul(tf.reshape(a2, a2.shape.slice(1)), tf.reshape(b2, b2.shape.slice(1))), [
        1,
        a2.shape[1]!,
        b2.shape[2]!,
      ]);
    }
    if (n === 1) return this.bug('batch shapes in mm3');
    return tf.engine().runKernel(BATCH_MATMUL, { a: a2, b: b2 }, {}) as TfTensor;
  }

  /** Wᵀ for a 2-D tensor, computed once and kept until W is disposed (wasm only). */
  private transposedOf(w: Tensor): TfTensor {
    const h = this.handle(w, 'matmul');
    if (!h.transposed) {
      const tf = this.tf;
      h.transposed = tf.tidy(() => tf.transpose(h.t!));
      this.withTransposes.add(h);
    }
    return h.transposed;
  }

  // -------------------------------------------------------------------------------------------------
  // Elementwise

  async binary(op: BinaryOp, a: Tensor, b: Tensor): Promise<Tensor> {
    const A = this.tt(a, op);
    const B = this.tt(b, op);
    if (a.dtype !== b.dtype) throw new TypeError(`binary ${op}: dtypes differ (${a.dtype} and ${b.dtype})`);
    const shape = sameShape(a.shape, b.shape) ? [...a.shape] : broadcastShapes(a.shape, b.shape, op);
    const int = a.dtype === 'i32';
    if (sizeOf(shape) === 0) return this.run(() => this.zeros(shape, a.dtype));
    return this.run(
      (tf) => {
        switch (op) {
          case 'add':
            return tf.add(A, B);
          case 'sub':
            return tf.sub(A, B);
          case 'mul':
            return tf.mul(A, B);
          case 'div':
            return int ? this.truncDiv(tf, A, B) : tf.div(A, B);
          case 'max':
          case 'min': {
            const m = op === 'max' ? tf.maximum(A, B) : tf.minimum(A, B);
            if (int || this.quirks.nanMax) return m;
            // IEEE maximum/minimum (and numpy) propagate NaN; tfjs engines differ.
            const nan = tf.logicalOr(tf.isNaN(A), tf.isNaN(B));
            return select(tf, nan, tf.scalar(Number.NaN), m);
          }
          default:
            throw new TypeError(`binary: unknown op '${op as string}'`);
        }
      },
      [A, B],
    );
  }

  /** i32 division truncating toward zero (tfjs divides ints with floor). */
  private truncDiv(tf: Tf, a: TfTensor, b: TfTensor): TfTensor {
    const q = tf.floorDiv(tf.abs(a), tf.abs(b));
    const negative = tf.notEqual(tf.less(a, 0), tf.less(b, 0));
    return select(tf, negative, tf.neg(q), q);
  }

  async unary(op: UnaryOp, x: Tensor): Promise<Tensor> {
    const X = this.tt(x, op);
    const int = x.dtype === 'i32';
    if (int && !INT_UNARY.has(op)) throw new TypeError(`unary ${op}: needs an f32 tensor, got i32`);
    if (sizeOf(x.shape) === 0) return this.run(() => this.zeros(x.shape, x.dtype));
    const plainSilu = op === 'silu' && (await this.plainSiluOk(X));
    return this.run(
      (tf) => {
        switch (op) {
          case 'neg':
            return tf.neg(X);
          case 'exp':
            return tf.exp(X);
          case 'log':
            return tf.log(X);
          case 'sqrt':
            return tf.sqrt(X);
          case 'rsqrt':
            return tf.rsqrt(X);
          case 'recip':
            return tf.reciprocal(X);
          case 'abs':
            return tf.abs(X);
          case 'square':
            return tf.square(X);
          case 'silu': {
            if (plainSilu) return tf.mul(X, tf.sigmoid(X));
            // With e = exp(−|x|/2): x / (1 + e²) for x ≥ 0 and (x·e·e) / (1 + e²) for x < 0, so no
            // intermediate goes subnormal where the result is normal (engines that flush subnormals to
            // zero break x·sigmoid(x) and x / (1 + e^−x) below x ≈ −87).
            const e = tf.exp(tf.mul(tf.abs(X), tf.scalar(-0.5)));
            const num = select(tf, tf.less(X, tf.scalar(0)), tf.mul(tf.mul(X, e), e), X);
            return tf.div(num, tf.add(tf.mul(e, e), tf.scalar(1)));
          }
          case 'sigmoid':
            return tf.sigmoid(X);
          case 'tanh': {
            if (this.engine !== 'webgpu') return tf.tanh(X);
            // tfjs's WebGPU tanh, (1 − e^−2|x|)/(1 + e^−2|x|), cancels for small |x|: use the series there.
            const x2 = tf.square(X);
            const series = tf.mul(
              X,
              tf.add(tf.scalar(1), tf.mul(x2, tf.add(tf.scalar(-1 / 3), tf.mul(x2, tf.scalar(2 / 15))))),
            );
            return select(tf, tf.less(tf.abs(X), tf.scalar(0.03)), series, tf.tanh(X));
          }
          case 'relu':
            // relu(NaN) is NaN (some engines clamp it to 0).
            return int || this.quirks.reluNaN ? tf.relu(X) : select(tf, tf.isNaN(X), X, tf.relu(X));
          default:
            throw new TypeError(`unary: unknown op '${op as string}'`);
        }
      },
      [X],
    );
  }

  /**
   * Whether x·sigmoid(x) is exact for X: always on engines that keep subnormals; on CPU engines that
   * flush them, when no element is below −80 (checked on the host, one cheap reduction).
   */
  private async plainSiluOk(X: TfTensor): Promise<boolean> {
    if (this.quirks.silu) return true;
    if (this.device !== 'cpu') return false;
    await this.ready();
    const lo = this.tf.tidy(() => this.tf.min(X));
    const [v] = (await lo.data()) as Float32Array;
    lo.dispose();
    return v !== undefined && v >= -80;
  }

  async scale(x: Tensor, mul: number, add = 0): Promise<Tensor> {
    const X = this.f32(x, 'scale');
    if (sizeOf(x.shape) === 0) return this.run(() => this.zeros(x.shape, 'f32'));
    return this.run((tf) => {
      const m = tf.mul(X, tf.scalar(mul));
      return add === 0 ? m : tf.add(m, tf.scalar(add));
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Reductions and row ops

  async reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims = false): Promise<Tensor> {
    const X = this.tt(x, `reduce ${op}`);
    const rank = x.shape.length;
    const { reduced, shape } = reduceDims(op, x.shape, axes, keepDims);
    const list = reduced.flatMap((r, i) => (r ? [i] : []));
    const int = x.dtype === 'i32';
    const outDtype: ComputeDType = int && op !== 'mean' ? 'i32' : 'f32';
    if (sizeOf(shape) === 0) return this.run(() => this.zeros(shape, outDtype));
    const count = list.reduce((p, a) => p * x.shape[a]!, 1);
    if (this.engine === 'webgpu' && int && op !== 'mean' && list.length > 0 && count > 0) {
      // i32 reductions transpose i32 data on the webgpu engine, which breaks: reduce on the host.
      const host = await this.intValues(x, `reduce ${op}`);
      return this.wrap(this.tf.tensor(reduceHost(op, host, x.shape, reduced), shape, 'int32'));
    }
    if (count === 0 && op === 'max') {
      throw new RangeError(`reduce max: zero-size reduction over axes [${axes}] of [${x.shape}]`);
    }
    return this.run(
      (tf) => {
        const xs = int && op === 'mean' ? tf.cast(X, 'float32') : X;
        if (list.length === 0) return tf.reshape(xs, shape);
        if (count === 0) {
          const z = this.zeros(shape, outDtype);
          return op === 'mean' ? tf.div(z, tf.scalar(0)) : z;
        }
        // As [kept, reduced] rows: reduced axes moved last (one transpose of the data, never of a bool
        // mask, which the webgpu engine gets wrong), then one reduction over the last axis.
        const kept = reduced.flatMap((r, i) => (r ? [] : [i]));
        const trailing = list.every((a, i) => a === rank - list.length + i);
        const xt = trailing ? xs : tf.transpose(xs, [...kept, ...list]);
        const x2 = tf.reshape(xt, [-1, count]);
        switch (op) {
          case 'sum':
            return tf.reshape(tf.sum(x2, 1), shape);
          case 'mean':
            return tf.reshape(tf.mean(x2, 1), shape);
          case 'max':
            return tf.reshape(int ? tf.max(x2, 1) : this.rowMax(tf, x2), shape);
          default:
            throw new TypeError(`reduce: unknown op '${op as string}'`);
        }
      },
      [X],
    );
  }

  /** Row max over the last axis with NaN propagation (keepDims). */
  private rowMax(tf: Tf, x: TfTensor): TfTensor {
    const m = tf.max(x, -1, true);
    if (this.quirks.nanMax) return m;
    return select(tf, tf.any(tf.isNaN(x), -1, true), tf.scalar(Number.NaN), m);
  }

  /** Softmax over the last axis with numpy semantics on degenerate rows. */
  private softmaxT(tf: Tf, x: TfTensor): TfTensor {
    if (this.quirks.softmax) return tf.softmax(x);
    const e = tf.exp(tf.sub(x, this.rowMax(tf, x)));
    return tf.div(e, tf.sum(e, -1, true));
  }

  async softmax(x: Tensor): Promise<Tensor> {
    const X = this.f32(x, 'softmax');
    if (sizeOf(x.shape) === 0) return this.run(() => this.zeros(x.shape, 'f32'));
    // numpy semantics on degenerate rows: all −∞ or any +∞/NaN gives a NaN row.
    return this.run((tf) => {
      // As rows: the webgpu engine's kernels handle rank ≤ 4.
      const L = x.shape[x.shape.length - 1]!;
      return tf.reshape(this.softmaxT(tf, tf.reshape(X, [-1, L])), [...x.shape]);
    });
  }

  async logSoftmax(x: Tensor): Promise<Tensor> {
    const X = this.f32(x, 'logSoftmax');
    if (sizeOf(x.shape) === 0) return this.run(() => this.zeros(x.shape, 'f32'));
    return this.run((tf) => {
      const L = x.shape[x.shape.length - 1]!;
      const x2 = tf.reshape(X, [-1, L]);
      const s = tf.sub(x2, this.rowMax(tf, x2));
      // log Σ e^s = −log max softmax(x): the largest probability is 1/Σ e^s, never below 1/L, so this
      // needs no exp over the row (slow on wasm) and loses nothing to underflow.
      const lse = this.quirks.softmax
        ? tf.neg(tf.log(tf.max(tf.softmax(x2), -1, true)))
        : tf.log(tf.sum(tf.exp(s), -1, true));
      return tf.reshape(tf.sub(s, lse), [...x.shape]);
    });
  }

  async rmsNorm(x: Tensor, weight: Tensor, eps: number): Promise<Tensor> {
    const X = this.f32(x, 'rmsNorm');
    const W = this.f32(weight, 'rmsNorm');
    rmsNormDims(x.shape, weight.shape);
    if (sizeOf(x.shape) === 0) return this.run(() => this.zeros(x.shape, 'f32'));
    return this.run((tf) => {
      const ms = tf.mean(tf.square(X), -1, true);
      return tf.mul(tf.mul(X, tf.rsqrt(tf.add(ms, tf.scalar(eps)))), W);
    });
  }

  async rope(x: Tensor, cos: Tensor, sin: Tensor): Promise<Tensor> {
    const X = this.f32(x, 'rope');
    const C = this.f32(cos, 'rope');
    const S = this.f32(sin, 'rope');
    const [T, H, D] = ropeDims(x.shape, cos.shape, sin.shape);
    if (sizeOf(x.shape) === 0) return this.run(() => this.zeros(x.shape, 'f32'));
    return this.run((tf) => {
      // y = x·[cos, cos] + [x₂, x₁]·[−sin, sin] over x as [outer, T, H, D] (ranks ≤ 4 for the webgpu engine).
      const h = D / 2;
      const x4 = tf.reshape(X, [-1, T, H, D]);
      if (this.wasm)
        return tf.reshape(tf.engine().runKernel(ROPE, { x: x4, cos: C, sin: S }, {}) as TfTensor, [
          ...x.shape,
        ]);
      const n = x4.shape[0]!;
      const x1 = this.sliceT(tf, x4, [0, 0, 0, 0], [n, T, H, h]);
      const x2 = this.sliceT(tf, x4, [0, 0, 0, h], [n, T, H, h]);
      const cc = tf.reshape(tf.concat([C, C], 1), [T, 1, D]);
      const ss = tf.reshape(tf.concat([tf.neg(S), S], 1), [T, 1, D]);
      const y = tf.add(tf.mul(x4, cc), tf.mul(tf.concat([x2, x1], 3), ss));
      return tf.reshape(y, [...x.shape]);
    });
  }

  async gather(table: Tensor, ids: Tensor): Promise<Tensor> {
    const Tb = this.tt(table, 'gather');
    const I = this.i32(ids, 'gather');
    if (table.shape.length < 1) throw new RangeError('gather: table must have rank ≥ 1');
    const rest = table.shape.slice(1);
    const values = await this.intValues(ids, 'gather');
    checkGatherIds(values, table.shape[0]!);
    const shape = [...ids.shape, ...rest];
    if (sizeOf(shape) === 0) return this.run(() => this.zeros(shape, table.dtype));
    return this.run((tf) => tf.reshape(tf.gather(Tb, tf.reshape(I, [values.length]), 0), shape));
  }

  async crossEntropy(logits: Tensor, targets: Tensor): Promise<Tensor> {
    const X = this.f32(logits, 'crossEntropy');
    this.i32(targets, 'crossEntropy');
    const [N, V] = crossEntropyDims(logits.shape, targets.shape);
    const tg = await this.intValues(targets, 'crossEntropy');
    checkTargets(tg, N, V);
    const flat = Int32Array.from({ length: N }, (_, i) => i * V + tg[i]!);
    if (N === 0) return this.run(() => this.zeros([0], 'f32'));
    return this.run((tf) => {
      // −log softmax[t] = log Σ exp(x − m) − (x_t − m): no cancellation between two large terms.
      const m = tf.reshape(this.rowMax(tf, X), [N]);
      // log Σ exp(x − m): −log max softmax(x) when the engine's softmax is exact at the edges (see
      // logSoftmax), else summed.
      const lse = this.quirks.softmax
        ? tf.neg(tf.log(tf.max(tf.softmax(X), 1)))
        : tf.log(tf.sum(tf.exp(tf.sub(X, tf.reshape(m, [N, 1]))), 1));
      const picked = tf.gather(tf.reshape(X, [N * V]), tf.tensor1d(flat, 'int32'));
      return tf.sub(lse, tf.sub(picked, m));
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Data movement

  async reshape(x: Tensor, shape: Shape): Promise<Tensor> {
    const X = this.tt(x, 'reshape');
    const dims = reshapeDims(x.shape, shape);
    return this.run((tf) => tf.reshape(X, dims), [X]);
  }

  async transpose(x: Tensor, perm: readonly number[]): Promise<Tensor> {
    const X = this.tt(x, 'transpose');
    const { perm: p, shape } = transposeDims(x.shape, perm);
    if (sizeOf(shape) === 0) return this.run(() => this.zeros(shape, x.dtype));
    if (this.engine === 'webgpu' && x.dtype === 'i32') {
      // tfjs-webgpu's transpose shader is f32-only for some shapes: move i32 data (ids, small) on the host.
      const host = await this.intValues(x, 'transpose');
      return this.wrap(this.tf.tensor(transposeHost(host, x.shape, p), shape, 'int32'));
    }
    if (p.every((ax, i) => ax === i)) return this.run((tf) => tf.clone(X));
    return this.run((tf) => tf.transpose(X, p));
  }

  async slice(x: Tensor, begin: readonly number[], size: readonly number[]): Promise<Tensor> {
    const X = this.tt(x, 'slice');
    const { begin: b, shape: s } = sliceDims(x.shape, begin, size);
    if (sizeOf(s) === 0) return this.run(() => this.zeros(s, x.dtype));
    if (sameShape(s, x.shape)) return this.run((tf) => tf.clone(X));
    return this.run((tf) => this.sliceT(tf, X, b, s));
  }

  /** A slice with non-negative begins and explicit sizes (the wasm engine copies only the result). */
  private sliceT(tf: Tf, x: TfTensor, begin: number[], size: number[]): TfTensor {
    if (this.wasm) return tf.engine().runKernel(SLICE, { x }, { begin, size }) as TfTensor;
    return tf.slice(x, begin, size);
  }

  async concat(xs: readonly Tensor[], axis: number): Promise<Tensor> {
    const first = xs[0];
    if (!first) throw new RangeError('concat: no tensors');
    const ax = normAxis(axis, first.shape.length, 'concat');
    const ts = xs.map((t) => this.tt(t, 'concat'));
    const shape = concatShape(xs, ax);
    if (sizeOf(shape) === 0) return this.run(() => this.zeros(shape, first.dtype));
    const parts = ts.filter((_, i) => sizeOf(xs[i]!.shape) > 0);
    if (parts.length === 1) return this.run((tf) => tf.clone(parts[0]!));
    return this.run((tf) => tf.concat(parts, ax));
  }

  // -------------------------------------------------------------------------------------------------
  // Fused attention

  attention?: (q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions) => Promise<Tensor> = (
    q,
    k,
    v,
    o,
  ) => this.fusedAttention(q, k, v, o);

  private async fusedAttention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Promise<Tensor> {
    const Q = this.f32(q, 'attention');
    const Kt = this.f32(k, 'attention');
    const Vt = this.f32(v, 'attention');
    const { B, T, H, D, S, Hkv } = attentionDims(q.shape, k.shape, v.shape);
    const outShape = [B, T, H * D];
    // No keys: zeros, as the composite's empty softmax · v gives.
    if (sizeOf(outShape) === 0 || S === 0) return this.run(() => this.zeros(outShape, 'f32'));
    const G = H / Hkv;
    const offset = o.offset ?? S - T;
    // A query that sees no key (offset < 0) has an all −∞ row: the NaN-exact softmax handles it.
    const exact = o.causal && offset < 0;
    // Causal prefill in blocks of ~128 queries, each against only the keys it can see: about half the
    // score matrix (5/8 of it at T = 512) is never computed.
    const nBlocks = o.causal && !exact && T >= ATTENTION_BLOCK * 2 ? Math.ceil(T / ATTENTION_BLOCK) : 1;
    const blocks: { t0: number; tc: number; sEnd: number; mask?: TfTensor }[] = [];
    await this.ready();
    for (let i = 0, t0 = 0; i < nBlocks; i++) {
      const t1 = Math.round(((i + 1) * T) / nBlocks);
      const sEnd = o.causal && !exact ? Math.min(S, offset + t1) : S;
      // Rows t0.. see keys ≤ offset + t0 + row: a mask is needed unless the first row sees them all.
      const mask = o.causal && offset + t0 < sEnd - 1 ? this.mask(t1 - t0, sEnd, offset + t0) : undefined;
      blocks.push({ t0, tc: t1 - t0, sEnd, mask });
      t0 = t1;
    }
    return this.run((tf) => {
      const n = B * Hkv;
      // q → [B·Hkv, G, T, D] (scaled), k → [B·Hkv, D, S], v → [B·Hkv, S, D]
      const qh = tf.reshape(
        tf.transpose(tf.reshape(tf.mul(Q, tf.scalar(o.scale)), [B, T, Hkv, G, D]), [0, 2, 3, 1, 4]),
        [n, G, T, D],
      );
      const kh = tf.reshape(tf.transpose(Kt, [0, 2, 3, 1]), [n, D, S]);
      const vh = tf.reshape(tf.transpose(Vt, [0, 2, 1, 3]), [n, S, D]);
      const parts = blocks.map(({ t0, tc, sEnd, mask }) => {
        const qb = tc === T ? qh : this.sliceT(tf, qh, [0, 0, t0, 0], [n, G, tc, D]);
        const kb = sEnd === S ? kh : this.sliceT(tf, kh, [0, 0, 0], [n, D, sEnd]);
        const vb = sEnd === S ? vh : this.sliceT(tf, vh, [0, 0, 0], [n, sEnd, D]);
        let scores = this.mm3(tf, tf.reshape(qb, [n, G * tc, D]), kb, false, false, n);
        if (mask) scores = tf.add(tf.reshape(scores, [n, G, tc, sEnd]), mask);
        const p = exact ? this.softmaxT(tf, tf.reshape(scores, [-1, sEnd])) : tf.softmax(scores);
        return tf.reshape(this.mm3(tf, tf.reshape(p, [n, G * tc, sEnd]), vb, false, false, n), [n, G, tc, D]);
      });
      const ctx = parts.length === 1 ? parts[0]! : tf.concat(parts, 2);
      return tf.reshape(tf.transpose(tf.reshape(ctx, [B, Hkv, G, T, D]), [0, 3, 1, 2, 4]), outShape);
    });
  }

  /** [T, S] additive causal mask (0 where key s ≤ offset + t, −∞ elsewhere), cached per shape. */
  private mask(T: number, S: number, offset: number): TfTensor {
    const key = `${T},${S},${offset}`;
    let m = this.masks.get(key);
    if (m) {
      this.masks.delete(key);
      this.masks.set(key, m); // most recently used last
      return m;
    }
    const data = new Float32Array(T * S);
    for (let t = 0; t < T; t++)
      for (let s = Math.max(0, offset + t + 1); s < S; s++) data[t * S + s] = Number.NEGATIVE_INFINITY;
    m = this.tf.tensor2d(data, [T, S]);
    this.masks.set(key, m);
    if (this.masks.size > MASK_CACHE_SIZE) {
      const [oldest, t] = this.masks.entries().next().value as [string, TfTensor];
      t.dispose();
      this.masks.delete(oldest);
    }
    return m;
  }
}

/**
 * BackendFactory for `tfjs`: loads the best engine that starts (or the one forced by `engine` / `device`)
 * and returns a backend on it. `backend.engine` names the engine, `backend.device` where it runs.
 */
export async function createTfjsBackend(options: TfjsBackendOptions = {}): Promise<TfjsBackend> {
  const engineOptions: EngineOptions = {
    engine: options.engine,
    device: options.device,
    modules: options.modules,
    dawnBackends: options.dawnBackends,
    allowSoftwareAdapter: options.allowSoftwareAdapter,
  };
  let loaded: LoadedEngine;
  try {
    loaded = await loadEngine(engineOptions);
  } catch (e) {
    if (e instanceof LineageError) throw e;
    throw new LineageError(e instanceof Error ? e.message : String(e), undefined, { cause: e });
  }
  const quirks = await probeQuirks(loaded.tf);
  return new TfjsBackend(loaded, { fusedAttention: options.fusedAttention, quirks });
}

export {
  ENGINE_ORDER,
  ENGINE_PACKAGES,
  EngineMissingError,
  type EngineName,
  installCommand,
} from './load-engine.js';
