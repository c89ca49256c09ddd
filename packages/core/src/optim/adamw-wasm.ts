/**
 * AdamW's update (adamw-update.ts) as a wasm SIMD kernel: the JS loop is compute-bound (scalar f64 sqrt
 * and two divisions per element, bounds-checked loads), and f64x2 lanes do two elements per instruction.
 * Bit for bit the JS loop: the same IEEE operations in the same order, no fused multiply-add, and
 * Math.fround as f32x4.demote_f64x2_zero then f64x2.promote_low_f32x4 (both round to nearest even).
 *
 * The optimiser's arrays stay plain Float32Arrays, so the kernel works on chunks copied into its memory
 * (small enough to stay in L2) and copied back.
 */
import {
  assembleModule,
  F64,
  forSteps,
  funcBody,
  funcType,
  get,
  I32,
  i32,
  inc,
  set,
  shuffle,
  simd,
  tee,
  times,
  uleb,
  V_ADD,
  V_DEMOTE,
  V_DIV,
  V_MUL,
  V_PROMOTE_LOW,
  V_SPLAT_F64,
  V_SQRT,
  V_SUB,
  V128,
  vStore,
  wasmApi,
  wasmSimdSupported,
} from '../util/wasm-assembler.js';

/** Elements per chunk: four f32 arrays of it (w, g, m, v: 256 KiB) fit in L2. */
export const ADAMW_CHUNK = 16384;

