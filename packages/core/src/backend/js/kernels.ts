/**
 * Raw-array kernels for the js backend: broadcasting elementwise ops, reductions, strided copies and
 * the row-wise nn ops. Each op's `switch` sits outside its loop so every loop body is monomorphic;
 * accumulations are JS numbers (f64).
 */

import type { Shape } from '../../tensor/host-tensor.js';
import type { BinaryOp, ReduceOp, UnaryOp } from '../backend.js';

export type Data = Float32Array | Int32Array;

export function sameShape(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** numpy broadcasting of two shapes. */
export function broadcastShapes(a: Shape, b: Shape, op: string): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    if (da === db || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else throw new RangeError(`${op}: shapes [${a}] and [${b}] do not broadcast`);
  }
  return out;
}

/** Row-major strides of `shape` aligned to the right of `outShape`, 0 on broadcast (size-1 or missing) axes. */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const r = outShape.length;
  const strides = new Array<number>(r).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    if (d !== 1) strides[r - shape.length + i] = s;
    s *= d;
  }
  return strides;
}

/**
 * Merges adjacent axes that are contiguous in every operand (and drops size-1 axes), so broadcasting and
 * strided copies iterate over as few, as long axes as possible. Returns the merged shape and strides.
 */
export function mergeAxes(shape: Shape, strideSets: number[][]): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strideSets.map(() => []);
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (d === 1) continue;
    const last = outShape.length - 1;
    let mergeable = last >= 0;
    if (mergeable) {
      for (let k = 0; k < strideSets.length; k++) {
        if (outStrides[k]![last] !== strideSets[k]![i]! * d) {
          mergeable = false;
          break;
        }
      }
    }
    if (mergeable) {
      outShape[last] = outShape[last]! * d;
      for (let k = 0; k < strideSets.length; k++) outStrides[k]![last] = strideSets[k]![i]!;
    } else {
      outShape.push(d);
      for (let k = 0; k < strideSets.length; k++) outStrides[k]!.push(strideSets[k]![i]!);
    }
  }
  return { shape: outShape, strides: outStrides };
}

// ---------------------------------------------------------------------------------------------------
// Elementwise

/** out[oi + i] = a[ai + i·sa] ⊕ b[bi + i·sb] for i < n. */
function binLoop(
  op: BinaryOp,
  a: Data,
  ai: number,
  sa: number,
  b: Data,
  bi: number,
  sb: number,
  out: Data,
  oi: number,
  n: number,
): void {
  const end = oi + n;
  switch (op) {
    case 'add':
      for (let o = oi; o < end; o++, ai += sa, bi += sb) out[o] = a[ai]! + b[bi]!;
      break;
    case 'sub':
      for (let o = oi; o < end; o++, ai += sa, bi += sb) out[o] = a[ai]! - b[bi]!;
      break;
    case 'mul':
      for (let o = oi; o < end; o++, ai += sa, bi += sb) out[o] = a[ai]! * b[bi]!;
      break;
    case 'div':
      for (let o = oi; o < end; o++, ai += sa, bi += sb) out[o] = a[ai]! / b[bi]!;
      break;
    // Math.max/min propagate NaN, as IEEE maximum/minimum (and numpy) do.
    case 'max':
      for (let o = oi; o < end; o++, ai += sa, bi += sb) out[o] = Math.max(a[ai]!, b[bi]!);
      break;
    case 'min':
      for (let o = oi; o < end; o++, ai += sa, bi += sb) out[o] = Math.min(a[ai]!, b[bi]!);
      break;
    default:
      throw new TypeError(`binary: unknown op '${op as string}'`);
  }
}

