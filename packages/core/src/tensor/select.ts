import { LineageError } from '../util/errors.js';
import { isPacked } from './dtype.js';
import { HostTensor } from './host-tensor.js';
import { packInts, unpackInts } from './packed.js';

/** Positions along an axis, in the order wanted (a subset, possibly reordered; no repeats). */
export type Indices = Int32Array | readonly number[];

/**
 * `idx` checked against an axis of `n` entries: integers in [0, n), none repeated, at least one.
 * `what` names the axis in the one-line error (e.g. "rows of 'model.layers.0.mlp.up_proj'").
 */
export function checkIndices(idx: Indices, n: number, what: string): Int32Array {
  if (idx.length === 0) throw new LineageError(`${what}: keeps nothing (at least one index is needed)`);
  const seen = new Uint8Array(n);
  const out = new Int32Array(idx.length);
  for (let k = 0; k < idx.length; k++) {
    const i = idx[k]!;
    if (!Number.isInteger(i) || i < 0 || i >= n)
      throw new LineageError(`${what}: index ${i} is outside 0..${n - 1}`);
    if (seen[i]) throw new LineageError(`${what}: index ${i} is repeated`);
    seen[i] = 1;
    out[k] = i;
  }
  return out;
}

/**
 * The entries of a 1-D tensor at `idx`, or the rows (`axis` 0) or columns (`axis` 1) of a 2-D one, in its
 * stored dtype: elements are copied bit for bit (packed integers are unpacked and repacked). `idx` must
 * have passed checkIndices.
 */
export function takeAlong(t: HostTensor, axis: 0 | 1, idx: Int32Array): HostTensor {
  const oneD = t.shape.length === 1;
  if (!oneD && t.shape.length !== 2) throw new RangeError(`takeAlong: [${t.shape}] is not 1-D or 2-D`);
  const rows = oneD ? 1 : t.shape[0]!;
  const cols = oneD ? t.shape[0]! : t.shape[1]!;
  const byCols = oneD || axis === 1;
  const src = isPacked(t.dtype) ? unpackInts(t.data as Uint8Array, t.dtype, t.size) : t.data;
  const Ctor = src.constructor as new (n: number) => typeof src;
  const dst = new Ctor((byCols ? rows : idx.length) * (byCols ? idx.length : cols));
  if (byCols)
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      const p = r * idx.length;
      for (let k = 0; k < idx.length; k++) dst[p + k] = src[o + idx[k]!]!;
    }
  else
    for (let k = 0; k < idx.length; k++) {
      const r = idx[k]!;
      dst.set(src.subarray(r * cols, (r + 1) * cols), k * cols);
    }
  const shape = oneD ? [idx.length] : byCols ? [rows, idx.length] : [idx.length, cols];
  return new HostTensor(t.dtype, shape, isPacked(t.dtype) ? packInts(dst, t.dtype) : dst);
}