/** v128.load64_zero: two f32 into lanes 0–1. */
const load2 = (off: number): number[] => simd(0x5d, 3, ...uleb(off));
/** Lanes 0–1 of two demoted vectors side by side: the four f32 of a store. */
const JOIN = shuffle([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);

/**
 * adamw(pw, pg, pm, pv, n, b1, c1, b2, c2, shrink, step, sbc2, eps, scale): n (a multiple of 4) elements
 * at byte offsets pw (w0 in, w out), pg, pm, pv; c1 = 1 − b1, c2 = 1 − b2 as the JS loop computes them.
 */
function adamwKernel(): number[] {
  const [PW, PG, PM, PV, N] = [0, 1, 2, 3, 4];
  const scalars = 9; // params 5–13: b1, c1, b2, c2, shrink, step, sbc2, eps, scale
  const S = 14; // their splats, in the same order
  const [B1, C1, B2, C2, SHRINK, STEP, SBC2, EPS, SCALE] = [
    S,
    S + 1,
    S + 2,
    S + 3,
    S + 4,
    S + 5,
    S + 6,
    S + 7,
    S + 8,
  ];
  const I = S + scalars;
  const T = I + 1; // GI, MI, VI, then per half h the demoted m, v, w
  const [GI, MI, VI] = [T, T + 1, T + 2];
  const md = (h: number) => T + 3 + h;
  const vd = (h: number) => T + 5 + h;
  const wd = (h: number) => T + 7 + h;

  // Expression trees over f64x2 values, written as the JS loop's expressions are.
  const op = (code: number[], ...args: number[][]): number[] => [...args.flat(), ...code];
  const [add, sub, mul, div] = [V_ADD, V_SUB, V_MUL, V_DIV].map(
    (c) => (a: number[], b: number[]) => op(c, a, b),
  ) as [Bin, Bin, Bin, Bin];
  const sqrt = (a: number[]) => op(V_SQRT, a);
  const f32 = (a: number[]) => op(V_DEMOTE, a); // lanes 0–1 rounded to f32, as a Float32Array store does
  const f64 = (a: number[]) => op(V_PROMOTE_LOW, a);
  const x = get;

  // One half (two elements at byte offset 8h from each pointer) of a step: m, v, w left demoted in md, vd, wd.
  const half = (h: number): number[] => {
    const load = (p: number) => f64([...get(p), ...load2(8 * h)]);
    return [
      ...f64(f32(mul(load(PG), x(SCALE)))), // gi = fround(g·scale)
      ...set(GI),
      ...f32(add(mul(x(B1), load(PM)), mul(x(C1), x(GI)))), // fround(b1·m + (1 − b1)·gi)
      ...tee(md(h)), // kept demoted for the store, widened again for w
      ...V_PROMOTE_LOW,
      ...set(MI),
      ...f32(add(mul(x(B2), load(PV)), mul(mul(x(C2), x(GI)), x(GI)))), // fround(b2·v + ((1 − b2)·gi)·gi)
      ...tee(vd(h)),
      ...V_PROMOTE_LOW,
      ...set(VI),
      // w0·shrink − (step·mi) / (√vi / sbc2 + eps)
      ...f32(sub(mul(load(PW), x(SHRINK)), div(mul(x(STEP), x(MI)), add(div(sqrt(x(VI)), x(SBC2)), x(EPS))))),
      ...set(wd(h)),
    ];
  };
  const store = (p: number, d: (h: number) => number) => [
    ...get(p),
    ...get(d(0)),
    ...get(d(1)),
    ...JOIN,
    ...vStore(),
  ];
  const body = [
    ...half(0),
    ...half(1),
    ...store(PM, md),
    ...store(PV, vd),
    ...store(PW, wd),
    ...[PW, PG, PM, PV].flatMap((p) => inc(p, 16)),
  ];
  const code = [
    ...times(scalars, (i) => [...get(5 + i), ...V_SPLAT_F64, ...set(S + i)]),
    ...i32(0),
    ...set(I),
    ...forSteps(I, N, 4, body),
  ];
  return funcBody(
    [
      [scalars, V128],
      [1, I32],
      [9, V128],
    ],
    code,
  );
}

type Bin = (a: number[], b: number[]) => number[];

export type Update = (
  w0: Float32Array,
  w: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  b1: number,
  b2: number,
  shrink: number,
  stepSize: number,
  sbc2: number,
  eps: number,
  scale: number,
) => void;

type Kernel = (
  pw: number,
  pg: number,
  pm: number,
  pv: number,
  n: number,
  b1: number,
  c1: number,
  b2: number,
  c2: number,
  shrink: number,
  step: number,
  sbc2: number,
  eps: number,
  scale: number,
) => void;

let cached: Update | null | undefined;

/** The wasm update (one instance per process, built on first use), or null without wasm SIMD. */
export function adamwWasmKernel(): Update | null {
  if (cached === undefined) cached = build();
  return cached;
}

function build(): Update | null {
  const k = instantiateAdamw(ADAMW_CHUNK);
  return k ? chunked(k.kernel, k.heap, ADAMW_CHUNK) : null;
}

/** The kernel over a fresh memory of four arrays of `chunk` (a multiple of 4) elements; undefined without wasm SIMD. */
function instantiateAdamw(chunk: number): { kernel: Kernel; heap: Float32Array } | undefined {
  const api = wasmApi();
  if (!api || !wasmSimdSupported()) return undefined;
  const pages = Math.ceil((4 * chunk * 4) / 65536);
  try {
    const bytes = assembleModule({
      types: [funcType([...new Array<number>(5).fill(I32), ...new Array<number>(9).fill(F64)])],
      memory: { shared: false, minPages: pages },
      funcs: [{ type: 0, body: adamwKernel() }],
      exports: { adamw: 0 },
    });
    const memory = new api.Memory({ initial: pages, maximum: pages });
    const kernel = new api.Instance(new api.Module(bytes), { env: { mem: memory } }).exports[
      'adamw'
    ] as Kernel;
    return { kernel, heap: new Float32Array(memory.buffer) };
  } catch {
    return undefined; // no wasm memory to be had (an address-space limit): the JS loop
  }
}

/** The update over whole arrays, a chunk at a time through the kernel's memory. */
function chunked(kernel: Kernel, heap: Float32Array, C: number): Update {
  const [W, G, M, V] = [0, C, 2 * C, 3 * C];
  return (w0, w, g, m, v, b1, b2, shrink, stepSize, sbc2, eps, scale) => {
    const n = g.length;
    for (let s = 0; s < n; s += C) {
      const k = Math.min(C, n - s);
      heap.set(w0.subarray(s, s + k), W);
      heap.set(g.subarray(s, s + k), G);
      heap.set(m.subarray(s, s + k), M);
      heap.set(v.subarray(s, s + k), V);
      // A ragged last chunk runs up to the next multiple of 4: the lanes past k hold stale values, whose
      // results are never copied out (float operations do not trap in wasm).
      const k4 = (k + 3) & ~3;
      kernel(W * 4, G * 4, M * 4, V * 4, k4, b1, 1 - b1, b2, 1 - b2, shrink, stepSize, sbc2, eps, scale);
      m.set(heap.subarray(M, M + k), s);
      v.set(heap.subarray(V, V + k), s);
      w.set(heap.subarray(W, W + k), s);
    }
  };
}