/** Broadcasting binary op into `out` (of `outShape`, already allocated). */
export function binary(
  op: BinaryOp,
  a: Data,
  aShape: Shape,
  b: Data,
  bShape: Shape,
  out: Data,
  outShape: Shape,
): void {
  const n = out.length;
  if (n === 0) return;
  const aFull = a.length === n;
  const bFull = b.length === n;
  if (aFull && bFull) {
    binLoop(op, a, 0, 1, b, 0, 1, out, 0, n);
    return;
  }
  if (aFull && b.length === 1) {
    binLoop(op, a, 0, 1, b, 0, 0, out, 0, n);
    return;
  }
  if (bFull && a.length === 1) {
    binLoop(op, a, 0, 0, b, 0, 1, out, 0, n);
    return;
  }
  // Trailing-vector broadcast (x + bias, x · weight): the smaller operand is the full operand's trailing block.
  if (aFull && isTrailing(bShape, outShape)) {
    const L = b.length;
    for (let o = 0; o < n; o += L) binLoop(op, a, o, 1, b, 0, 1, out, o, L);
    return;
  }
  if (bFull && isTrailing(aShape, outShape)) {
    const L = a.length;
    for (let o = 0; o < n; o += L) binLoop(op, a, 0, 1, b, o, 1, out, o, L);
    return;
  }
  // General strided path: odometer over all but the innermost merged axis.
  const m = mergeAxes(outShape, [broadcastStrides(aShape, outShape), broadcastStrides(bShape, outShape)]);
  const shape = m.shape;
  const sa = m.strides[0]!;
  const sb = m.strides[1]!;
  const r = shape.length;
  if (r === 0) {
    binLoop(op, a, 0, 0, b, 0, 0, out, 0, n);
    return;
  }
  const inner = shape[r - 1]!;
  const saL = sa[r - 1]!;
  const sbL = sb[r - 1]!;
  const idx = new Int32Array(r);
  let ai = 0;
  let bi = 0;
  for (let o = 0; o < n; o += inner) {
    binLoop(op, a, ai, saL, b, bi, sbL, out, o, inner);
    for (let d = r - 2; d >= 0; d--) {
      ai += sa[d]!;
      bi += sb[d]!;
      if (++idx[d]! < shape[d]!) break;
      ai -= sa[d]! * shape[d]!;
      bi -= sb[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

/** Whether `small` (leading 1s ignored) equals the trailing axes of `full`. */
function isTrailing(small: Shape, full: Shape): boolean {
  let s = 0;
  while (s < small.length && small[s] === 1) s++;
  const k = small.length - s;
  if (k > full.length) return false;
  for (let i = 0; i < k; i++) if (small[s + i] !== full[full.length - k + i]) return false;
  return true;
}

export function unary(op: UnaryOp, x: Data, out: Data): void {
  const n = x.length;
  switch (op) {
    case 'neg':
      for (let i = 0; i < n; i++) out[i] = -x[i]!;
      break;
    case 'exp':
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]!);
      break;
    case 'log':
      for (let i = 0; i < n; i++) out[i] = Math.log(x[i]!);
      break;
    case 'sqrt':
      for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]!);
      break;
    case 'rsqrt':
      for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[i]!);
      break;
    case 'recip':
      for (let i = 0; i < n; i++) out[i] = 1 / x[i]!;
      break;
    case 'abs':
      for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]!);
      break;
    case 'square':
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = v * v;
      }
      break;
    case 'silu':
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = v / (1 + Math.exp(-v));
      }
      break;
    case 'sigmoid':
      for (let i = 0; i < n; i++) out[i] = 1 / (1 + Math.exp(-x[i]!));
      break;
    case 'tanh':
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]!);
      break;
    case 'relu':
      // Math.max passes NaN through, as torch.relu does.
      for (let i = 0; i < n; i++) out[i] = Math.max(x[i]!, 0);
      break;
    default:
      throw new TypeError(`unary: unknown op '${op as string}'`);
  }
}

export function scale(x: Float32Array, mul: number, add: number, out: Float32Array): void {
  const n = x.length;
  if (add === 0) for (let i = 0; i < n; i++) out[i] = x[i]! * mul;
  else for (let i = 0; i < n; i++) out[i] = x[i]! * mul + add;
}

// ---------------------------------------------------------------------------------------------------
// Reductions

/**
 * Reduces `x` over the axes flagged in `reduced` into `out` (sized to the kept axes). Sum and mean
 * accumulate in f64; max propagates NaN.
 */
