import { type Shape, sizeOf } from '../tensor/host-tensor.js';
import { LineageError } from '../util/errors.js';
import { broadcastShapes, sameShape } from './js/kernels.js';

/*
 * Shape arithmetic and argument checks of the backend contract, shared by the backends so that each
 * accepts the same arguments and throws the same errors. Pure: no tensors, no runtime.
 */

export { broadcastShapes, sameShape } from './js/kernels.js';

/** Row-major (C order) strides of `shape`. */
export function rowMajorStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** `axis` in [0, rank), negative axes counting from the end. */
export function normAxis(axis: number, rank: number, op: string): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new RangeError(`${op}: axis ${axis} is out of range for rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

/** Every dimension a non-negative integer. */
export function checkShape(shape: Shape, op: string, shown: Shape = shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`${op}: bad dimension ${d} in [${shown}]`);
  }
}

/** upload's checks; `backend` names the backend in the messages. */
export function checkUpload(backend: string, data: unknown, shape: Shape): void {
  if (!(data instanceof Float32Array || data instanceof Int32Array)) {
    throw new TypeError(`${backend} backend upload: data must be a Float32Array or Int32Array`);
  }
  checkShape(shape, 'upload');
  if (data.length !== sizeOf(shape)) {
    throw new RangeError(
      `${backend} backend upload: ${data.length} values for shape [${shape}] (needs ${sizeOf(shape)})`,
    );
  }
}

/**
 * reshape's target shape: `to` with its -1 inferred, holding as many values as `from`. A bad dimension is
 * reported in the inferred shape, or with `requested` in `to`.
 */
export function reshapeDims(from: Shape, to: Shape, requested = false): number[] {
  const n = sizeOf(from);
  const dims = [...to];
  const free = dims.indexOf(-1);
  if (free >= 0) {
    dims[free] = 1;
    const known = sizeOf(dims);
    if (dims.includes(-1) || known === 0 || n % known !== 0) {
      throw new RangeError(`reshape: cannot infer -1 in [${to}] for ${n} values`);
    }
    dims[free] = n / known;
  }
  checkShape(dims, 'reshape', requested ? to : dims);
  if (sizeOf(dims) !== n) throw new RangeError(`reshape: [${from}] -> [${to}] changes the size`);
  return dims;
}

/** matmul's operand checks: the product [...batch, M, N] with inner dimension K. */
export function matmulDims(
  a: Shape,
  b: Shape,
  tA: boolean,
  tB: boolean,
): { M: number; K: number; N: number; batchA: number[]; batchB: number[]; batch: number[] } {
  const ra = a.length;
  const rb = b.length;
  if (ra < 2 || rb < 2) throw new RangeError(`matmul: operands need rank ≥ 2, got [${a}] and [${b}]`);
  const M = a[tA ? ra - 1 : ra - 2]!;
  const K = a[tA ? ra - 2 : ra - 1]!;
  const N = b[tB ? rb - 2 : rb - 1]!;
  const Kb = b[tB ? rb - 1 : rb - 2]!;
  if (K !== Kb) {
    throw new RangeError(
      `matmul: inner dimensions differ (${K} vs ${Kb}) for [${a}]${tA ? 'ᵀ' : ''} · [${b}]${tB ? 'ᵀ' : ''}`,
    );
  }
  const batchA = a.slice(0, -2);
  const batchB = b.slice(0, -2);
  return { M, K, N, batchA, batchB, batch: broadcastShapes(batchA, batchB, 'matmul') };
}

/**
 * The batch axes of a matmul padded to the rank of `batch` (pa, pb), and the trailing ones over which b
 * broadcasts and a does not (unless `canFold` is false): those fold into a's rows (`fold` of them), which
 * leaves `keep` batch axes. x [.., K]·W is then one 2-D product, [B,H,G,T,D]·[B,H,1,S,D]ᵀ one per (B, H).
 */
export function foldBatch(
  batchA: Shape,
  batchB: Shape,
  batch: Shape,
  canFold = true,
): { pa: number[]; pb: number[]; keep: number; fold: number } {
  const r = batch.length;
  const pa = [...new Array<number>(r - batchA.length).fill(1), ...batchA];
  const pb = [...new Array<number>(r - batchB.length).fill(1), ...batchB];
  let keep = r;
  let fold = 1;
  while (canFold && keep > 0 && pb[keep - 1] === 1 && pa[keep - 1] === batch[keep - 1]) {
    fold *= batch[keep - 1]!;
    keep--;
  }
  return { pa, pb, keep, fold };
}

/** reduce's axes as flags over `shape`'s axes, and the output shape. */
export function reduceDims(
  op: string,
  shape: Shape,
  axes: readonly number[],
  keepDims: boolean,
): { reduced: boolean[]; shape: number[] } {
  const rank = shape.length;
  const reduced = new Array<boolean>(rank).fill(false);
  for (const ax of axes) {
    const a = normAxis(ax, rank, `reduce ${op}`);
    if (reduced[a]) throw new RangeError(`reduce ${op}: axis ${ax} is repeated in [${axes}]`);
    reduced[a] = true;
  }
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    if (!reduced[i]) out.push(shape[i]!);
    else if (keepDims) out.push(1);
  }
  return { reduced, shape: out };
}

/** rmsNorm's checks; returns the row length. */
export function rmsNormDims(x: Shape, weight: Shape): number {
  const L = x[x.length - 1] ?? 1;
  if (weight.length !== 1 || weight[0] !== L) {
    throw new RangeError(`rmsNorm: weight [${weight}] does not match the last axis of x [${x}]`);
  }
  return L;
}

/** rope's checks; returns x's trailing [T, H, D]. */
export function ropeDims(x: Shape, cos: Shape, sin: Shape): [number, number, number] {
  if (x.length < 3) throw new RangeError(`rope: x must be [..., T, H, D], got [${x}]`);
  const [T, H, D] = x.slice(-3) as [number, number, number];
  if (D % 2 !== 0) throw new RangeError(`rope: head dim ${D} is odd`);
  const want = [T, D / 2];
  if (!sameShape(cos, want) || !sameShape(sin, want)) {
    throw new RangeError(`rope: cos [${cos}] and sin [${sin}] must be [${want}] for x [${x}]`);
  }
  return [T, H, D];
}

/** gather's ids within the table's V rows. */
export function checkGatherIds(ids: ArrayLike<number>, V: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= V)
      throw new LineageError(`gather: id ${id} (at position ${i}) is out of range [0, ${V})`);
  }
}

/** crossEntropy's shape checks; returns [N, V]. */
export function crossEntropyDims(logits: Shape, targets: Shape): [number, number] {
  if (logits.length !== 2) throw new RangeError(`crossEntropy: logits must be [N, V], got [${logits}]`);
  const [N, V] = logits as [number, number];
  if (targets.length !== 1 || targets[0] !== N) {
    throw new RangeError(`crossEntropy: targets [${targets}] must be [${N}] for logits [${logits}]`);
  }
  return [N, V];
}

/** crossEntropy's N targets within [0, V). */
export function checkTargets(targets: ArrayLike<number>, N: number, V: number): void {
  for (let i = 0; i < N; i++) {
    const t = targets[i]!;
    if (t < 0 || t >= V)
      throw new LineageError(`crossEntropy: target ${t} (row ${i}) is out of range [0, ${V})`);
  }
}

/** transpose's checks; returns the permutation with axes normalised and the output shape. */
export function transposeDims(shape: Shape, perm: readonly number[]): { perm: number[]; shape: number[] } {
  const r = shape.length;
  if (perm.length !== r) throw new RangeError(`transpose: perm [${perm}] does not match rank ${r}`);
  const p = perm.map((ax) => normAxis(ax, r, 'transpose'));
  if (new Set(p).size !== r) throw new RangeError(`transpose: [${perm}] is not a permutation`);
  return { perm: p, shape: p.map((ax) => shape[ax]!) };
}

/** slice's checks; returns non-negative begins and the output shape (size -1 runs to the end). */
export function sliceDims(
  shape: Shape,
  begin: readonly number[],
  size: readonly number[],
): { begin: number[]; shape: number[] } {
  const r = shape.length;
  if (begin.length !== r || size.length !== r) {
    throw new RangeError(
      `slice: begin [${begin}] and size [${size}] must both have rank ${r} for [${shape}]`,
    );
  }
  const b: number[] = [];
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const dim = shape[i]!;
    const b0 = begin[i]!;
    const bi = b0 < 0 ? b0 + dim : b0;
    const s = size[i] === -1 ? dim - bi : size[i]!;
    if (!Number.isInteger(bi) || !Number.isInteger(s) || bi < 0 || s < 0 || bi + s > dim) {
      throw new RangeError(`slice: begin [${begin}] size [${size}] is out of bounds for [${shape}]`);
    }
    b.push(bi);
    out.push(s);
  }
  return { begin: b, shape: out };
}

/** concat's checks along axis `ax` (normalised), running `each` on each tensor first; returns the output shape. */
export function concatShape<T extends { shape: Shape; dtype: string }>(
  xs: readonly T[],
  ax: number,
  each?: (t: T) => void,
): number[] {
  const first = xs[0]!;
  const r = first.shape.length;
  let total = 0;
  for (const t of xs) {
    each?.(t);
    const ok =
      t.dtype === first.dtype &&
      t.shape.length === r &&
      t.shape.every((d, i) => i === ax || d === first.shape[i]);
    if (!ok) {
      throw new RangeError(
        `concat: [${t.shape}] ${t.dtype} does not match [${first.shape}] ${first.dtype} off axis ${ax}`,
      );
    }
    total += t.shape[ax]!;
  }
  return first.shape.map((d, i) => (i === ax ? total : d));
}

/** attention's checks: q [B,T,H,D], k and v [B,S,Hkv,D] with H a multiple of Hkv. */
export function attentionDims(
  q: Shape,
  k: Shape,
  v: Shape,
): { B: number; T: number; H: number; D: number; S: number; Hkv: number } {
  if (q.length !== 4 || k.length !== 4 || !sameShape(k, v)) {
    throw new RangeError(`attention: need q [B,T,H,D] and k, v [B,S,Hkv,D]; got [${q}], [${k}], [${v}]`);
  }
  const [B, T, H, D] = q as [number, number, number, number];
  const [Bk, S, Hkv, Dk] = k as [number, number, number, number];
  if (Bk !== B || Dk !== D || Hkv === 0 || H % Hkv !== 0) {
    throw new RangeError(`attention: q [${q}] is incompatible with k/v [${k}] (H must be a multiple of Hkv)`);
  }
  return { B, T, H, D, S, Hkv };
}
