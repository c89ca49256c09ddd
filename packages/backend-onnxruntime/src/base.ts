import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import {
  type AttentionOptions,
  type Backend,
  type BackendOptions,
  type BinaryOp,
  type ComputeDType,
  JsBackend,
  LineageError,
  type MatmulOptions,
  type ReduceOp,
  type Shape,
  sizeOf,
  type Tensor,
  type UnaryOp,
} from '@lineage/core';
import {
  attentionDims,
  broadcastShapes,
  checkGatherIds,
  checkTargets,
  checkUpload,
  concatShape,
  crossEntropyDims,
  matmulDims,
  normAxis,
  reduceDims,
  reshapeDims,
  rmsNormDims,
  ropeDims,
  sameShape,
  sliceDims,
  transposeDims,
} from '@lineage/core/backend';
import { OrtFusedEvaluation } from './fused.js';
import { OrtFusedTraining } from './fused-train.js';
import * as G from './kernels.js';
import {
  INSTALL_COMMAND,
  loadRuntime,
  nativeBinFolder,
  type OrtModule,
  type OrtSession,
  type OrtSessionOptions,
  type OrtTensor,
  packageFolder,
  supportedProviders,
} from './load-runtime.js';

export type OnnxruntimeDevice = 'cpu' | 'webgpu' | 'cuda' | 'tensorrt';

export interface OnnxruntimeBackendOptions extends BackendOptions {
  /** Execution provider: 'cpu' (default), 'webgpu' (Dawn; Vulkan on Linux), 'cuda' or 'tensorrt'. */
  device?: OnnxruntimeDevice;
  /** Intra-op threads for the cpu provider (default: every core the process may use, `os.availableParallelism()`). */
  threads?: number;
  /** An onnxruntime-node module to use instead of importing the installed one. */
  ort?: unknown;
  /**
   * Host devices: ops with fewer output elements than this (matmul and attention: fewer than 8× this many
   * multiply-adds) run on the js backend's kernels, which beat onnxruntime's fixed cost per run there.
   * 0 sends every op to onnxruntime. Default: the measured break-even, 2048 (see README "Small ops").
   */
  smallOpThreshold?: number;
  /**
   * Let onnxruntime's intra-op threads spin between ops (its own default). Off by default: spinning
   * halves throughput when the machine is busy with other work (measured 2× slower on a shared 2-core
   * machine) and gains little for the large ops this backend is for.
   */
  spinning?: boolean;
}

/**
 * Measured break-even (output elements) below which the js kernels beat one onnxruntime session.run
 * (about 20 µs of fixed cpu cost); matmul and attention use 8× it in multiply-adds. See README "Small ops".
 */
export const DEFAULT_SMALL_OP_THRESHOLD = 2048;
/** Multiply-adds per element of the small-op threshold for matmul and attention. */
const MACS_PER_ELEMENT = 8;

type HostData = Float32Array | Int32Array;

/** Backing store shared by reshapes/aliases of one value; freed when its last view is disposed. */
class Storage {
  refs = 1;
  constructor(
    /** Host copy (always, on the cpu device; before first use and for i32 on gpu devices). */
    public host: HostData | null,
    /** Device-resident value (gpu devices). */
    public device: OrtTensor | null,
  ) {}
}

class OrtHandle {
  /** A cached ort.Tensor over this view's host data (cpu). */
  feed: OrtTensor | null = null;
  constructor(
    public storage: Storage | null,
    readonly owner: OnnxruntimeBackend,
  ) {}
}

class OrtBackendTensor implements Tensor {
  constructor(
    readonly shape: Shape,
    readonly dtype: ComputeDType,
    readonly backend: Backend,
    readonly handle: OrtHandle,
  ) {}
}

/**
 * The onnxruntime backend. Each op runs a small ONNX graph built in process (kernels.ts) with symbolic
 * dimensions, so one session serves every shape of a given rank; sessions are cached by
 * (op, dtype, rank, attributes). On the cpu device tensors are host typed arrays that onnxruntime reads
 * in place, and tiny ops run on the js backend's kernels; on gpu devices tensors stay on the device
 * between ops (onnxruntime gpu buffers) and are copied to the host only by `read`.
 */
export class OnnxruntimeBackend implements Backend {
  readonly name = 'onnxruntime';
  private live = 0;
  private sessions = new Map<string, Promise<OrtSession>>();
  private readonly js = new JsBackend();
  private readonly onGpu: boolean;
  private readonly small: number;
  private maskCache: { key: string; data: Float32Array } | null = null;
  private closed = false;
  /** Whole-model evaluation graphs (cpu; see fused.ts). */
  readonly fused: OrtFusedEvaluation | undefined;
  /** The distillation head as one graph (cpu; see fused-train.ts). */
  readonly fusedTraining: OrtFusedTraining | undefined;