export function reduce(op: ReduceOp, x: Data, shape: Shape, reduced: readonly boolean[], out: Data): void {
  const P = out.length;
  if (P === 0) return;
  let count = 1;
  for (let i = 0; i < shape.length; i++) if (reduced[i]) count *= shape[i]!;
  if (count === 0 && op === 'max')
    throw new RangeError(`reduce max: zero-size reduction over [${shape}] has no identity`);
  const isMax = op === 'max';
  const div = op === 'mean' ? count : 1;

  // Merge runs of axes with the same role (size-1 axes are dropped) into groups.
  const sizes: number[] = [];
  const roles: boolean[] = [];
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (d === 1) continue;
    const red = reduced[i]!;
    if (roles.length && roles[roles.length - 1] === red) sizes[sizes.length - 1]! *= d;
    else {
      sizes.push(d);
      roles.push(red);
    }
  }
  const nRed = roles.filter((r) => r).length;
  if (count === 0) {
    // Empty reduction: sum is 0, mean is 0/0 = NaN (numpy's answer).
    out.fill(op === 'mean' ? Number.NaN : 0);
    return;
  }
  if (nRed === 0) {
    for (let i = 0; i < P; i++) out[i] = x[i]!;
    return;
  }
  if (nRed === 1) {
    // [outer kept, R reduced, inner kept]
    const ri = roles.indexOf(true);
    let O = 1;
    for (let i = 0; i < ri; i++) O *= sizes[i]!;
    const R = sizes[ri]!;
    const I = ri + 1 < sizes.length ? sizes[ri + 1]! : 1;
    if (I === 1) {
      for (let o = 0; o < O; o++) {
        const base = o * R;
        if (isMax) {
          let m = Number.NEGATIVE_INFINITY;
          for (let r = 0; r < R; r++) m = Math.max(m, x[base + r]!);
          out[o] = m;
        } else {
          let s0 = 0;
          let s1 = 0;
          let r = 0;
          for (; r + 1 < R; r += 2) {
            s0 += x[base + r]!;
            s1 += x[base + r + 1]!;
          }
          if (r < R) s0 += x[base + r]!;
          out[o] = (s0 + s1) / div;
        }
      }
      return;
    }
    const acc = new Float64Array(I);
    for (let o = 0; o < O; o++) {
      acc.fill(isMax ? Number.NEGATIVE_INFINITY : 0);
      for (let r = 0; r < R; r++) {
        const base = (o * R + r) * I;
        if (isMax) for (let i = 0; i < I; i++) acc[i] = Math.max(acc[i]!, x[base + i]!);
        else for (let i = 0; i < I; i++) acc[i]! += x[base + i]!;
      }
      const ob = o * I;
      for (let i = 0; i < I; i++) out[ob + i] = acc[i]! / div;
    }
    return;
  }
  // General: walk x in order; the output index moves with the kept axes only.
  const r = sizes.length;
  const ostr = new Array<number>(r).fill(0);
  let s = 1;
  for (let i = r - 1; i >= 0; i--) {
    if (!roles[i]) {
      ostr[i] = s;
      s *= sizes[i]!;
    }
  }
  const acc = new Float64Array(P).fill(isMax ? Number.NEGATIVE_INFINITY : 0);
  const inner = sizes[r - 1]!;
  const os = ostr[r - 1]!;
  const idx = new Int32Array(r);
  let oi = 0;
  const n = x.length;
  for (let xi = 0; xi < n; xi += inner) {
    if (isMax) for (let i = 0, q = oi; i < inner; i++, q += os) acc[q] = Math.max(acc[q]!, x[xi + i]!);
    else for (let i = 0, q = oi; i < inner; i++, q += os) acc[q]! += x[xi + i]!;
    for (let d = r - 2; d >= 0; d--) {
      oi += ostr[d]!;
      if (++idx[d]! < sizes[d]!) break;
      oi -= ostr[d]! * sizes[d]!;
      idx[d] = 0;
    }
  }
  for (let i = 0; i < P; i++) out[i] = acc[i]! / div;
}

// ---------------------------------------------------------------------------------------------------
// Copies

/**
 * dst[dOff + contiguous index over `shape`] = src[sOff + Σ idx·strides]: the strided gather behind
 * transpose and slice. Contiguous inner runs are block-copied; a transposed inner pair is
 * copied four rows at a time in cache-sized column chunks.
 */
