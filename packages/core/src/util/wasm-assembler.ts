/**
 * A tiny WebAssembly assembler: the byte encodings, instructions and control-flow shapes the repository's
 * hand-written wasm SIMD kernels are built from (linalg's f64 GEMM/GEMV, AdamW's update), byte by byte,
 * so there is no build step and no binary blob in the repository. Each helper returns the bytes of its
 * piece as a number[]; kernels concatenate them.
 */

// Value types.
export const I32 = 0x7f;
export const F64 = 0x7c;
export const V128 = 0x7b;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
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

export const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
export const section = (id: number, bytes: number[]): number[] => [id, ...uleb(bytes.length), ...bytes];
export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];

// Instructions.
export const get = (i: number): number[] => [0x20, ...uleb(i)];
export const set = (i: number): number[] => [0x21, ...uleb(i)];
export const tee = (i: number): number[] => [0x22, ...uleb(i)];
export const i32 = (v: number): number[] => [0x41, ...sleb(v)];
export const ADD = 0x6a;
export const MUL = 0x6c;
export const LT_S = 0x48;
export const GT_S = 0x4a;
export const LE_S = 0x4c;
export const EQZ = 0x45;
export const IF_VOID = [0x04, 0x40];
export const END = 0x0b;
export const BR = 0x0c;
export const BR_IF = 0x0d;
export const CALL = 0x10;
export const F64_ADD = 0xa0;
export const F64_MUL = 0xa2;
export const f64Load = (off = 0): number[] => [0x2b, 3, ...uleb(off)];
export const f64Store = (off = 0): number[] => [0x39, 3, ...uleb(off)];
export const simd = (op: number, ...imm: number[]): number[] => [0xfd, ...uleb(op), ...imm];
// memarg: alignment hint 2³ (8-byte; unaligned access is allowed) and offset.
export const vLoad = (off = 0): number[] => simd(0x00, 3, ...uleb(off));
export const vStore = (off = 0): number[] => simd(0x0b, 3, ...uleb(off));
export const vSplatLoad = (off = 0): number[] => simd(0x0a, 3, ...uleb(off));
export const V_ADD = simd(0xf0);
export const V_SUB = simd(0xf1);
export const V_MUL = simd(0xf2);
export const V_DIV = simd(0xf3);
export const V_SQRT = simd(0xef);
export const V_SPLAT_F64 = simd(0x14);
export const V_ZERO = simd(0x0c, ...new Array<number>(16).fill(0)); // v128.const 0
/** f32x4.demote_f64x2_zero: two f64 lanes rounded to f32 (round to nearest even) in lanes 0–1, zeros above. */
export const V_DEMOTE = simd(0x5e);
/** f64x2.promote_low_f32x4: f32 lanes 0–1 widened to f64 (exact). */
export const V_PROMOTE_LOW = simd(0x5f);
/** i8x16.shuffle with the 16 byte indices `lanes` (0–15 the first operand, 16–31 the second). */
export const shuffle = (lanes: number[]): number[] => simd(0x0d, ...lanes);
/** f64x2.extract_lane */
export const lane = (l: number): number[] => simd(0x21, l);

/** `while (cond) { body }` as block/loop: cond leaves an i32 on the stack. */
export function whileLoop(cond: number[], body: number[]): number[] {
  return [0x02, 0x40, 0x03, 0x40, ...cond, EQZ, BR_IF, 1, ...body, BR, 0, END, END];
}
/** local[i] += delta */
export const inc = (i: number, delta: number | number[]): number[] =>
  typeof delta === 'number'
    ? [...get(i), ...i32(delta), ADD, ...set(i)]
    : [...get(i), ...delta, ADD, ...set(i)];
/** `for (; counter < limit; counter += step) { body }` */
export const forLt = (counter: number, limit: number, step: number, body: number[]): number[] =>
  whileLoop([...get(counter), ...get(limit), LT_S], [...body, ...inc(counter, step)]);
/** Whole steps only: `for (; counter + step <= limit; counter += step) { body }` (step 1: forLt). */
export const forSteps = (counter: number, limit: number, step: number, body: number[]): number[] =>
  step === 1
    ? forLt(counter, limit, 1, body)
    : whileLoop([...get(counter), ...i32(step), ADD, ...get(limit), LE_S], [...body, ...inc(counter, step)]);
/** `if (a < b) { body }` */
export function ifLt(a: number, b: number, body: number[]): number[] {
  return [...get(a), ...get(b), LT_S, ...IF_VOID, ...body, END];
}
/** The code of `f(0), f(1), …, f(n − 1)` one after another. */
export const times = (n: number, f: (i: number) => number[]): number[] =>
  Array.from({ length: n }, (_, i) => f(i)).flat();

/** A function's code entry: its extra locals as [count, type] runs, then the code. */
export function funcBody(locals: [number, number][], code: number[]): number[] {
  const body = [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...code, END];
  return [...uleb(body.length), ...body];
}

/** A function type: parameter types → result types. */
export const funcType = (params: number[], results: number[] = []): number[] => [
  0x60,
  ...vec(params.map((t) => [t])),
  ...vec(results.map((t) => [t])),
];

export interface ModuleParts {
  /** The function types (funcType). */
  types: number[][];
  /** The memory `env.mem` the module imports: shared (up to 4 GiB) or plain, at least `minPages`. */
  memory: { shared: boolean; minPages?: number };
  /** Each function: the index of its type and its code (funcBody). */
  funcs: { type: number; body: number[] }[];
  /** Exported functions by name → function index. */
  exports: Record<string, number>;
}

/** A module's first bytes: the magic `\0asm` and version 1. */
const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/** The bytes of a whole module: types, the memory import, the functions and their exports. */
export function assembleModule(m: ModuleParts): Uint8Array {
  const pages = m.memory.minPages ?? 1;
  // Memory limits: flag 3 = shared with a maximum (required for shared memory), 0 = a minimum only.
  const limits = m.memory.shared ? [0x03, ...uleb(pages), ...uleb(65536)] : [0x00, ...uleb(pages)];
  const bytes = [
    ...HEADER,
    ...section(1, vec(m.types)),
    ...section(2, vec([[...name('env'), ...name('mem'), 0x02, ...limits]])),
    ...section(3, vec(m.funcs.map((f) => uleb(f.type)))),
    ...section(7, vec(Object.entries(m.exports).map(([n, index]) => [...name(n), 0x00, ...uleb(index)]))),
    ...section(10, vec(m.funcs.map((f) => f.body))),
  ];
  return Uint8Array.from(bytes);
}

/** The slice of the WebAssembly JS API the kernels use (the repository's TypeScript libs do not declare it). */
export interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (descriptor: {
    initial: number;
    maximum?: number;
    shared?: boolean;
  }) => { buffer: ArrayBufferLike; grow(pages: number): number };
  validate(bytes: Uint8Array): boolean;
}

/** The platform's WebAssembly API, undefined where there is none. */
export function wasmApi(): WasmApi | undefined {
  return (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
}

let simdOk: boolean | undefined;

/** Whether this platform runs wasm SIMD: validates a one-function module that returns a v128.const. */
export function wasmSimdSupported(): boolean {
  if (simdOk === undefined) {
    const api = wasmApi();
    const bytes = Uint8Array.from([
      ...HEADER,
      ...section(1, vec([funcType([], [V128])])),
      ...section(3, vec([[0]])),
      ...section(10, vec([funcBody([], V_ZERO)])),
    ]);
    try {
      simdOk = api?.validate(bytes) === true;
    } catch {
      simdOk = false;
    }
  }
  return simdOk;
}