  constructor(
    private readonly ort: OrtModule,
    readonly device: OnnxruntimeDevice,
    private readonly sessionOptions: OrtSessionOptions,
    options: { smallOpThreshold?: number } = {},
  ) {
    // On webgpu tensors live in gpu buffers between ops; on cuda/tensorrt (outputs on the host) and cpu
    // they are host arrays.
    this.onGpu = device === 'webgpu';
    this.small = this.onGpu ? 0 : (options.smallOpThreshold ?? DEFAULT_SMALL_OP_THRESHOLD);
    this.fused = device === 'cpu' ? new OrtFusedEvaluation(ort, sessionOptions) : undefined;
    this.fusedTraining =
      device === 'cpu'
        ? // Training sessions without onnxruntime's memory pattern: its plan, built on a session's first
          // run and allocated on the second, held ~0.8 GB more and made the first steps of every run slow
          // (stories42M shape, 4 × 256: 255k page faults in step 1 against 89k); the arena alone reuses.
          new OrtFusedTraining(
            ort,
            { ...sessionOptions, enableMemPattern: false },
            {
              feed: (t) => this.feed(t, 'kdHead'),
              wrap: (v, shape) => this.wrap(v, 'f32', shape),
            },
          )
        : undefined;
  }

  // -------------------------------------------------------------------------------------------------
  // Tensors

  private make(storage: Storage, shape: Shape, dtype: ComputeDType): Tensor {
    this.live++;
    return new OrtBackendTensor(Object.freeze([...shape]), dtype, this, new OrtHandle(storage, this));
  }

  private fromHost(data: HostData, shape: Shape): Tensor {
    return this.make(new Storage(data, null), shape, data instanceof Int32Array ? 'i32' : 'f32');
  }

  /** A new view of t's storage with another shape (no copy). */
  private alias(t: Tensor, shape: Shape): Tensor {
    const s = this.storage(t, 'alias');
    s.refs++;
    return this.make(s, shape, t.dtype);
  }

  private handle(t: Tensor, op: string): OrtHandle {
    const h = t.handle;
    if (!(h instanceof OrtHandle) || h.owner !== this) {
      throw new TypeError(
        `onnxruntime backend ${op}: not a tensor of this backend (it belongs to '${t.backend?.name}')`,
      );
    }
    return h;
  }

  private storage(t: Tensor, op: string): Storage {
    const s = this.handle(t, op).storage;
    if (!s) throw new Error(`onnxruntime backend ${op}: tensor [${t.shape}] was already disposed`);
    return s;
  }

  private checkDtype(t: Tensor, want: ComputeDType, op: string): void {
    this.storage(t, op);
    if (t.dtype !== want)
      throw new TypeError(
        `onnxruntime backend ${op}: expected an ${want} tensor, got ${t.dtype} [${t.shape}]`,
      );
  }

  upload(data: Float32Array | Int32Array, shape: Shape): Tensor {
    checkUpload('onnxruntime', data, shape);
    return this.fromHost(data, shape);
  }

  /** The host array itself when no other view shares it (the caller disposes t next); a copy otherwise. */
  async readOnce(t: Tensor): Promise<Float32Array | Int32Array> {
    const s = this.storage(t, 'read');
    if (s.host && s.refs === 1) {
      const h = this.handle(t, 'read');
      const data = s.host;
      s.host = null; // t is unusable from here on but for dispose
      h.feed = null;
      return data;
    }
    return this.read(t);
  }

  /** In place on host-resident f32 storage that no other view shares (the cpu device); false otherwise. */
  overwrite(t: Tensor, data: Float32Array): boolean {
    const s = this.storage(t, 'overwrite');
    if (t.dtype !== 'f32' || s.device || s.refs !== 1 || !(s.host instanceof Float32Array)) return false;
    if (s.host.length !== data.length) return false;
    s.host.set(data);
    return true;
  }

