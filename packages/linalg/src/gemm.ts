import { type Matrix64, matrix64 } from './matrix.js';
import { parallelAvailable, releaseMemory, runBlocks } from './parallel.js';
import { createWasmKernels, MR, NR, type WasmKernels } from './wasm-kernels.js';

/**
 * Float64 GEMM, BLAS style: C ← α·op(A)·op(B) + β·C over strided sub-matrices of Float64Arrays
 * (row-major, leading dimensions lda/ldb/ldc). Large products run the GotoBLAS scheme: B packed into
 * KC×NC panels (NR-column micro-panels), A into MC×KC blocks (MR-row micro-panels), and a register-tiled
 * micro-kernel (wasm SIMD when available, else JS) sweeps the packed blocks. When C lives in a kernel
 * memory (a `withWorkspace` array) full tiles accumulate into it in place and the blocks may be shared
 * out to worker threads (parallel.ts); otherwise a C buffer is added into C (or, for products with
 * several passes over K, C is first copied into a temporary workspace). Small products and
 * matrix–vector shapes take direct loops. Also the level-2 kernels of the reductions (`gemvT`, `gemvN`,
 * `ger`), which run in wasm when their arrays live in a `withWorkspace` memory.
 */

/** Rows of op(A) per packed block (the A block, MC×KC f64 = 256 KiB, stays in L2). */
const MC = 128;
/** Depth per packed block. */
const KC = 256;
/** Columns of op(B) per packed panel. */
const NC = 512;
/** Packed A blocks per group: the blocks of a group are shared out between threads. */
const GROUP = 8;
const AP = 0;
const BP = AP + GROUP * MC * KC;
const CB = BP + KC * NC;
/** Elements of packing scratch at the start of every kernel memory. */
const SCRATCH = CB + MC * NC;

export type GemmKernelKind = 'wasm' | 'js';

let base: WasmKernels | undefined | null = null; // null: not tried yet
let current: WasmKernels | undefined;
let jsHeap: Float64Array | undefined;
let forced: GemmKernelKind | undefined;

function active(): WasmKernels | undefined {
  if (forced === 'js') return undefined;
  if (current) return current;
  if (base === null) base = createWasmKernels(SCRATCH * 8);
  return base;
}

/** Which micro-kernel large products use ('wasm' when WebAssembly SIMD compiles here). */
export function gemmKernelKind(): GemmKernelKind {
  return active() ? 'wasm' : 'js';
}

/** Forces the JS kernels (for tests and measurements); `undefined` restores the default. */
export function forceGemmKernel(kind: GemmKernelKind | undefined): void {
  forced = kind;
}

/** Working memory for a reduction: `heap.subarray(offset, offset + elems)` is free to use. */
export interface Workspace {
  heap: Float64Array;
  offset: number;
}

/**
 * Runs `fn` with `elems` float64s of working memory that the wasm kernels can address directly (a fresh
 * wasm memory, released when `fn` returns; a plain array without wasm). Arrays viewed from it make
 * `gemvT`/`gemvN` run in wasm. Not reentrant across asynchronous code: `fn` must be synchronous.
 */
export function withWorkspace<T>(elems: number, fn: (ws: Workspace) => T): T {
  const k = forced === 'js' ? undefined : createWasmKernels((SCRATCH + elems) * 8);
  if (!k) return fn({ heap: new Float64Array(elems), offset: 0 });
  const prev = current;
  current = k;
  try {
    return fn({ heap: k.heap, offset: SCRATCH });
  } finally {
    current = prev;
    if (k.shared) releaseMemory(k.memory);
  }
}

/** The active kernels when A, x and y all live in their memory (so a level-2 kernel can run in wasm). */
function kernelsHolding(A: Float64Array, x: Float64Array, y: Float64Array): WasmKernels | undefined {
  const k = active();
  return k && A.buffer === k.heap.buffer && x.buffer === A.buffer && y.buffer === A.buffer ? k : undefined;
}

/** The byte address of a[off] in a kernel memory. */
const addr = (a: Float64Array, off: number): number => a.byteOffset + off * 8;

/**
 * y[yOff + c] += Σ_r u[uOff + r]·A[aOff + r·lda + c] for r < rows, c < cols (y += Aᵀ·u over a row-major
 * block: one pass over A, four rows per pass over y).
 */
