import { quote } from '../io/fs-util.js';
import { LineageError } from '../util/errors.js';
import type { HostTensor } from './host-tensor.js';

/** Elements scanned per block before the block's flag is tested (keeps the inner loop branch-free). */
const BLOCK = 4096;

/**
 * Σ a[i]·0 over [start, end): ±0 when every element is finite, NaN otherwise (x·0 is NaN for ±Inf and NaN).
 * Four sums break the chain of dependent additions (about twice as fast as one).
 */
function blockSum(a: Float32Array | Float64Array, start: number, end: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = start;
  for (; i + 3 < end; i += 4) {
    s0 += a[i]! * 0;
    s1 += a[i + 1]! * 0;
    s2 += a[i + 2]! * 0;
    s3 += a[i + 3]! * 0;
  }
  for (; i < end; i++) s0 += a[i]! * 0;
  return s0 + s1 + s2 + s3;
}

function firstInFloats(a: Float32Array | Float64Array): number {
  for (let start = 0; start < a.length; start += BLOCK) {
    const end = Math.min(a.length, start + BLOCK);
    if (blockSum(a, start, end) === 0) continue;
    for (let j = start; j < end; j++) if (!Number.isFinite(a[j]!)) return j;
  }
  return -1;
}

/** f16 and bf16 bit patterns: all exponent bits set is ±Inf or NaN. */
function isSpecial(bits: number, exponent: number): boolean {
  return (bits & exponent) === exponent;
}

/** Non-zero when some 16-bit half of w[start, end) has every bit of `both`'s lane set (see firstInHalves). */
function blockHalves(w: Uint32Array, both: number, start: number, end: number): number {
  let hit = 0;
  for (let i = start; i < end; i++) {
    const v = (w[i]! & both) ^ both;
    hit |= (v - 0x10001) & ~v & 0x80008000;
  }
  return hit;
}

function firstInHalves(a: Uint16Array, exponent: number): number {
  // Two halves per 32-bit word: v has a zero 16-bit lane exactly where a half has every exponent bit set,
  // and (v - 0x10001) & ~v & 0x80008000 flags a zero lane (lanes of v stay below 0x8000, so this is exact
  // up to a borrow that only follows a zero low lane). About twice as fast as one half at a time.
  const aligned = a.byteOffset % 4 === 0;
  const words = aligned ? a.length >> 1 : 0;
  const w = aligned ? new Uint32Array(a.buffer, a.byteOffset, words) : new Uint32Array(0);
  const both = (exponent | (exponent << 16)) >>> 0;
  const scan = (from: number, to: number): number => {
    for (let i = from; i < to; i++) if (isSpecial(a[i]!, exponent)) return i;
    return -1;
  };
  for (let start = 0; start < words; start += BLOCK) {
    const end = Math.min(words, start + BLOCK);
    if (blockHalves(w, both, start, end) === 0) continue;
    const at = scan(2 * start, 2 * end);
    if (at >= 0) return at;
  }
  return scan(2 * words, a.length);
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