  /** In place on host-resident f32 storage that no other view shares (the cpu device); false otherwise. */
  addRowsInPlace(t: Tensor, rows: Int32Array, values: Float32Array): boolean {
    const s = this.storage(t, 'addRowsInPlace');
    if (t.dtype !== 'f32' || s.device || s.refs !== 1 || !(s.host instanceof Float32Array)) return false;
    const n = t.shape[0] ?? 0;
    const width = n ? s.host.length / n : 0;
    if (values.length !== rows.length * width)
      throw new RangeError(
        `onnxruntime backend addRowsInPlace: ${values.length} values for ${rows.length} rows of ${width}`,
      );
    const host = s.host;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (!(r >= 0 && r < n)) throw new RangeError(`onnxruntime backend addRowsInPlace: row ${r} of ${n}`);
      const at = r * width;
      const from = i * width;
      for (let k = 0; k < width; k++) host[at + k] = host[at + k]! + values[from + k]!;
    }
    return true;
  }

  async read(t: Tensor): Promise<Float32Array | Int32Array> {
    const s = this.storage(t, 'read');
    if (s.host) return s.host.slice();
    const r = await this.runKernel(
      `read:${t.dtype}`,
      () => G.identity(t.dtype),
      { x: this.feedDevice(t, [sizeOf(t.shape)]) },
      'cpu',
    );
    return this.hostOf(r.y!).slice();
  }

  dispose(t: Tensor): void {
    const h = this.handle(t, 'dispose');
    const s = h.storage;
    if (!s) return;
    h.storage = null;
    h.feed = null;
    this.live--;
    if (--s.refs === 0) {
      s.device?.dispose();
      s.device = null;
      s.host = null;
    }
  }

  liveTensors(): number {
    return this.live;
  }

  // -------------------------------------------------------------------------------------------------
  // Running kernels

  private ortType(dtype: ComputeDType): 'float32' | 'int32' {
    return dtype === 'f32' ? 'float32' : 'int32';
  }

  private hostOf(v: OrtTensor): HostData {
    const d = v.data;
    if (d instanceof Float32Array || d instanceof Int32Array) return d;
    throw new TypeError(`onnxruntime backend: unexpected output type ${v.type}`);
  }

  /** An ort.Tensor for t as a kernel input: host data on cpu, the device value on gpu devices. */
  private async feed(t: Tensor, op: string): Promise<OrtTensor> {
    const h = this.handle(t, op);
    const s = this.storage(t, op);
    if (s.device) return this.feedDevice(t);
    if (this.onGpu && t.dtype === 'f32') {
      // First use on the device: copy the host data over once (shared by every view), drop the host copy.
      const r = await this.runKernel('upload', () => G.identity('f32'), {
        x: new this.ort.Tensor('float32', s.host!, [s.host!.length]),
      });
      s.device = r.y!;
      s.host = null;
      return this.feedDevice(t);
    }
    h.feed ??= new this.ort.Tensor(this.ortType(t.dtype), s.host!, [...t.shape]);
    return h.feed;
  }

  /** The device value of t viewed with `dims` (t's shape by default). */
  private feedDevice(t: Tensor, dims: readonly number[] = t.shape): OrtTensor {
    const s = this.storage(t, 'feed');
    const dev = s.device!;
    if (sameShape(dev.dims, dims)) return dev;
    // A view: the same gpu buffer under another shape (not owning it; the storage disposes it).
    return this.ort.Tensor.fromGpuBuffer(dev.gpuBuffer as never, {
      dataType: this.ortType(t.dtype),
      dims: [...dims],
    }) as OrtTensor;
  }

  private session(
    key: string,
    build: () => Uint8Array,
    outputLocation: 'cpu' | 'gpu-buffer',
  ): Promise<OrtSession> {
    const k = `${key}@${outputLocation}`;
    let p = this.sessions.get(k);
    if (!p) {
      const opts: OrtSessionOptions = { ...this.sessionOptions };
      if (this.onGpu) opts.preferredOutputLocation = outputLocation;
      p = this.ort.InferenceSession.create(build(), opts);
      this.sessions.set(k, p);
      p.catch(() => this.sessions.delete(k));
    }
    return p;
  }

  /**
   * Runs the kernel `key` (built on first use) with `feeds`; outputs stay on the device on gpu devices
   * unless `location` is 'cpu'.
   */
  private async runKernel(
    key: string,
    build: () => Uint8Array,
    feeds: Record<string, OrtTensor>,
    location?: 'cpu',
  ): Promise<Record<string, OrtTensor>> {
    if (this.closed) throw new LineageError('the onnxruntime backend was closed');
    const loc = location ?? (this.onGpu ? 'gpu-buffer' : 'cpu');
    const s = await this.session(key, build, loc);
    return (await s.run(feeds)) as Record<string, OrtTensor>;
  }

  /** Wraps a kernel output as a tensor of this backend. */
  private wrap(v: OrtTensor, dtype: ComputeDType, shape?: Shape): Tensor {
    const dims = shape ?? v.dims;
    if (v.location === 'cpu') return this.make(new Storage(this.hostOf(v), null), dims, dtype);
    return this.make(new Storage(null, v), dims, dtype);
  }

  private async runOne(
    key: string,
    build: () => Uint8Array,
    inputs: Record<string, Tensor | OrtTensor>,
    dtype: ComputeDType,
    shape?: Shape,
  ): Promise<Tensor> {
    const feeds: Record<string, OrtTensor> = {};
    for (const [name, v] of Object.entries(inputs)) {
      feeds[name] = v instanceof OrtBackendTensor ? await this.feed(v, key) : (v as OrtTensor);
    }
    const r = await this.runKernel(key, build, feeds);
    for (const [name, v] of Object.entries(r)) if (name !== 'y' && v.location !== 'cpu') v.dispose();
    return this.wrap(r.y!, dtype, shape);
  }

  private int64(values: readonly number[]): OrtTensor {
    return new this.ort.Tensor(
      'int64',
      BigInt64Array.from(values, (v) => BigInt(v)),
      [values.length],
    );
  }

  private f32Scalar(v: number): OrtTensor {
    return new this.ort.Tensor('float32', Float32Array.of(v), []);
  }

  /** Whether an op with this many output elements runs on the js kernels (host devices only). */
  private isSmall(elements: number): boolean {
    return elements < this.small;
  }

  /** Whether a matmul-like op of this many multiply-adds runs on the js kernels. */
  private isSmallMacs(macs: number): boolean {
    return macs < this.small * MACS_PER_ELEMENT;
  }

  /** Runs `f` on the js backend over views of the inputs' host data; copies the (small) result back. */
  private async viaJs(inputs: readonly Tensor[], f: (xs: Tensor[]) => Promise<Tensor>): Promise<Tensor> {
    const xs: Tensor[] = [];
    try {
      for (const t of inputs) {
        const s = this.storage(t, 'js');
        let host = s.host;
        if (!host) host = (await this.read(t)) as HostData;
        xs.push(this.js.upload(host, t.shape));
      }
      const r = await f(xs);
      const data = await this.js.read(r);
      this.js.dispose(r);
      return this.upload(data, r.shape);
    } finally {
      for (const x of xs) this.js.dispose(x);
    }
  }

  private zeros(shape: Shape, dtype: ComputeDType): Tensor {
    const n = sizeOf(shape);
    return this.fromHost(dtype === 'f32' ? new Float32Array(n) : new Int32Array(n), shape);
  }

  // -------------------------------------------------------------------------------------------------
  // Ops

  async matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Promise<Tensor> {
    this.checkDtype(a, 'f32', 'matmul');
    this.checkDtype(b, 'f32', 'matmul');
    const tA = options.transposeA === true;
    const tB = options.transposeB === true;
    const { M, K: Ka, N, batch } = matmulDims(a.shape, b.shape, tA, tB);
    const ra = a.shape.length;
    const rb = b.shape.length;
    const shape = [...batch, M, N];
    if (sizeOf(shape) === 0 || Ka === 0) return this.zeros(shape, 'f32');
    if (this.isSmallMacs(sizeOf(shape) * Ka))
      return this.viaJs([a, b], ([x, y]) => this.js.matmul(x!, y!, options));
    // A 2-D weight under a batched activation: fold the batch into rows so one GEMM does it all.
    if (rb === 2 && ra > 2 && !tA) {
      const rows = sizeOf(a.shape.slice(0, -1));
      const a2 = this.alias(a, [rows, Ka]);
      try {
        const y = await this.runOne(
          `matmul:2:2:${tA}:${tB}`,
          () => G.matmul(2, 2, false, tB),
          { a: a2, b },
          'f32',
        );
        if (y.shape.length === shape.length) return y;
        const out = this.alias(y, shape);
        this.dispose(y);
        return out;
      } finally {
        this.dispose(a2);
      }
    }
    return this.runOne(
      `matmul:${ra}:${rb}:${tA}:${tB}`,
      () => G.matmul(ra, rb, tA, tB),
      { a, b },
      'f32',
      shape,
    );
  }

  async binary(op: BinaryOp, a: Tensor, b: Tensor): Promise<Tensor> {
    this.storage(a, op);
    this.storage(b, op);
    if (a.dtype !== b.dtype) throw new TypeError(`binary ${op}: dtypes differ (${a.dtype} and ${b.dtype})`);
    if (!G.BINARY_OPS.has(op)) throw new TypeError(`binary: unknown op '${op}'`);
    const shape = sameShape(a.shape, b.shape) ? [...a.shape] : broadcastShapes(a.shape, b.shape, op);
    const n = sizeOf(shape);
    if (n === 0) return this.zeros(shape, a.dtype);
    if (this.isSmall(n) || (a.dtype === 'i32' && !this.onGpu)) {
      return this.viaJs([a, b], ([x, y]) => this.js.binary(op, x!, y!));
    }
    return this.runOne(
      `binary:${op}:${a.dtype}:${a.shape.length}:${b.shape.length}`,
      () => G.binary(op, a.dtype, a.shape.length, b.shape.length),
      { a, b },
      a.dtype,
      shape,
    );
  }

  async unary(op: UnaryOp, x: Tensor): Promise<Tensor> {
    this.storage(x, op);
    if (!G.UNARY_OPS.has(op)) throw new TypeError(`unary: unknown op '${op}'`);
    const n = sizeOf(x.shape);
    if (x.dtype === 'i32' || this.isSmall(n) || n === 0)
      return this.viaJs([x], ([y]) => this.js.unary(op, y!));
    return this.runOne(
      `unary:${op}:${x.shape.length}`,
      () => G.unary(op, x.shape.length, this.device),
      { x },
      'f32',
      x.shape,
    );
  }

  async scale(x: Tensor, mul: number, add = 0): Promise<Tensor> {
    this.checkDtype(x, 'f32', 'scale');
    const n = sizeOf(x.shape);
    if (this.isSmall(n) || n === 0) return this.viaJs([x], ([y]) => this.js.scale(y!, mul, add));
    return this.runOne(
      `scale:${x.shape.length}`,
      () => G.scale(x.shape.length),
      { x, m: this.f32Scalar(mul), c: this.f32Scalar(add) },
      'f32',
      x.shape,
    );
  }

  async reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims = false): Promise<Tensor> {
    this.storage(x, `reduce ${op}`);
    const rank = x.shape.length;
    const { reduced, shape: outShape } = reduceDims(op, x.shape, axes, keepDims);
    const n = sizeOf(x.shape);
    const outDtype: ComputeDType = x.dtype === 'i32' && op !== 'mean' ? 'i32' : 'f32';
    if (n === 0 || this.isSmall(n) || (x.dtype === 'i32' && !this.onGpu) || axes.length === 0) {
      if (axes.length === 0 && n > 0 && outDtype === x.dtype) return this.alias(x, outShape);
      return this.viaJs([x], ([y]) => this.js.reduce(op, y!, axes, keepDims));
    }
    const ax = reduced.flatMap((r, i) => (r ? [i] : []));
    return this.runOne(
      `reduce:${op}:${x.dtype}:${rank}:${keepDims}`,
      () => G.reduce(op, x.dtype, rank, keepDims),
      { x, axes: this.int64(ax) },
      outDtype,
      outShape,
    );
  }

  async softmax(x: Tensor): Promise<Tensor> {
    return this.rowwise('softmax', x);
  }

  async logSoftmax(x: Tensor): Promise<Tensor> {
    return this.rowwise('logSoftmax', x);
  }

  private async rowwise(op: 'softmax' | 'logSoftmax', x: Tensor): Promise<Tensor> {
    this.checkDtype(x, 'f32', op);
    const n = sizeOf(x.shape);
    if (n === 0 || this.isSmall(n) || x.shape.length === 0) return this.viaJs([x], ([y]) => this.js[op](y!));
    return this.runOne(
      `${op}:${x.shape.length}`,
      () => G.rowwise(op, x.shape.length, this.device),
      { x },
      'f32',
      x.shape,
    );
  }

  async rmsNorm(x: Tensor, weight: Tensor, eps: number): Promise<Tensor> {
    this.checkDtype(x, 'f32', 'rmsNorm');
    this.checkDtype(weight, 'f32', 'rmsNorm');
    rmsNormDims(x.shape, weight.shape);
    const n = sizeOf(x.shape);
    if (n === 0 || this.isSmall(n) || x.shape.length === 0) {
      return this.viaJs([x, weight], ([y, w]) => this.js.rmsNorm(y!, w!, eps));
    }
    return this.runOne(
      `rmsNorm:${x.shape.length}:${eps}`,
      () => G.rmsNorm(x.shape.length, eps),
      { x, w: weight },
      'f32',
      x.shape,
    );
  }

  async rope(x: Tensor, cos: Tensor, sin: Tensor): Promise<Tensor> {
    this.checkDtype(x, 'f32', 'rope');
    this.checkDtype(cos, 'f32', 'rope');
    this.checkDtype(sin, 'f32', 'rope');
    const [T, H, D] = ropeDims(x.shape, cos.shape, sin.shape);
    const n = sizeOf(x.shape);
    if (n === 0 || this.isSmall(n)) return this.viaJs([x, cos, sin], ([y, c, s]) => this.js.rope(y!, c!, s!));
    const x3 = this.alias(x, [n / (T * H * D), T, H * D]);
    try {
      return await this.runOne(`rope:fused:${H}`, () => G.ropeFused(H), { x: x3, cos, sin }, 'f32', x.shape);
    } finally {
      this.dispose(x3);
    }
  }

  /** Host copy of a (small, index) i32 tensor, for range checks. */
  private async indices(t: Tensor, op: string): Promise<Int32Array> {
    this.checkDtype(t, 'i32', op);
    const s = this.storage(t, op);
    return (s.host ?? (await this.read(t))) as Int32Array;
  }

  async gather(table: Tensor, ids: Tensor): Promise<Tensor> {
    this.storage(table, 'gather');
    const I = await this.indices(ids, 'gather');
    if (table.shape.length < 1) throw new RangeError('gather: table must have rank ≥ 1');
    checkGatherIds(I, table.shape[0]!);
    const rest = table.shape.slice(1);
    const shape = [...ids.shape, ...rest];
    const n = sizeOf(shape);
    if (n === 0 || this.isSmall(n) || (table.dtype === 'i32' && !this.onGpu)) {
      return this.viaJs([table, ids], ([t, i]) => this.js.gather(t!, i!));
    }
    return this.runOne(
      `gather:${table.dtype}:${table.shape.length}:${ids.shape.length}`,
      () => G.gather(table.dtype, table.shape.length, ids.shape.length),
      { table, ids },
      table.dtype,
      shape,
    );
  }

  async crossEntropy(logits: Tensor, targets: Tensor): Promise<Tensor> {
    this.checkDtype(logits, 'f32', 'crossEntropy');
    const Tg = await this.indices(targets, 'crossEntropy');
    const [N, V] = crossEntropyDims(logits.shape, targets.shape);
    checkTargets(Tg, N, V);
    if (N * V === 0 || this.isSmall(N * V)) {
      return this.viaJs([logits, targets], ([l, t]) => this.js.crossEntropy(l!, t!));
    }
    return this.runOne('crossEntropy', () => G.crossEntropy(), { logits, targets }, 'f32', [N]);
  }

  async reshape(x: Tensor, shape: Shape): Promise<Tensor> {
    this.storage(x, 'reshape');
    const dims = reshapeDims(x.shape, shape, true);
    // Shares the storage: tensors are immutable.
    return this.alias(x, dims);
  }

  async transpose(x: Tensor, perm: readonly number[]): Promise<Tensor> {
    this.storage(x, 'transpose');
    const { perm: p, shape } = transposeDims(x.shape, perm);
    // Moving only axes of size 1 keeps the memory order: a reshape.
    const moved = p.filter((ax) => x.shape[ax] !== 1);
    if (moved.every((ax, i) => i === 0 || ax > moved[i - 1]!)) return this.alias(x, shape);
    const n = sizeOf(shape);
    if (n === 0 || this.isSmall(n) || (x.dtype === 'i32' && !this.onGpu)) {
      return this.viaJs([x], ([y]) => this.js.transpose(y!, p));
    }
    return this.runOne(`transpose:${x.dtype}:${p}`, () => G.transpose(x.dtype, p), { x }, x.dtype, shape);
  }

  async slice(x: Tensor, begin: readonly number[], size: readonly number[]): Promise<Tensor> {
    this.storage(x, 'slice');
    const r = x.shape.length;
    const { begin: b, shape } = sliceDims(x.shape, begin, size);
    if (sameShape(shape, x.shape)) return this.alias(x, shape);
    const n = sizeOf(shape);
    if (n === 0 || this.isSmall(n) || (x.dtype === 'i32' && !this.onGpu)) {
      return this.viaJs([x], ([y]) => this.js.slice(y!, b, shape));
    }
    return this.runOne(
      `slice:${x.dtype}:${r}`,
      () => G.slice(x.dtype, r),
      { x, starts: this.int64(b), ends: this.int64(b.map((v, i) => v + shape[i]!)) },
      x.dtype,
      shape,
    );
  }

  async concat(xs: readonly Tensor[], axis: number): Promise<Tensor> {
    const first = xs[0];
    if (!first) throw new RangeError('concat: no tensors');
    const r = first.shape.length;
    const ax = normAxis(axis, r, 'concat');
    const shape = concatShape(xs, ax, (t) => this.storage(t, 'concat'));
    const parts = xs.filter((t) => t.shape[ax] !== 0);
    if (parts.length === 1) return this.alias(parts[0]!, shape);
    const n = sizeOf(shape);
    if (n === 0 || this.isSmall(n) || (first.dtype === 'i32' && !this.onGpu)) {
      return this.viaJs(parts.length ? parts : [first], (ys) => this.js.concat(ys, ax));
    }
    const inputs: Record<string, Tensor> = {};
    parts.forEach((t, i) => {
      inputs[`x${i}`] = t;
    });
    return this.runOne(
      `concat:${first.dtype}:${r}:${parts.length}:${ax}`,
      () => G.concat(first.dtype, r, parts.length, ax),
      inputs,
      first.dtype,
      shape,
    );
  }

  /** [T, S] additive causal mask (0 where key s ≤ offset + t, −∞ elsewhere), cached for the last shape. */
  private causalMask(T: number, S: number, offset: number): Float32Array {
    const key = `${T},${S},${offset}`;
    if (this.maskCache?.key === key) return this.maskCache.data;
    const m = new Float32Array(T * S);
    for (let t = 0; t < T; t++)
      for (let s = Math.max(0, offset + t + 1); s < S; s++) m[t * S + s] = Number.NEGATIVE_INFINITY;
    this.maskCache = { key, data: m };
    return m;
  }

  async attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Promise<Tensor> {
    this.checkDtype(q, 'f32', 'attention');
    this.checkDtype(k, 'f32', 'attention');
    this.checkDtype(v, 'f32', 'attention');
    const { B, T, H, D, S, Hkv } = attentionDims(q.shape, k.shape, v.shape);
    const shape = [B, T, H * D];
    if (sizeOf(shape) === 0 || S === 0) return this.zeros(shape, 'f32');
    if (this.isSmallMacs(B * H * T * S * D))
      return this.viaJs([q, k, v], ([a, b, c]) => this.js.attention(a!, b!, c!, options));
    const G_ = H / Hkv;
    const offset = options.offset ?? S - T;
    if (options.causal && offset === 0 && T === S && D % 8 === 0 && !this.onGpu) {
      // The whole-sequence case (prefill, evaluation): onnxruntime's GroupQueryAttention (head size a
      // multiple of 8), 1.5× less cpu time than the graph below for small heads, on par for large ones.
      // (Not on webgpu: its GroupQueryAttention disagrees with the reference there.)
      const views = [
        this.alias(q, [B, T, H * D]),
        this.alias(k, [B, S, Hkv * D]),
        this.alias(v, [B, S, Hkv * D]),
      ];
      try {
        const [q3, k3, v3] = views as [Tensor, Tensor, Tensor];
        return await this.runOne(
          `attention:gqa:${H}:${Hkv}:${options.scale}`,
          () => G.gqa(H, Hkv, options.scale),
          {
            q: q3,
            k: k3,
            v: v3,
            seqlens: new this.ort.Tensor('int32', new Int32Array(B).fill(S - 1), [B]),
            total: new this.ort.Tensor('int32', Int32Array.of(S), []),
          },
          'f32',
          shape,
        );
      } finally {
        for (const t of views) this.dispose(t);
      }
    }
    const inputs: Record<string, Tensor | OrtTensor> = {
      q,
      k,
      v,
      scale: this.f32Scalar(options.scale),
      qshape: this.int64([B, T, Hkv, G_, D]),
      oshape: this.int64(shape),
    };
    if (options.causal) {
      inputs.mask = new this.ort.Tensor('float32', this.causalMask(T, S, offset), [T, S]);
    }
    return this.runOne(
      `attention:${options.causal}`,
      () => G.attention(options.causal, this.device),
      inputs,
      'f32',
      shape,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.fused?.close();
    await this.fusedTraining?.close();
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const p of all) {
      try {
        await (await p).release();
      } catch {
        // a session that failed to build has nothing to release
      }
    }
  }
}