export function gemvT(
  A: Float64Array,
  aOff: number,
  lda: number,
  rows: number,
  cols: number,
  u: Float64Array,
  uOff: number,
  y: Float64Array,
  yOff: number,
): void {
  if (rows <= 0 || cols <= 0) return;
  const k = kernelsHolding(A, u, y);
  if (k) {
    k.gemvT(addr(A, aOff), lda * 8, rows, cols, addr(u, uOff), addr(y, yOff));
    return;
  }
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const u0 = u[uOff + r]!;
    const u1 = u[uOff + r + 1]!;
    const u2 = u[uOff + r + 2]!;
    const u3 = u[uOff + r + 3]!;
    const a0 = aOff + r * lda;
    const a1 = a0 + lda;
    const a2 = a1 + lda;
    const a3 = a2 + lda;
    for (let c = 0; c < cols; c++) {
      y[yOff + c]! += u0 * A[a0 + c]! + u1 * A[a1 + c]! + u2 * A[a2 + c]! + u3 * A[a3 + c]!;
    }
  }
  for (; r < rows; r++) {
    const ur = u[uOff + r]!;
    const a0 = aOff + r * lda;
    for (let c = 0; c < cols; c++) y[yOff + c]! += ur * A[a0 + c]!;
  }
}

/** A[aOff + r·lda + c] += x[xOff + r]·y[yOff + c] for r < rows, c < cols (rank-one update). */
export function ger(
  A: Float64Array,
  aOff: number,
  lda: number,
  rows: number,
  cols: number,
  x: Float64Array,
  xOff: number,
  y: Float64Array,
  yOff: number,
): void {
  if (rows <= 0 || cols <= 0) return;
  const k = kernelsHolding(A, x, y);
  if (k) {
    k.ger(addr(A, aOff), lda * 8, rows, cols, addr(x, xOff), addr(y, yOff));
    return;
  }
  for (let r = 0; r < rows; r++) {
    const xr = x[xOff + r]!;
    if (xr === 0) continue;
    const a0 = aOff + r * lda;
    for (let c = 0; c < cols; c++) A[a0 + c]! += xr * y[yOff + c]!;
  }
}

/** x[xOff + r] = Σ_c A[aOff + r·lda + c]·v[vOff + c] for r < rows, c < cols (x = A·v, overwritten). */
export function gemvN(
  A: Float64Array,
  aOff: number,
  lda: number,
  rows: number,
  cols: number,
  v: Float64Array,
  vOff: number,
  x: Float64Array,
  xOff: number,
): void {
  if (rows <= 0) return;
  const k = kernelsHolding(A, v, x);
  if (k) {
    k.gemvN(addr(A, aOff), lda * 8, rows, Math.max(0, cols), addr(v, vOff), addr(x, xOff));
    return;
  }
  for (let r = 0; r < rows; r++) {
    const a0 = aOff + r * lda;
    let s0 = 0;
    let s1 = 0;
    let c = 0;
    for (; c + 2 <= cols; c += 2) {
      s0 += A[a0 + c]! * v[vOff + c]!;
      s1 += A[a0 + c + 1]! * v[vOff + c + 1]!;
    }
    if (c < cols) s0 += A[a0 + c]! * v[vOff + c]!;
    x[xOff + r] = s0 + s1;
  }
}

// biome-ignore format: hand-laid 4×4 register tile, one tile row per line
/** JS fallback of the wasm macro-kernel (offsets and ldc in elements). */
function macroJs(h: Float64Array, mcp: number, ncp: number, kc: number, pa: number, pb: number, pc: number, ldc: number): void {
  for (let j = 0; j < ncp; j += NR, pb += NR * kc, pc += NR) {
    for (let i = 0, a = pa; i < mcp; i += MR, a += MR * kc) {
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      for (let k = 0, x = a, y = pb; k < kc; k++, x += 4, y += 4) {
        const x0 = h[x]!, x1 = h[x + 1]!, x2 = h[x + 2]!, x3 = h[x + 3]!;
        const y0 = h[y]!, y1 = h[y + 1]!, y2 = h[y + 2]!, y3 = h[y + 3]!;
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
        c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
        c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
      }
      let o = pc + i * ldc;
      h[o] = c00; h[o + 1] = c01; h[o + 2] = c02; h[o + 3] = c03; o += ldc;
      h[o] = c10; h[o + 1] = c11; h[o + 2] = c12; h[o + 3] = c13; o += ldc;
      h[o] = c20; h[o + 1] = c21; h[o + 2] = c22; h[o + 3] = c23; o += ldc;
      h[o] = c30; h[o + 1] = c31; h[o + 2] = c32; h[o + 3] = c33;
    }
  }
}

