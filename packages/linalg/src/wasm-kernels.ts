/**
 * WebAssembly SIMD (f64x2) kernels for the float64 engine, assembled here byte by byte (no build step and
 * no binary blob in the repository). V8 bounds-checks every typed-array load in JS, which caps a JS 4×4
 * register tile at ~3.5 GFLOP/s and a JS matrix–vector product at ~0.8 GFLOP/s on the 2-vCPU EPYC VM
 * used for development; the same loops in wasm SIMD measured ~13 GFLOP/s (GEMM) and 3–4× (GEMV).
 *
 * - `macro(mcp, ncp, kc, pa, pb, pc, ldc)`: C[i, j] = Σₖ Ap[i, k]·Bp[k, j] over a packed mcp×ncp block
 *   (GotoBLAS layout: MR-row panels of A, NR-column panels of B), C row-major with ldc bytes per row.
 * - `gemvT(pa, lda, rows, cols, pu, py)`: y[c] += Σ_r u[r]·A[r, c] (four rows per pass over y).
 * - `gemvN(pa, lda, rows, cols, pv, px)`: x[r] = Σ_c A[r, c]·v[c] (four rows per pass over v).
 * - `ger(pa, lda, rows, cols, px, py)`: A[r, c] += x[r]·y[c].
 * Pointers are byte offsets into the instance's memory; lda/ldc are in bytes.
 */
// The assembler lives in core; core is a dev dependency only, so tsup bundles this one small module into
// linalg's dist and the engine keeps no runtime dependency (README, Errors).
import {
  ADD,
  assembleModule,
  CALL,
  F64,
  F64_ADD,
  F64_MUL,
  f64Load,
  f64Store,
  forLt,
  forSteps,
  funcBody,
  funcType,
  GT_S,
  get,
  I32,
  i32,
  ifLt,
  inc,
  lane,
  MUL,
  set,
  simd,
  times,
  V_ADD,
  V_MUL,
  V_ZERO,
  V128,
  vLoad,
  vSplatLoad,
  vStore,
  type WasmApi,
  wasmApi,
  whileLoop,
} from '@lineage/core/wasm-assembler';

/** Rows of the GEMM register tile. */
export const MR = 4;
/** Columns of the GEMM register tile. */
export const NR = 4;

/**
 * micro(kc, pa, pb, pc, ldc): the MR×NR tile at pc ← Ap panel · Bp panel; with `accumulate`,
 * microAcc(kc, pa, pb, pc, ldc, α): tile += α·Ap·Bp.
 */
function microKernel(accumulate: boolean): number[] {
  const [KC, PA, PB, PC, LDC] = [0, 1, 2, 3, 4];
  const first = accumulate ? 6 : 5; // first non-parameter local (α is local 5)
  const NH = NR / 2;
  const acc = (i: number, h: number) => first + i * NH + h;
  const B0 = first + MR * NH;
  const X = B0 + NH;
  const body: number[] = [];
  for (let h = 0; h < NH; h++) body.push(...get(PB), ...vLoad(16 * h), ...set(B0 + h));
  for (let i = 0; i < MR; i++) {
    body.push(...get(PA), ...vSplatLoad(8 * i), ...set(X));
    for (let h = 0; h < NH; h++) {
      body.push(...get(X), ...get(B0 + h), ...V_MUL, ...get(acc(i, h)), ...V_ADD, ...set(acc(i, h)));
    }
  }
  body.push(...inc(PA, 8 * MR), ...inc(PB, 8 * NR), ...inc(KC, -1));
  const c = whileLoop([...get(KC), ...i32(0), GT_S], body);
  if (accumulate) c.push(...get(5), ...simd(0x14) /* f64x2.splat */, ...set(X));
  for (let i = 0; i < MR; i++) {
    for (let h = 0; h < NH; h++) {
      if (accumulate) {
        c.push(...get(PC), ...get(PC), ...vLoad(16 * h), ...get(X), ...get(acc(i, h)), ...V_MUL, ...V_ADD);
        c.push(...vStore(16 * h));
      } else c.push(...get(PC), ...get(acc(i, h)), ...vStore(16 * h));
    }
    if (i + 1 < MR) c.push(...inc(PC, get(LDC)));
  }
  return funcBody([[MR * NH + NH + 1, V128]], c);
}

