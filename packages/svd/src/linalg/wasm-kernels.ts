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

/** Rows of the GEMM register tile. */
export const MR = 4;
/** Columns of the GEMM register tile. */
export const NR = 4;

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
const section = (id: number, bytes: number[]): number[] => [id, ...uleb(bytes.length), ...bytes];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];

// Instructions.
const get = (i: number): number[] => [0x20, ...uleb(i)];
const set = (i: number): number[] => [0x21, ...uleb(i)];
const i32 = (v: number): number[] => [0x41, ...sleb(v)];
const ADD = 0x6a;
const MUL = 0x6c;
const LT_S = 0x48;
const GT_S = 0x4a;
const EQZ = 0x45;
const END = 0x0b;
const BR = 0x0c;
const BR_IF = 0x0d;
const CALL = 0x10;
const F64_ADD = 0xa0;
const F64_MUL = 0xa2;
const f64Load = (off = 0): number[] => [0x2b, 3, ...uleb(off)];
const f64Store = (off = 0): number[] => [0x39, 3, ...uleb(off)];
const simd = (op: number, ...imm: number[]): number[] => [0xfd, ...uleb(op), ...imm];
// memarg: alignment hint 2³ (8-byte; unaligned access is allowed) and offset.
const vLoad = (off = 0): number[] => simd(0x00, 3, ...uleb(off));
const vStore = (off = 0): number[] => simd(0x0b, 3, ...uleb(off));
const vSplatLoad = (off = 0): number[] => simd(0x0a, 3, ...uleb(off));
const V_ADD = simd(0xf0);
const V_MUL = simd(0xf2);
const lane = (l: number): number[] => simd(0x21, l);

/** `while (cond) { body }` as block/loop: cond leaves an i32 on the stack. */
function whileLoop(cond: number[], body: number[]): number[] {
  return [0x02, 0x40, 0x03, 0x40, ...cond, EQZ, BR_IF, 1, ...body, BR, 0, END, END];
}
/** local[i] += delta */
const inc = (i: number, delta: number | number[]): number[] =>
  typeof delta === 'number'
    ? [...get(i), ...i32(delta), ADD, ...set(i)]
    : [...get(i), ...delta, ADD, ...set(i)];

function funcBody(locals: [number, number][], code: number[]): number[] {
  const body = [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...code, END];
  return [...uleb(body.length), ...body];
}

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
  const inner = whileLoop(
    [...get(I), ...get(MCP), LT_S],
    [
      ...get(KC),
      ...get(PAI),
      ...get(PB),
      ...get(PCI),
      ...get(LDC),
      ...(accumulate ? [...get(7), CALL, 1] : [CALL, 0]),
      ...inc(PAI, [...get(KC), ...i32(8 * MR), MUL]),
      ...inc(PCI, [...get(LDC), ...i32(MR), MUL]),
      ...inc(I, MR),
    ],
  );
  const outer = whileLoop(
    [...get(J), ...get(NCP), LT_S],
    [
      ...i32(0),
      ...set(I),
      ...get(PA),
      ...set(PAI),
      ...get(PC),
      ...set(PCI),
      ...inner,
      ...inc(PB, [...get(KC), ...i32(8 * NR), MUL]),
      ...inc(PC, 8 * NR),
      ...inc(J, NR),
    ],
  );
  return funcBody([[4, I32]], outer);
}