/**
 * Packs the m×kc block X[off + i·si + k·sk] (i < m, k < kc; one of si, sk is 1) into 4-row micro-panels
 * from h[d] on: panel p, depth k, row r → d + p·4·kc + k·4 + r, a ragged last panel padded with zeros.
 */
function packPanels(
  h: Float64Array,
  X: Float64Array,
  off: number,
  si: number,
  sk: number,
  m: number,
  kc: number,
  d: number,
): void {
  for (let p = 0; p < m; p += 4, off += 4 * si) {
    const rows = Math.min(4, m - p);
    if (rows < 4) {
      for (let k = 0; k < kc; k++, d += 4) {
        for (let r = 0; r < 4; r++) h[d + r] = r < rows ? X[off + r * si + k * sk]! : 0;
      }
    } else if (sk === 1) {
      // Four rows read along k.
      const r0 = off;
      const r1 = r0 + si;
      const r2 = r1 + si;
      const r3 = r2 + si;
      for (let k = 0; k < kc; k++, d += 4) {
        h[d] = X[r0 + k]!;
        h[d + 1] = X[r1 + k]!;
        h[d + 2] = X[r2 + k]!;
        h[d + 3] = X[r3 + k]!;
      }
    } else {
      // Four contiguous elements per k.
      for (let k = 0, s = off; k < kc; k++, d += 4, s += sk) {
        h[d] = X[s]!;
        h[d + 1] = X[s + 1]!;
        h[d + 2] = X[s + 2]!;
        h[d + 3] = X[s + 3]!;
      }
    }
  }
}

/** Packs op(A)[i0.., k0..] (mc×kc) into MR-row micro-panels at h[dest] (MR = 4). */
function packA(h: Float64Array, p: Product, i0: number, mc: number, k0: number, kc: number, dest = AP): void {
  const [si, sk] = p.transA ? [1, p.lda] : [p.lda, 1];
  packPanels(h, p.A, p.aOff + i0 * si + k0 * sk, si, sk, mc, kc, dest);
}

/** Packs op(B)[k0.., j0..] (kc×nc) into NR-column micro-panels at h[BP]: op(B)ᵀ's rows, as packA (NR = 4). */
function packB(h: Float64Array, p: Product, k0: number, kc: number, j0: number, nc: number): void {
  const [sj, sk] = p.transB ? [p.ldb, 1] : [1, p.ldb];
  packPanels(h, p.B, p.bOff + j0 * sj + k0 * sk, sj, sk, nc, kc, BP);
}

/**
 * y[i·incy] += α·Σₖ M(i, k)·x[k] for i < m, k < n, where M(i, k) = mat[off + i·ld + k] (rowMajor) or
 * mat[off + k·ld + i] (otherwise). x is contiguous.
 */
function gemvInto(
  rowMajor: boolean,
  m: number,
  n: number,
  alpha: number,
  mat: Float64Array,
  off: number,
  ld: number,
  x: Float64Array,
  y: Float64Array,
  yOff: number,
  incy: number,
): void {
  if (rowMajor) {
    for (let i = 0; i < m; i++) {
      const r = off + i * ld;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let k = 0;
      for (; k + 4 <= n; k += 4) {
        s0 += mat[r + k]! * x[k]!;
        s1 += mat[r + k + 1]! * x[k + 1]!;
        s2 += mat[r + k + 2]! * x[k + 2]!;
        s3 += mat[r + k + 3]! * x[k + 3]!;
      }
      for (; k < n; k++) s0 += mat[r + k]! * x[k]!;
      y[yOff + i * incy]! += alpha * (s0 + s1 + (s2 + s3));
    }
  } else {
    const acc = new Float64Array(m);
    for (let k = 0; k < n; k++) {
      const xk = x[k]!;
      if (xk === 0) continue;
      const r = off + k * ld;
      for (let i = 0; i < m; i++) acc[i]! += mat[r + i]! * xk;
    }
    for (let i = 0; i < m; i++) y[yOff + i * incy]! += alpha * acc[i]!;
  }
}

/** The operands of one product C += α·op(A)·op(B) (the arguments of `gemm` but β, C already scaled). */
interface Product {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  A: Float64Array;
  aOff: number;
  lda: number;
  B: Float64Array;
  bOff: number;
  ldb: number;
  C: Float64Array;
  cOff: number;
  ldc: number;
}