/**
 * macro(mcp, ncp, kc, pa, pb, pc, ldc): the micro-kernel over a packed block; with `accumulate`,
 * macroAcc(…, α) adds α·Ap·Bp into C instead (function `micro` is 0, `microAcc` 1).
 */
function macroKernel(accumulate: boolean): number[] {
  const [MCP, NCP, KC, PA, PB, PC, LDC] = [0, 1, 2, 3, 4, 5, 6];
  const first = accumulate ? 8 : 7;
  const [J, I, PAI, PCI] = [first, first + 1, first + 2, first + 3];
  const inner = forLt(I, MCP, MR, [
    ...[KC, PAI, PB, PCI, LDC].flatMap(get),
    ...(accumulate ? [...get(7), CALL, 1] : [CALL, 0]),
    ...inc(PAI, [...get(KC), ...i32(8 * MR), MUL]),
    ...inc(PCI, [...get(LDC), ...i32(MR), MUL]),
  ]);
  const outer = forLt(J, NCP, NR, [
    ...i32(0),
    ...set(I),
    ...get(PA),
    ...set(PAI),
    ...get(PC),
    ...set(PCI),
    ...inner,
    ...inc(PB, [...get(KC), ...i32(8 * NR), MUL]),
    ...inc(PC, 8 * NR),
  ]);
  return funcBody([[4, I32]], outer);
}

// Pieces of the level-2 kernels (gemvT, ger, gemvN), which share the signature (pa, lda, rows, cols,
// p, q): A's rows are walked by i32 locals holding byte addresses, the columns two at a time in f64x2.

/** The byte address of element `index` (a local) of the f64 vector at `base` (a local). */
function elemAddr(base: number, index: number): number[] {
  return [...get(base), ...get(index), ...i32(8), MUL, ADD];
}

/** rows[0] = pa + r·lda, rows[i] = rows[i − 1] + lda: the addresses of rows r, r + 1, … of A. */
function rowPointers(rows: number[], pa: number, r: number, lda: number): number[] {
  return [
    ...[pa, r, lda].flatMap(get),
    MUL,
    ADD,
    ...set(rows[0]!),
    ...times(rows.length - 1, (i) => [...get(rows[i]!), ...get(lda), ADD, ...set(rows[i + 1]!)]),
  ];
}

/**
 * r = 0, then for each width n in turn, passes of n rows while n rows remain: `pass(n)` is the body of
 * a pass (the widths end with 1 so that every row is covered).
 */
const rowPasses = (r: number, rows: number, widths: number[], pass: (n: number) => number[]): number[] => [
  ...i32(0),
  ...set(r),
  ...widths.flatMap((n) => forSteps(r, rows, n, pass(n))),
];

/**
 * The columns of a row pass two at a time: c = 0, p = base, then while c + 2 ≤ cols: `body`, and every
 * row pointer in `rows` and p step on by two f64 (the odd last column is left to the caller).
 */
const columnPairs = (c: number, cols: number, p: number, base: number, rows: number[], body: number[]) => [
  ...i32(0),
  ...set(c),
  ...get(base),
  ...set(p),
  ...forSteps(c, cols, 2, [...body, ...[...rows, p].flatMap((q) => inc(q, 16))]),
];

/** A term of an update: a v128 local holding a splatted scale, and the i32 local addressing its operand. */
type Term = [scale: number, src: number];

/**
 * Two lanes of `dst += Σ scale·src` over the terms, left to right; with `via`, the sum passes through that
 * v128 local before the store.
 */
function axpy2(dst: number, terms: Term[], via?: number): number[] {
  const sum = [
    ...get(dst),
    ...vLoad(),
    ...terms.flatMap(([s, src]) => [...get(s), ...get(src), ...vLoad(), ...V_MUL, ...V_ADD]),
  ];
  return via === undefined
    ? [...get(dst), ...sum, ...vStore()]
    : [...sum, ...set(via), ...get(dst), ...get(via), ...vStore()];
}

/** The odd last column of an update: `dst += Σ scale·src` in f64 (lane 0 of each scale). */
const axpy1 = (dst: number, terms: Term[]): number[] => [
  ...get(dst),
  ...get(dst),
  ...f64Load(),
  ...terms.flatMap(([s, src]) => [...get(s), ...lane(0), ...get(src), ...f64Load(), F64_MUL, F64_ADD]),
  ...f64Store(),
];