function cudaHelp(device: string): string {
  const dir = packageFolder();
  const where = dir ? `cd ${dir} && ` : 'in node_modules/onnxruntime-node: ';
  return (
    `onnxruntime's ${device === 'tensorrt' ? 'TensorRT' : 'CUDA'} provider binaries are not installed ` +
    `(onnxruntime-node ships them separately and Lineage never downloads them at install); ` +
    `on Linux x64 with CUDA 12 and cuDNN 9, fetch them with: ${where}ONNXRUNTIME_NODE_INSTALL=cuda12 node script/install` +
    `${device === 'tensorrt' ? ' (TensorRT 10 must also be installed)' : ''}`
  );
}

/** Checks that the requested execution provider can run here; throws a one-line reason otherwise. */
async function probeDevice(
  ort: OrtModule,
  device: OnnxruntimeDevice,
  opts: OrtSessionOptions,
): Promise<void> {
  if (device === 'cpu') return;
  const providers = supportedProviders(ort);
  const entry = providers.find((p) => p.name === device);
  if (device === 'cuda' || device === 'tensorrt') {
    if (process.platform !== 'linux' || process.arch !== 'x64' || !entry) {
      throw new LineageError(
        `onnxruntime-node has no ${device} provider on ${process.platform}/${process.arch} (it ships CUDA/TensorRT for Linux x64 only); use --device cpu or webgpu`,
      );
    }
    const bin = nativeBinFolder();
    const lib =
      device === 'cuda' ? 'libonnxruntime_providers_cuda.so' : 'libonnxruntime_providers_tensorrt.so';
    if (!entry.bundled && (!bin || !existsSync(join(bin, lib)))) throw new LineageError(cudaHelp(device));
  } else if (!entry) {
    throw new LineageError(
      `this onnxruntime-node build has no WebGPU provider on ${process.platform}/${process.arch} (it has: ${providers.map((p) => p.name).join(', ')})`,
    );
  }
  // A trivial session on the provider: finds a missing adapter or broken GPU libraries now, not mid-run.
  try {
    const s = await ort.InferenceSession.create(G.identity('f32'), opts);
    await s.run({ x: new ort.Tensor('float32', Float32Array.of(1), [1]) });
    await s.release();
  } catch (e) {
    const msg = String((e as Error).message ?? e);
    const reason = (
      /Failed to get a WebGPU adapter[^\n]*/.exec(msg)?.[0] ??
      msg.split('\n')[0] ??
      msg
    ).trim();
    if (device === 'webgpu') {
      throw new LineageError(
        `onnxruntime's WebGPU provider cannot run here (${reason}); it needs a GPU driver (Vulkan on Linux: on a machine without a GPU, install Mesa lavapipe with scripts/setup-vulkan.sh or apt-get install mesa-vulkan-drivers)`,
        undefined,
        { cause: e },
      );
    }
    throw new LineageError(
      `onnxruntime's ${device} provider failed to start (${reason}); ${cudaHelp(device)}`,
      undefined,
      {
        cause: e,
      },
    );
  }
}