/** gemvT(pa, lda, rows, cols, pu, py): y[c] += Σ_r u[r]·A[r, c]. */
function gemvTKernel(): number[] {
  const [PA, LDA, ROWS, COLS, PU, PY] = [0, 1, 2, 3, 4, 5];
  const [R, C, A0, A1, A2, A3, PYC] = [6, 7, 8, 9, 10, 11, 12];
  const [U0, U1, U2, U3, Y] = [13, 14, 15, 16, 17];
  const A = [A0, A1, A2, A3];
  const U = [U0, U1, U2, U3];
  const code: number[] = [...i32(0), ...set(R)];
  // Four rows at a time.
  const four: number[] = [
    ...get(PA),
    ...get(R),
    ...get(LDA),
    MUL,
    ADD,
    ...set(A0),
    ...get(A0),
    ...get(LDA),
    ADD,
    ...set(A1),
    ...get(A1),
    ...get(LDA),
    ADD,
    ...set(A2),
    ...get(A2),
    ...get(LDA),
    ADD,
    ...set(A3),
  ];
  for (let i = 0; i < 4; i++)
    four.push(...get(PU), ...get(R), ...i32(8), MUL, ADD, ...vSplatLoad(8 * i), ...set(U[i]!));
  four.push(...i32(0), ...set(C), ...get(PY), ...set(PYC));
  const step: number[] = [...get(PYC), ...vLoad()];
  for (let i = 0; i < 4; i++) step.push(...get(U[i]!), ...get(A[i]!), ...vLoad(), ...V_MUL, ...V_ADD);
  step.push(...set(Y), ...get(PYC), ...get(Y), ...vStore());
  for (let i = 0; i < 4; i++) step.push(...inc(A[i]!, 16));
  step.push(...inc(PYC, 16), ...inc(C, 2));
  four.push(...whileLoop([...get(C), ...i32(2), ADD, ...get(COLS), 0x4c /* le_s */], step));
  // Odd last column.
  const tail: number[] = [...get(PYC), ...get(PYC), ...f64Load()];
  for (let i = 0; i < 4; i++)
    tail.push(...get(U[i]!), ...lane(0), ...get(A[i]!), ...f64Load(), F64_MUL, F64_ADD);
  tail.push(...f64Store());
  four.push(...get(C), ...get(COLS), LT_S, 0x04, 0x40, ...tail, END);
  four.push(...inc(R, 4));
  code.push(...whileLoop([...get(R), ...i32(4), ADD, ...get(ROWS), 0x4c], four));
  // Remaining rows one at a time.
  const one: number[] = [...get(PA), ...get(R), ...get(LDA), MUL, ADD, ...set(A0)];
  one.push(...get(PU), ...get(R), ...i32(8), MUL, ADD, ...vSplatLoad(), ...set(U0));
  one.push(...i32(0), ...set(C), ...get(PY), ...set(PYC));
  one.push(
    ...whileLoop(
      [...get(C), ...i32(2), ADD, ...get(COLS), 0x4c],
      [
        ...get(PYC),
        ...get(PYC),
        ...vLoad(),
        ...get(U0),
        ...get(A0),
        ...vLoad(),
        ...V_MUL,
        ...V_ADD,
        ...vStore(),
        ...inc(A0, 16),
        ...inc(PYC, 16),
        ...inc(C, 2),
      ],
    ),
  );
  one.push(
    ...get(C),
    ...get(COLS),
    LT_S,
    0x04,
    0x40,
    ...get(PYC),
    ...get(PYC),
    ...f64Load(),
    ...get(U0),
    ...lane(0),
    ...get(A0),
    ...f64Load(),
    F64_MUL,
    F64_ADD,
    ...f64Store(),
    END,
  );
  one.push(...inc(R, 1));
  code.push(...whileLoop([...get(R), ...get(ROWS), LT_S], one));
  return funcBody(
    [
      [7, I32],
      [5, V128],
    ],
    code,
  );
}

/** ger(pa, lda, rows, cols, px, py): A[r, c] += x[r]·y[c] (rank-one update, row by row). */
function gerKernel(): number[] {
  const [PA, LDA, ROWS, COLS, PX, PY] = [0, 1, 2, 3, 4, 5];
  const [R, C, A0, PYC] = [6, 7, 8, 9];
  const [X] = [10];
  const row: number[] = [...get(PA), ...get(R), ...get(LDA), MUL, ADD, ...set(A0)];
  row.push(...get(PX), ...get(R), ...i32(8), MUL, ADD, ...vSplatLoad(), ...set(X));
  row.push(...i32(0), ...set(C), ...get(PY), ...set(PYC));
  row.push(
    ...whileLoop(
      [...get(C), ...i32(2), ADD, ...get(COLS), 0x4c],
      [
        ...get(A0),
        ...get(A0),
        ...vLoad(),
        ...get(X),
        ...get(PYC),
        ...vLoad(),
        ...V_MUL,
        ...V_ADD,
        ...vStore(),
        ...inc(A0, 16),
        ...inc(PYC, 16),
        ...inc(C, 2),
      ],
    ),
  );
  row.push(
    ...get(C),
    ...get(COLS),
    LT_S,
    0x04,
    0x40,
    ...get(A0),
    ...get(A0),
    ...f64Load(),
    ...get(X),
    ...lane(0),
    ...get(PYC),
    ...f64Load(),
    F64_MUL,
    F64_ADD,
    ...f64Store(),
    END,
  );
  row.push(...inc(R, 1));
  const code = [...i32(0), ...set(R), ...whileLoop([...get(R), ...get(ROWS), LT_S], row)];
  return funcBody(
    [
      [4, I32],
      [1, V128],
    ],
    code,
  );
}