/** gemvT(pa, lda, rows, cols, pu, py): y[c] += Σ_r u[r]·A[r, c], four rows per pass over y. */
function gemvTKernel(): number[] {
  const [PA, LDA, ROWS, COLS, PU, PY] = [0, 1, 2, 3, 4, 5];
  const [R, C, PYC, Y] = [6, 7, 12, 17];
  const A = [8, 9, 10, 11]; // row addresses
  const U = [13, 14, 15, 16]; // u[r + i], splatted
  const pass = (n: number): number[] => {
    const rows = A.slice(0, n);
    const terms = rows.map((a, i): Term => [U[i]!, a]);
    return [
      ...rowPointers(rows, PA, R, LDA),
      ...times(n, (i) => [...elemAddr(PU, R), ...vSplatLoad(8 * i), ...set(U[i]!)]),
      ...columnPairs(C, COLS, PYC, PY, rows, axpy2(PYC, terms, n > 1 ? Y : undefined)),
      ...ifLt(C, COLS, axpy1(PYC, terms)),
    ];
  };
  return funcBody(
    [
      [7, I32],
      [5, V128],
    ],
    rowPasses(R, ROWS, [4, 1], pass),
  );
}

/** ger(pa, lda, rows, cols, px, py): A[r, c] += x[r]·y[c] (rank-one update, row by row). */
function gerKernel(): number[] {
  const [PA, LDA, ROWS, COLS, PX, PY] = [0, 1, 2, 3, 4, 5];
  const [R, C, A0, PYC, X] = [6, 7, 8, 9, 10];
  const terms: Term[] = [[X, PYC]];
  const row = [
    ...rowPointers([A0], PA, R, LDA),
    ...elemAddr(PX, R),
    ...vSplatLoad(),
    ...set(X),
    ...columnPairs(C, COLS, PYC, PY, [A0], axpy2(A0, terms)),
    ...ifLt(C, COLS, axpy1(A0, terms)),
  ];
  return funcBody(
    [
      [4, I32],
      [1, V128],
    ],
    rowPasses(R, ROWS, [1], () => row),
  );
}

/** gemvN(pa, lda, rows, cols, pv, px): x[r] = Σ_c A[r, c]·v[c], four rows per pass over v. */
function gemvNKernel(): number[] {
  const [PA, LDA, ROWS, COLS, PV, PX] = [0, 1, 2, 3, 4, 5];
  const [R, C, PVC, V] = [6, 7, 12, 17];
  const A = [8, 9, 10, 11]; // row addresses
  const S = [13, 14, 15, 16]; // two-lane partial sums
  const T = [18, 19, 20, 21]; // f64 row sums
  const pass = (n: number): number[] => {
    const rows = A.slice(0, n);
    // Several rows load v[c..c+1] once into V; a single row reads it in place.
    const vIn = n > 1 ? get(V) : [...get(PVC), ...vLoad()];
    const step = [
      ...(n > 1 ? [...get(PVC), ...vLoad(), ...set(V)] : []),
      ...times(n, (i) => [
        ...get(S[i]!),
        ...get(A[i]!),
        ...vLoad(),
        ...vIn,
        ...V_MUL,
        ...V_ADD,
        ...set(S[i]!),
      ]),
    ];
    const tail = times(n, (i) => [
      ...get(T[i]!),
      ...get(A[i]!),
      ...f64Load(),
      ...get(PVC),
      ...f64Load(),
      F64_MUL,
      F64_ADD,
      ...set(T[i]!),
    ]);
    return [
      ...rowPointers(rows, PA, R, LDA),
      ...times(n, (i) => [...V_ZERO, ...set(S[i]!)]),
      ...columnPairs(C, COLS, PVC, PV, rows, step),
      ...times(n, (i) => [...get(S[i]!), ...lane(0), ...get(S[i]!), ...lane(1), F64_ADD, ...set(T[i]!)]),
      ...ifLt(C, COLS, tail),
      ...times(n, (i) => [...elemAddr(PX, R), ...get(T[i]!), ...f64Store(8 * i)]),
    ];
  };
  return funcBody(
    [
      [7, I32],
      [5, V128],
      [4, F64],
    ],
    rowPasses(R, ROWS, [4, 1], pass),
  );
}