/** Direct loops for small products. */
function gemmSmall(p: Product): void {
  const { transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, C, cOff, ldc } = p;
  const sai = transA ? 1 : lda;
  const sak = transA ? lda : 1;
  if (!transB) {
    // C row i += op(A)(i, k) · B row k (unit stride over j).
    for (let i = 0; i < M; i++) {
      const c = cOff + i * ldc;
      for (let k = 0; k < K; k++) {
        const a = alpha * A[aOff + i * sai + k * sak]!;
        if (a === 0) continue;
        const b = bOff + k * ldb;
        for (let j = 0; j < N; j++) C[c + j]! += a * B[b + j]!;
      }
    }
  } else {
    for (let i = 0; i < M; i++) {
      const a = aOff + i * sai;
      const c = cOff + i * ldc;
      for (let j = 0; j < N; j++) {
        const b = bOff + j * ldb;
        let s = 0;
        for (let k = 0; k < K; k++) s += A[a + k * sak]! * B[b + k]!;
        C[c + j]! += alpha * s;
      }
    }
  }
}

/** C ← α·op(A)·op(B) + β·C; op(A) is M×K, op(B) K×N, all row-major with leading dimensions. */
export function gemm(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float64Array,
  aOff: number,
  lda: number,
  B: Float64Array,
  bOff: number,
  ldb: number,
  beta: number,
  C: Float64Array,
  cOff: number,
  ldc: number,
): void {
  if (M === 0 || N === 0) return;
  if (beta !== 1) {
    for (let i = 0; i < M; i++) {
      const c = cOff + i * ldc;
      if (beta === 0) C.fill(0, c, c + N);
      else for (let j = 0; j < N; j++) C[c + j]! *= beta;
    }
  }
  if (K === 0 || alpha === 0) return;
  if (N === 1) {
    // C[:, 0] += α·op(A)·x with x = op(B)[:, 0].
    const x = new Float64Array(K);
    for (let k = 0; k < K; k++) x[k] = B[bOff + (transB ? k : k * ldb)]!;
    gemvInto(!transA, M, K, alpha, A, aOff, lda, x, C, cOff, ldc);
    return;
  }
  if (M === 1) {
    // C[0, :] += α·op(B)ᵀ·x with x = op(A)[0, :].
    const x = new Float64Array(K);
    for (let k = 0; k < K; k++) x[k] = A[aOff + (transA ? k * lda : k)]!;
    gemvInto(transB, N, K, alpha, B, bOff, ldb, x, C, cOff, 1);
    return;
  }
  const p: Product = { transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, C, cOff, ldc };
  if (M * N * K <= 32768 || M < MR || N < NR) {
    gemmSmall(p);
    return;
  }
  const w = active();
  if (w && C.buffer !== w.heap.buffer && K > KC && M * N >= 16384 && M * N * K >= 1 << 25) {
    // Several passes over a C outside the kernel memory: work on a copy inside a workspace instead, so
    // the passes accumulate in wasm rather than through CB and a JS add each.
    withWorkspace(M * N, (ws) => {
      const T = ws.heap.subarray(ws.offset, ws.offset + M * N);
      for (let i = 0; i < M; i++) T.set(C.subarray(cOff + i * ldc, cOff + i * ldc + N), i * N);
      gemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, 1, T, 0, N);
      for (let i = 0; i < M; i++) C.set(T.subarray(i * N, i * N + N), cOff + i * ldc);
    });
    return;
  }
  if (!w && !jsHeap) jsHeap = new Float64Array(SCRATCH);
  const h = w ? w.heap : jsHeap!;
  if (w && C.buffer === w.heap.buffer) {
    gemmDirect(w, h, p);
    return;
  }
  for (let jc = 0; jc < N; jc += NC) {
    const nc = Math.min(NC, N - jc);
    const ncp = Math.ceil(nc / NR) * NR;
    for (let pc = 0; pc < K; pc += KC) {
      const kc = Math.min(KC, K - pc);
      packB(h, p, pc, kc, jc, nc);
      for (let ic = 0; ic < M; ic += MC) {
        const mc = Math.min(MC, M - ic);
        const mcp = Math.ceil(mc / MR) * MR;
        packA(h, p, ic, mc, pc, kc);
        if (w) w.macro(mcp, ncp, kc, AP * 8, BP * 8, CB * 8, NC * 8);
        else macroJs(h, mcp, ncp, kc, AP, BP, CB, NC);
        addBlock(h, C, cOff + ic * ldc + jc, ldc, mc, nc, alpha);
      }
    }
  }
}

/**
 * The GEMM loops for a C inside the kernel memory: full tiles accumulate in place (macroAcc), ragged
 * edges go through CB. A is packed a group of up to 8 MC-row blocks at a time and the group's blocks are
 * shared out between the caller and the worker threads (each block owns its rows of C).
 */
