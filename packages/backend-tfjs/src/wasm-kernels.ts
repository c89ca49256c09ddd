/**
 * Two kernels for tfjs's wasm engine, registered through tfjs's own kernel registry under Lineage names
 * (tfjs's kernels are left untouched).
 *
 * Why: in tfjs 4.22 the wasm BatchMatMul runs XNNPACK only for an untransposed product with batch 1 on
 * both sides (~20 GFLOP/s); any transpose or batch > 1 takes a naive loop (~1 GFLOP/s). And its Slice
 * reads the whole input out of the heap per call, so taking n slices of a tensor costs n full copies.
 * `LineageBatchMatMul` runs a batched product as one XNNPACK product per batch entry, and `LineageSlice`
 * copies only the box it returns. `LineageRope` applies rotate-half RoPE in one pass (composed from tfjs
 * ops it needs two slices and a concat, which the wasm engine runs as short JS copies). All three work on
 * views of the wasm heap.
 */
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { Tf } from './load-engine.js';

export const BATCH_MATMUL = 'LineageBatchMatMul';
export const SLICE = 'LineageSlice';
export const ROPE = 'LineageRope';

/** The parts of tfjs-backend-wasm's BackendWasm used here (public methods). */
interface WasmBackend {
  makeOutput(shape: number[], dtype: 'float32' | 'int32'): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array;
  disposeData(dataId: object): boolean;
}

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A fresh [1, ...shape] tensor holding `src`'s values from `offset`. */
function copyOut(be: WasmBackend, src: TensorInfo, offset: number, shape: number[]): TensorInfo {
  const out = be.makeOutput(shape, 'float32');
  // Views are taken after the allocation: growing the heap detaches earlier ones.
  be.typedArrayFromHeap(out).set(be.typedArrayFromHeap(src).subarray(offset, offset + size(shape)));
  return out;
}

/**
 * a [nA, M, K] · b [nB, K, N] → [n, M, N] with nA, nB ∈ {1, n}: one XNNPACK product per batch entry
 * (tfjs's BatchMatMul kernel with batch 1, its fast path).
 */
function batchMatMul(tf: Tf): KernelFunc {
  return ({ inputs, backend }) => {
    const be = backend as unknown as WasmBackend;
    const a = inputs.a as TensorInfo;
    const b = inputs.b as TensorInfo;
    const [nA, M, K] = a.shape as [number, number, number];
    const [nB, , N] = b.shape as [number, number, number];
    const n = Math.max(nA, nB);
    const mm = tf.getKernel('BatchMatMul', 'wasm');
    if (!mm) throw new Error('the wasm engine has no BatchMatMul kernel');
    const out = be.makeOutput([n, M, N], 'float32');
    const attrs = { transposeA: false, transposeB: false };
    for (let i = 0; i < n; i++) {
      const ai = nA === 1 ? a : copyOut(be, a, i * M * K, [1, M, K]);
      const bi = nB === 1 ? b : copyOut(be, b, i * K * N, [1, K, N]);
      const ci = mm.kernelFunc({ inputs: { a: ai, b: bi }, backend, attrs }) as TensorInfo;
      be.typedArrayFromHeap(out).set(be.typedArrayFromHeap(ci), i * M * N);
      be.disposeData(ci.dataId);
      if (ai !== a) be.disposeData(ai.dataId);
      if (bi !== b) be.disposeData(bi.dataId);
    }
    return out;
  };
}

/** x[begin : begin + size] (begin ≥ 0, explicit sizes), copying only the result's elements. */
const slice: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WasmBackend;
  const x = inputs.x as TensorInfo;
  const begin = (attrs as { begin: number[] }).begin;
  const sz = (attrs as { size: number[] }).size;
  const out = be.makeOutput(sz, x.dtype as 'float32' | 'int32');
  const total = size(sz);
  if (total === 0) return out;
  const src = be.typedArrayFromHeap(x);
  const dst = be.typedArrayFromHeap(out);
  const r = x.shape.length;
  const st = new Array<number>(r);
  for (let i = r - 1, acc = 1; i >= 0; i--) {
    st[i] = acc;
    acc *= x.shape[i]!;
  }
  // Merge the trailing axes the slice covers fully into one contiguous run.
  let inner = r - 1;
  let run = sz[r - 1] ?? 1;
  while (inner > 0 && sz[inner] === x.shape[inner]) {
    inner--;
    run *= sz[inner]!;
  }
  let base = 0;
  for (let i = 0; i < r; i++) base += begin[i]! * st[i]!;
  if (r === 0 || inner === 0) {
    dst.set(src.subarray(base, base + total));
    return out;
  }
  // Odometer over the axes before `inner`; short runs are copied element by element (a subarray per
  // run costs more than the copy).
  const idx = new Array<number>(inner).fill(0);
  for (let o = 0; o < total; o += run) {
    let off = base;
    for (let d = 0; d < inner; d++) off += idx[d]! * st[d]!;
    if (run < 32) for (let j = 0; j < run; j++) dst[o + j] = src[off + j]!;
    else dst.set(src.subarray(off, off + run), o);
    for (let d = inner - 1; d >= 0; d--) {
      if (++idx[d]! < sz[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
};

/** x [n, T, H, D], cos and sin [T, D/2] → rotate-half RoPE (the contract's `rope`). */
const rope: KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as WasmBackend;
  const x = inputs.x as TensorInfo;
  const [n, T, H, D] = x.shape as [number, number, number, number];
  const h = D / 2;
  const out = be.makeOutput([n, T, H, D], 'float32');
  const X = be.typedArrayFromHeap(x);
  const C = be.typedArrayFromHeap(inputs.cos as TensorInfo);
  const S = be.typedArrayFromHeap(inputs.sin as TensorInfo);
  const Y = be.typedArrayFromHeap(out);
  for (let b = 0, p = 0; b < n; b++) {
    for (let t = 0; t < T; t++) {
      const ct = t * h;
      for (let hd = 0; hd < H; hd++, p += D) {
        for (let j = 0; j < h; j++) {
          const c = C[ct + j]!;
          const s = S[ct + j]!;
          const x1 = X[p + j]!;
          const x2 = X[p + j + h]!;
          Y[p + j] = x1 * c - x2 * s;
          Y[p + j + h] = x2 * c + x1 * s;
        }
      }
    }
  }
  return out;
};

/** Registers the kernels for the wasm engine once per tfjs-core. */
export function registerWasmKernels(tf: Tf): void {
  const configs: KernelConfig[] = [
    { kernelName: BATCH_MATMUL, backendName: 'wasm', kernelFunc: batchMatMul(tf) },
    { kernelName: SLICE, backendName: 'wasm', kernelFunc: slice },
    { kernelName: ROPE, backendName: 'wasm', kernelFunc: rope },
  ];
  for (const c of configs) if (!tf.getKernel(c.kernelName, c.backendName)) tf.registerKernel(c);
}