function moduleBytes(shared: boolean): Uint8Array {
  const sig = (ints: number, alpha = false): number[] =>
    funcType([...new Array<number>(ints).fill(I32), ...(alpha ? [F64] : [])]);
  return assembleModule({
    types: [sig(5), sig(7), sig(6), sig(5, true), sig(7, true)],
    // shared (up to 4 GiB) so worker threads can run kernels on it too
    memory: { shared },
    funcs: [
      { type: 0, body: microKernel(false) },
      { type: 3, body: microKernel(true) },
      { type: 1, body: macroKernel(false) },
      { type: 4, body: macroKernel(true) },
      { type: 2, body: gemvTKernel() },
      { type: 2, body: gemvNKernel() },
      { type: 2, body: gerKernel() },
    ],
    exports: { macro: 2, macroAcc: 3, gemvT: 4, gemvN: 5, ger: 6 },
  });
}

export interface WasmKernels {
  /** View of the instance's whole memory. */
  heap: Float64Array;
  /** The instance's memory (a WebAssembly.Memory; shared when `shared`). */
  memory: object;
  /** The compiled module (for instantiating the same kernels in worker threads). */
  module: object;
  /** Whether the memory is shared (a SharedArrayBuffer underneath), so workers can use it. */
  shared: boolean;
  macro(mcp: number, ncp: number, kc: number, pa: number, pb: number, pc: number, ldcBytes: number): void;
  macroAcc(
    mcp: number,
    ncp: number,
    kc: number,
    pa: number,
    pb: number,
    pc: number,
    ldcBytes: number,
    alpha: number,
  ): void;
  gemvT(pa: number, ldaBytes: number, rows: number, cols: number, pu: number, py: number): void;
  gemvN(pa: number, ldaBytes: number, rows: number, cols: number, pv: number, px: number): void;
  ger(pa: number, ldaBytes: number, rows: number, cols: number, px: number, py: number): void;
}

let compiledShared: object | null | undefined;
let compiledPlain: object | null | undefined;

function compile(api: WasmApi, shared: boolean): object | null {
  try {
    return new api.Module(moduleBytes(shared));
  } catch {
    return null;
  }
}

/**
 * Instantiates the kernels over a fresh memory of at least `bytes` bytes (shared when the platform
 * allows); undefined without wasm SIMD or when the memory cannot be had.
 */
export function createWasmKernels(bytes: number): WasmKernels | undefined {
  const api = wasmApi();
  if (!api || memoryRefused) return undefined;
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  if (pages > 65536) return undefined;
  if (compiledShared === undefined) {
    compiledShared = typeof SharedArrayBuffer === 'function' ? compile(api, true) : null;
  }
  const attempts: [object | null | undefined, boolean][] = [[compiledShared, true]];
  for (const [module, shared] of attempts) {
    if (!module) continue;
    try {
      const memory = new api.Memory({ initial: pages, maximum: pages, shared: true });
      return instantiate(api, module, memory, shared);
    } catch {
      // fall through to a plain memory
    }
  }
  if (compiledPlain === undefined) compiledPlain = compile(api, false);
  if (!compiledPlain) return undefined;
  try {
    return instantiate(api, compiledPlain, new api.Memory({ initial: pages }), false);
  } catch {
    // Under an address-space limit (ulimit -v) every wasm memory is refused whatever its size (V8
    // reserves guard regions of gigabytes), and each refusal costs V8 full garbage collections before it
    // gives up: asked again for every product, that made an svd crawl for minutes. Plain JS from now on.
    if (pages <= 256) memoryRefused = true;
    return undefined;
  }
}

/** A small wasm memory was refused once: the process cannot have any (see createWasmKernels). */
let memoryRefused = false;

function instantiate(
  api: WasmApi,
  module: object,
  memory: { buffer: ArrayBufferLike },
  shared: boolean,
): WasmKernels {
  const ex = new api.Instance(module, { env: { mem: memory } }).exports;
  return {
    heap: new Float64Array(memory.buffer),
    memory,
    module,
    shared,
    macro: ex['macro'] as WasmKernels['macro'],
    macroAcc: ex['macroAcc'] as WasmKernels['macroAcc'],
    gemvT: ex['gemvT'] as WasmKernels['gemvT'],
    gemvN: ex['gemvN'] as WasmKernels['gemvN'],
    ger: ex['ger'] as WasmKernels['ger'],
  };
}