/** gemvN(pa, lda, rows, cols, pv, px): x[r] = Σ_c A[r, c]·v[c]. */
function gemvNKernel(): number[] {
  const [PA, LDA, ROWS, COLS, PV, PX] = [0, 1, 2, 3, 4, 5];
  const [R, C, A0, A1, A2, A3, PVC] = [6, 7, 8, 9, 10, 11, 12];
  const [S0, S1, S2, S3, V] = [13, 14, 15, 16, 17];
  const [T0, T1, T2, T3] = [18, 19, 20, 21]; // f64 sums
  const A = [A0, A1, A2, A3];
  const S = [S0, S1, S2, S3];
  const T = [T0, T1, T2, T3];
  const zeroV = simd(0x0c, ...new Array<number>(16).fill(0)); // v128.const 0
  const code: number[] = [...i32(0), ...set(R)];
  const four: number[] = [
    ...get(PA),
    ...get(R),
    ...get(LDA),
    MUL,
    ADD,
    ...set(A0),
    ...get(A0),
    ...get(LDA),
    ADD,
    ...set(A1),
    ...get(A1),
    ...get(LDA),
    ADD,
    ...set(A2),
    ...get(A2),
    ...get(LDA),
    ADD,
    ...set(A3),
  ];
  for (let i = 0; i < 4; i++) four.push(...zeroV, ...set(S[i]!));
  four.push(...i32(0), ...set(C), ...get(PV), ...set(PVC));
  const step: number[] = [...get(PVC), ...vLoad(), ...set(V)];
  for (let i = 0; i < 4; i++)
    step.push(...get(S[i]!), ...get(A[i]!), ...vLoad(), ...get(V), ...V_MUL, ...V_ADD, ...set(S[i]!));
  for (let i = 0; i < 4; i++) step.push(...inc(A[i]!, 16));
  step.push(...inc(PVC, 16), ...inc(C, 2));
  four.push(...whileLoop([...get(C), ...i32(2), ADD, ...get(COLS), 0x4c], step));
  for (let i = 0; i < 4; i++)
    four.push(...get(S[i]!), ...lane(0), ...get(S[i]!), ...lane(1), F64_ADD, ...set(T[i]!));
  const tail: number[] = [];
  for (let i = 0; i < 4; i++) {
    tail.push(
      ...get(T[i]!),
      ...get(A[i]!),
      ...f64Load(),
      ...get(PVC),
      ...f64Load(),
      F64_MUL,
      F64_ADD,
      ...set(T[i]!),
    );
  }
  four.push(...get(C), ...get(COLS), LT_S, 0x04, 0x40, ...tail, END);
  for (let i = 0; i < 4; i++) {
    four.push(...get(PX), ...get(R), ...i32(8), MUL, ADD, ...get(T[i]!), ...f64Store(8 * i));
  }
  four.push(...inc(R, 4));
  code.push(...whileLoop([...get(R), ...i32(4), ADD, ...get(ROWS), 0x4c], four));
  const one: number[] = [...get(PA), ...get(R), ...get(LDA), MUL, ADD, ...set(A0), ...zeroV, ...set(S0)];
  one.push(...i32(0), ...set(C), ...get(PV), ...set(PVC));
  one.push(
    ...whileLoop(
      [...get(C), ...i32(2), ADD, ...get(COLS), 0x4c],
      [
        ...get(S0),
        ...get(A0),
        ...vLoad(),
        ...get(PVC),
        ...vLoad(),
        ...V_MUL,
        ...V_ADD,
        ...set(S0),
        ...inc(A0, 16),
        ...inc(PVC, 16),
        ...inc(C, 2),
      ],
    ),
  );
  one.push(...get(S0), ...lane(0), ...get(S0), ...lane(1), F64_ADD, ...set(T0));
  one.push(
    ...get(C),
    ...get(COLS),
    LT_S,
    0x04,
    0x40,
    ...get(T0),
    ...get(A0),
    ...f64Load(),
    ...get(PVC),
    ...f64Load(),
    F64_MUL,
    F64_ADD,
    ...set(T0),
    END,
  );
  one.push(...get(PX), ...get(R), ...i32(8), MUL, ADD, ...get(T0), ...f64Store(), ...inc(R, 1));
  code.push(...whileLoop([...get(R), ...get(ROWS), LT_S], one));
  return funcBody(
    [
      [7, I32],
      [5, V128],
      [4, F64],
    ],
    code,
  );
}

function moduleBytes(shared: boolean): Uint8Array {
  const sig = (ints: number, alpha = false): number[] => [
    0x60,
    ...vec([...new Array<number[]>(ints).fill([I32]), ...(alpha ? [[F64]] : [])]),
    0,
  ];
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([sig(5), sig(7), sig(6), sig(5, true), sig(7, true)])),
    // Memory import: shared (limits flag 3, up to 4 GiB) so worker threads can run kernels on it too.
    ...section(
      2,
      vec([
        [
          ...name('env'),
          ...name('mem'),
          0x02,
          ...(shared ? [0x03, ...uleb(1), ...uleb(65536)] : [0x00, ...uleb(1)]),
        ],
      ]),
    ),
    // 0 micro, 1 microAcc, 2 macro, 3 macroAcc, 4 gemvT, 5 gemvN, 6 ger
    ...section(3, vec([[0], [3], [1], [4], [2], [2], [2]])),
    ...section(
      7,
      vec([
        [...name('macro'), 0x00, 2],
        [...name('macroAcc'), 0x00, 3],
        [...name('gemvT'), 0x00, 4],
        [...name('gemvN'), 0x00, 5],
        [...name('ger'), 0x00, 6],
      ]),
    ),
    ...section(
      10,
      vec([
        microKernel(false),
        microKernel(true),
        macroKernel(false),
        macroKernel(true),
        gemvTKernel(),
        gemvNKernel(),
        gerKernel(),
      ]),
    ),
  ];
  return Uint8Array.from(bytes);
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

/** The slice of the WebAssembly JS API used here (the repository's TypeScript libs do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (descriptor: {
    initial: number;
    maximum?: number;
    shared?: boolean;
  }) => { buffer: ArrayBufferLike };
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
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (!api) return undefined;
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
    return undefined;
  }
}

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