/** BackendFactory for 'onnxruntime'. */
export async function createOnnxruntimeBackend(
  opts: OnnxruntimeBackendOptions | BackendOptions = {},
): Promise<Backend> {
  const options = opts as OnnxruntimeBackendOptions;
  const device = (options.device ?? 'cpu') as OnnxruntimeDevice;
  if (!['cpu', 'webgpu', 'cuda', 'tensorrt'].includes(device)) {
    throw new LineageError(
      `the onnxruntime backend runs on cpu, webgpu, cuda or tensorrt (device '${String(device)}' requested)`,
    );
  }
  const threads = options.threads;
  if (
    threads !== undefined &&
    (!Number.isInteger(threads) || threads < 1 || threads > availableParallelism() * 4)
  ) {
    throw new LineageError(`threads must be a positive integer, got ${String(threads)}`);
  }
  const ort = await loadRuntime(options.ort);
  const sessionOptions: OrtSessionOptions = {
    executionProviders: [device],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    logSeverityLevel: 3,
    ...(options.spinning ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } }),
  };
  // onnxruntime's own default (its count of physical cores) is 1 on some VMs whose vCPUs are all real cores
  // (measured on a 2-vCPU EPYC VM: one thread, 140 GFLOP/s on a 2048³ MatMul; two threads, 303), so the
  // cpu provider gets every core the process may use unless the user says otherwise.
  if (device === 'cpu') sessionOptions.intraOpNumThreads = threads ?? availableParallelism();
  await probeDevice(ort, device, sessionOptions);
  return new OnnxruntimeBackend(ort, device, sessionOptions, { smallOpThreshold: options.smallOpThreshold });
}

export { INSTALL_COMMAND };