function gemmDirect(w: WasmKernels, h: Float64Array, p: Product): void {
  const { M, N, K, alpha, C, cOff, ldc } = p;
  const cByte = C.byteOffset + cOff * 8;
  const parallel = M > MC && parallelAvailable(w.module, w.shared);
  for (let jc = 0; jc < N; jc += NC) {
    const nc = Math.min(NC, N - jc);
    const nFull = nc - (nc % NR);
    for (let pc = 0; pc < K; pc += KC) {
      const kc = Math.min(KC, K - pc);
      packB(h, p, pc, kc, jc, nc);
      for (let g0 = 0; g0 < M; g0 += GROUP * MC) {
        const rows = Math.min(GROUP * MC, M - g0);
        const n = Math.ceil(rows / MC);
        for (let b = 0; b < n; b++) {
          const ic = g0 + b * MC;
          packA(h, p, ic, Math.min(MC, M - ic), pc, kc, AP + b * MC * kc);
        }
        const lastMc = rows - (n - 1) * MC;
        const lastFull = lastMc - (lastMc % MR);
        if (nFull > 0) {
          const job = {
            n,
            nFull,
            kc,
            ap0: AP * 8,
            aps: MC * kc * 8,
            bp: BP * 8,
            c0: cByte + (g0 * ldc + jc) * 8,
            cs: MC * ldc * 8,
            ldc: ldc * 8,
            mFull: MC,
            last: lastFull,
            alpha,
          };
          const run = (b: number) =>
            w.macroAcc(
              b === n - 1 ? lastFull : MC,
              nFull,
              kc,
              job.ap0 + b * job.aps,
              job.bp,
              job.c0 + b * job.cs,
              job.ldc,
              alpha,
            );
          if (parallel) runBlocks(w.module, w.memory, job, run);
          else for (let b = 0; b < n; b++) run(b);
        }
        // Ragged edges: the last NR-column strip of every block, the last MR-row strip of the last block.
        for (let b = 0; b < n; b++) {
          const ic = g0 + b * MC;
          const mc = b === n - 1 ? lastMc : MC;
          const ap = AP + b * MC * kc;
          if (nFull < nc) {
            w.macro(Math.ceil(mc / MR) * MR, NR, kc, ap * 8, (BP + nFull * kc) * 8, CB * 8, NC * 8);
            addBlock(h, C, cOff + ic * ldc + jc + nFull, ldc, mc, nc - nFull, alpha);
          }
          if (b === n - 1 && lastFull < lastMc && nFull > 0) {
            w.macro(MR, nFull, kc, (ap + lastFull * kc) * 8, BP * 8, CB * 8, NC * 8);
            addBlock(h, C, cOff + (ic + lastFull) * ldc + jc, ldc, lastMc - lastFull, nFull, alpha);
          }
        }
      }
    }
  }
}

/** C[cOff + i·ldc + j] += α·CB[i, j] for i < rows, j < cols. */
function addBlock(
  h: Float64Array,
  C: Float64Array,
  cOff: number,
  ldc: number,
  rows: number,
  cols: number,
  alpha: number,
) {
  for (let i = 0; i < rows; i++) {
    const c = cOff + i * ldc;
    const s = CB + i * NC;
    if (alpha === 1) for (let j = 0; j < cols; j++) C[c + j]! += h[s + j]!;
    else for (let j = 0; j < cols; j++) C[c + j]! += alpha * h[s + j]!;
  }
}

/** op(A)·op(B) as a new matrix (transA: use Aᵀ, transB: use Bᵀ). Runs the packed float64 GEMM. */
export function matmul64(a: Matrix64, b: Matrix64, opts?: { transA?: boolean; transB?: boolean }): Matrix64 {
  const tA = opts?.transA ?? false;
  const tB = opts?.transB ?? false;
  const M = tA ? a.cols : a.rows;
  const K = tA ? a.rows : a.cols;
  const Kb = tB ? b.cols : b.rows;
  const N = tB ? b.rows : b.cols;
  if (K !== Kb) {
    throw new RangeError(
      `matmul64: inner dimensions differ: op(A) is ${M}×${K}, op(B) is ${Kb}×${N} (transA ${tA}, transB ${tB})`,
    );
  }
  const c = matrix64(M, N);
  gemm(tA, tB, M, N, K, 1, a.data, 0, a.cols, b.data, 0, b.cols, 0, c.data, 0, N);
  return c;
}