export function copyStrided(
  src: Data,
  sOff: number,
  shape: Shape,
  strides: readonly number[],
  dst: Data,
  dOff: number,
): void {
  let total = 1;
  for (const d of shape) total *= d;
  if (total === 0) return;
  const m = mergeAxes(shape, [strides as number[]]);
  const dims = m.shape;
  const st = m.strides[0]!;
  const r = dims.length;
  if (r === 0) {
    dst[dOff] = src[sOff]!;
    return;
  }
  const C = dims[r - 1]!;
  const sc = st[r - 1]!;
  if (sc === 1 || r === 1) {
    // Runs along the innermost axis.
    const outer = total / C;
    const idx = new Int32Array(r);
    let si = sOff;
    let di = dOff;
    for (let o = 0; o < outer; o++, di += C) {
      if (sc === 1 && C >= 32) dst.set(src.subarray(si, si + C), di);
      else for (let c = 0, s = si; c < C; c++, s += sc) dst[di + c] = src[s]!;
      for (let d = r - 2; d >= 0; d--) {
        si += st[d]!;
        if (++idx[d]! < dims[d]!) break;
        si -= st[d]! * dims[d]!;
        idx[d] = 0;
      }
    }
    return;
  }
  // Inner pair [R, C] with a non-unit inner stride (a transpose): four output rows at a time, so with the
  // usual sr = 1 each step reads 4 adjacent source values; column chunks keep the touched lines in cache.
  const R = dims[r - 2]!;
  const sr = st[r - 2]!;
  const outer = total / (R * C);
  const idx = new Int32Array(Math.max(0, r - 2));
  let si = sOff;
  let di = dOff;
  const CB = 256;
  for (let o = 0; o < outer; o++, di += R * C) {
    for (let c0 = 0; c0 < C; c0 += CB) {
      const c1 = Math.min(C, c0 + CB);
      let rr = 0;
      for (; rr + 4 <= R; rr += 4) {
        const d0 = di + rr * C;
        const d1 = d0 + C;
        const d2 = d1 + C;
        const d3 = d2 + C;
        for (let c = c0, s = si + rr * sr + c0 * sc; c < c1; c++, s += sc) {
          dst[d0 + c] = src[s]!;
          dst[d1 + c] = src[s + sr]!;
          dst[d2 + c] = src[s + 2 * sr]!;
          dst[d3 + c] = src[s + 3 * sr]!;
        }
      }
      for (; rr < R; rr++) {
        const drow = di + rr * C;
        for (let c = c0, s = si + rr * sr + c0 * sc; c < c1; c++, s += sc) dst[drow + c] = src[s]!;
      }
    }
    for (let d = r - 3; d >= 0; d--) {
      si += st[d]!;
      if (++idx[d]! < dims[d]!) break;
      si -= st[d]! * dims[d]!;
      idx[d] = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Row-wise nn ops (last axis of length L)

/** Stable softmax per row; a row containing NaN or +Inf, or all −Inf, becomes NaN (as in numpy). */
export function softmax(x: Float32Array, out: Float32Array, L: number): void {
  const n = x.length;
  for (let base = 0; base < n; base += L) {
    const end = base + L;
    let m = Number.NEGATIVE_INFINITY;
    for (let i = base; i < end; i++) m = Math.max(m, x[i]!);
    let s = 0;
    for (let i = base; i < end; i++) {
      const e = Math.exp(x[i]! - m);
      out[i] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let i = base; i < end; i++) out[i] = out[i]! * inv;
  }
}

export function logSoftmax(x: Float32Array, out: Float32Array, L: number): void {
  const n = x.length;
  for (let base = 0; base < n; base += L) {
    const end = base + L;
    let m = Number.NEGATIVE_INFINITY;
    for (let i = base; i < end; i++) m = Math.max(m, x[i]!);
    let s = 0;
    for (let i = base; i < end; i++) s += Math.exp(x[i]! - m);
    const lse = m + Math.log(s);
    for (let i = base; i < end; i++) out[i] = x[i]! - lse;
  }
}

export function rmsNorm(x: Float32Array, w: Float32Array, eps: number, out: Float32Array, L: number): void {
  const n = x.length;
  for (let base = 0; base < n; base += L) {
    const end = base + L;
    let ss = 0;
    for (let i = base; i < end; i++) {
      const v = x[i]!;
      ss += v * v;
    }
    const r = 1 / Math.sqrt(ss / L + eps);
    for (let i = base, j = 0; i < end; i++, j++) out[i] = x[i]! * r * w[j]!;
  }
}

/** Rotate-half RoPE over x [outer, T, H, D] with cos/sin [T, D/2]. */
export function rope(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  out: Float32Array,
  T: number,
  H: number,
  D: number,
): void {
  const half = D >> 1;
  const n = x.length;
  for (let base = 0; base < n; base += T * H * D) {
    for (let t = 0; t < T; t++) {
      const cb = t * half;
      for (let h = 0; h < H; h++) {
        const p = base + (t * H + h) * D;
        for (let j = 0; j < half; j++) {
          const c = cos[cb + j]!;
          const s = sin[cb + j]!;
          const x1 = x[p + j]!;
          const x2 = x[p + j + half]!;
          out[p + j] = x1 * c - x2 * s;
          out[p + j + half] = x2 * c + x1 * s;
        }
      }
    }
  }
}

// biome-ignore format: hand-laid 4×4 register tiles read better one row of the tile per line
/**
 * Fused attention: q [B,T,H,D], k/v [B,S,Hkv,D] → out [B,T,H·D], with no [T, S] mask or score tensor.
 * Per (batch, kv head), the T·G query rows that share it are taken four at a time: scores against four
 * keys at once in a 4×4 register tile (as in gemmNT), a stable softmax per row over its visible keys,
 * then probabilities · v as a 4-row × 4-column tile accumulated over keys. Causal blocks stop at their
 * last visible key, so roughly half the work of the composite is skipped.
 */
export function attention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  out: Float32Array,
  B: number,
  T: number,
  S: number,
  H: number,
  Hkv: number,
  D: number,
  scale: number,
  causal: boolean,
  offset: number,
): void {
  const G = H / Hkv;
  const R = T * G;
  const kvRow = Hkv * D;
  const p = new Float64Array(4 * S); // scores, then probabilities, of the current 4 rows
  const S2 = 2 * S;
  const S3 = 3 * S;
  const ro = new Int32Array(4); // q/out offset of each row in the block
  const lim = new Int32Array(4); // keys 0..lim-1 are visible to that row
  for (let b = 0; b < B; b++) {
    for (let kh = 0; kh < Hkv; kh++) {
      const kvBase = b * S * kvRow + kh * D;
      for (let r0 = 0; r0 < R; r0 += 4) {
        let L = 0;
        for (let i = 0; i < 4; i++) {
          // A short last block repeats its last row: same values written twice, no edge-case kernels.
          const r = Math.min(r0 + i, R - 1);
          const t = Math.floor(r / G);
          ro[i] = ((b * T + t) * H + kh * G + (r - t * G)) * D;
          // None visible (offset < −t) leaves the row 0/0 = NaN, as the composite's all −∞ softmax gives.
          const l = causal ? Math.max(0, Math.min(S, offset + t + 1)) : S;
          lim[i] = l;
          if (l > L) L = l;
        }
        const q0 = ro[0]!;
        const q1 = ro[1]!;
        const q2 = ro[2]!;
        const q3 = ro[3]!;

        // Scores p[i·S + s] = (q_i · k_s)·scale for s < L.
        let s = 0;
        for (; s + 4 <= L; s += 4) {
          const k0 = kvBase + s * kvRow;
          const k1 = k0 + kvRow;
          const k2 = k1 + kvRow;
          const k3 = k2 + kvRow;
          let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
          let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
          for (let d = 0; d < D; d++) {
            const x0 = q[q0 + d]!, x1 = q[q1 + d]!, x2 = q[q2 + d]!, x3 = q[q3 + d]!;
            const y0 = k[k0 + d]!, y1 = k[k1 + d]!, y2 = k[k2 + d]!, y3 = k[k3 + d]!;
            c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
            c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
            c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
            c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
          }
          p[s] = c00 * scale; p[s + 1] = c01 * scale; p[s + 2] = c02 * scale; p[s + 3] = c03 * scale;
          p[S + s] = c10 * scale; p[S + s + 1] = c11 * scale; p[S + s + 2] = c12 * scale; p[S + s + 3] = c13 * scale;
          p[S2 + s] = c20 * scale; p[S2 + s + 1] = c21 * scale; p[S2 + s + 2] = c22 * scale; p[S2 + s + 3] = c23 * scale;
          p[S3 + s] = c30 * scale; p[S3 + s + 1] = c31 * scale; p[S3 + s + 2] = c32 * scale; p[S3 + s + 3] = c33 * scale;
        }
        for (; s < L; s++) {
          const k0 = kvBase + s * kvRow;
          let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
          for (let d = 0; d < D; d++) {
            const y = k[k0 + d]!;
            c0 += q[q0 + d]! * y; c1 += q[q1 + d]! * y; c2 += q[q2 + d]! * y; c3 += q[q3 + d]! * y;
          }
          p[s] = c0 * scale; p[S + s] = c1 * scale; p[S2 + s] = c2 * scale; p[S3 + s] = c3 * scale;
        }

        // Stable softmax of each row over its visible keys (unnormalised; 1/sum is applied at the end).
        // Math.max propagates NaN, and +∞ or all −∞ make exp(NaN): such rows come out NaN, like numpy.
        let inv0 = 0, inv1 = 0, inv2 = 0, inv3 = 0;
        for (let i = 0; i < 4; i++) {
          const base = i * S;
          const end = base + lim[i]!;
          let m = Number.NEGATIVE_INFINITY;
          for (let j = base; j < end; j++) m = Math.max(m, p[j]!);
          let sum = 0;
          for (let j = base; j < end; j++) {
            const e = Math.exp(p[j]! - m);
            p[j] = e;
            sum += e;
          }
          p.fill(0, end, base + L); // keys masked for this row but visible to others in the block
          const inv = 1 / sum;
          if (i === 0) inv0 = inv;
          else if (i === 1) inv1 = inv;
          else if (i === 2) inv2 = inv;
          else inv3 = inv;
        }

        // out rows = p · v over s < L, four output columns at a time.
        let d = 0;
        for (; d + 4 <= D; d += 4) {
          let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
          let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
          for (let j = 0, vo = kvBase + d; j < L; j++, vo += kvRow) {
            const x0 = p[j]!, x1 = p[S + j]!, x2 = p[S2 + j]!, x3 = p[S3 + j]!;
            const y0 = v[vo]!, y1 = v[vo + 1]!, y2 = v[vo + 2]!, y3 = v[vo + 3]!;
            c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
            c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
            c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
            c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
          }
          let o = q0 + d;
          out[o] = c00 * inv0; out[o + 1] = c01 * inv0; out[o + 2] = c02 * inv0; out[o + 3] = c03 * inv0;
          o = q1 + d;
          out[o] = c10 * inv1; out[o + 1] = c11 * inv1; out[o + 2] = c12 * inv1; out[o + 3] = c13 * inv1;
          o = q2 + d;
          out[o] = c20 * inv2; out[o + 1] = c21 * inv2; out[o + 2] = c22 * inv2; out[o + 3] = c23 * inv2;
          o = q3 + d;
          out[o] = c30 * inv3; out[o + 1] = c31 * inv3; out[o + 2] = c32 * inv3; out[o + 3] = c33 * inv3;
        }
        for (; d < D; d++) {
          let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
          for (let j = 0, vo = kvBase + d; j < L; j++, vo += kvRow) {
            const y = v[vo]!;
            c0 += p[j]! * y; c1 += p[S + j]! * y; c2 += p[S2 + j]! * y; c3 += p[S3 + j]! * y;
          }
          out[q0 + d] = c0 * inv0; out[q1 + d] = c1 * inv1; out[q2 + d] = c2 * inv2; out[q3 + d] = c3 * inv3;
        }
      }
    }
  }
}

/** Per-row −log softmax(x)[target]; targets already range-checked. */
export function crossEntropy(x: Float32Array, targets: Int32Array, out: Float32Array, V: number): void {
  const N = targets.length;
  for (let r = 0; r < N; r++) {
    const base = r * V;
    const end = base + V;
    let m = Number.NEGATIVE_INFINITY;
    for (let i = base; i < end; i++) m = Math.max(m, x[i]!);
    let s = 0;
    for (let i = base; i < end; i++) s += Math.exp(x[i]! - m);
    out[r] = m + Math.log(s) - x[base + targets[r]!]!;
  }
}
