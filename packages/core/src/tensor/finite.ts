import { quote } from '../io/fs-util.js';
import { LineageError } from '../util/errors.js';
import type { HostTensor } from './host-tensor.js';

/** Elements scanned per block before the block's flag is tested (keeps the inner loop branch-free). */
const BLOCK = 4096;

function firstInFloats(a: Float32Array | Float64Array): number {
  for (let start = 0; start < a.length; start += BLOCK) {
    const end = Math.min(a.length, start + BLOCK);
    // x * 0 is ±0 for every finite x and NaN for ±Inf and NaN, so one NaN poisons the sum.
    let acc = 0;
    for (let i = start; i < end; i++) acc += a[i]! * 0;
    if (acc === 0) continue;
    for (let i = start; i < end; i++) if (!Number.isFinite(a[i]!)) return i;
  }
  return -1;
}

/** f16 and bf16 bit patterns: all exponent bits set is ±Inf or NaN. */
function firstInHalves(a: Uint16Array, exponent: number): number {
  for (let start = 0; start < a.length; start += BLOCK) {
    const end = Math.min(a.length, start + BLOCK);
    // (bits & exponent) + (0x10000 - exponent) reaches bit 16 exactly when every exponent bit is set.
    const bias = 0x10000 - exponent;
    let hit = 0;
    for (let i = start; i < end; i++) hit |= ((a[i]! & exponent) + bias) >>> 16;
    if (!hit) continue;
    for (let i = start; i < end; i++) if ((a[i]! & exponent) === exponent) return i;
  }
  return -1;
}

/** Index of the first NaN or ±Inf element of a float tensor, or -1 (integer tensors are always finite). */
export function firstNonFinite(t: HostTensor): number {
  switch (t.dtype) {
    case 'f32':
    case 'f64':
      return firstInFloats(t.data as Float32Array | Float64Array);
    case 'f16':
      return firstInHalves(t.data as Uint16Array, 0x7c00);
    case 'bf16':
      return firstInHalves(t.data as Uint16Array, 0x7f80);
    default:
      return -1;
  }
}

function describeAt(t: HostTensor, i: number): string {
  const v = t.toF32()[i]!; // only on failure: the conversion cost does not matter
  const what = Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf';
  const idx: number[] = [];
  let rest = i;
  for (let d = t.shape.length - 1; d >= 0; d--) {
    idx.unshift(rest % t.shape[d]!);
    rest = Math.floor(rest / t.shape[d]!);
  }
  return `${what} at [${idx.join(', ')}]`;
}

/**
 * Throws a one-line LineageError naming `file` and tensor `name` when `t` holds a NaN or an infinity;
 * `hint` ends the message (e.g. how to load it anyway).
 */
export function assertFinite(name: string, t: HostTensor, file?: string, hint?: string): void {
  const i = firstNonFinite(t);
  if (i < 0) return;
  throw new LineageError(
    `tensor ${quote(name)} holds a non-finite value (${describeAt(t, i)})${hint ? `; ${hint}` : ''}`,
    file,
  );
}

let allowNonfiniteByDefault = false;

/** The process-wide default of `allowNonfinite` for loads and compression steps (the CLI's --allow-nonfinite). */
export function setAllowNonfinite(allow: boolean): void {
  allowNonfiniteByDefault = allow;
}

/** Whether non-finite weights are accepted when an option does not say (see setAllowNonfinite). */
export function allowNonfiniteDefault(): boolean {
  return allowNonfiniteByDefault;
}

/** How to accept non-finite weights anyway, for the end of messages. */
export const ALLOW_NONFINITE_HINT = 'pass --allow-nonfinite to accept it';
