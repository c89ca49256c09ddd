// f16/bf16 <-> f32 bit conversions. Hand-written because they are a few lines of bit twiddling and
// every library for them adds a dependency to core for no gain.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 -> bf16 bits, round to nearest even; NaN stays NaN (quiet). */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/** f32 -> IEEE half bits, round to nearest even, with subnormals, overflow to ±Inf, NaN preserved. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && m & 1)) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function f32ArrayToBf16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const b = s[i]!;
    out[i] =
      (b & 0x7fffffff) > 0x7f800000
        ? ((b >>> 16) | 0x40) & 0xffff
        : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

export function bf16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const o = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
  return out;
}

export function f32ArrayToF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]!);
  return out;
}

// A 64K-entry table makes f16 decoding a single lookup per element (weights are decoded often).
let f16Table: Float32Array | undefined;
export function f16ArrayToF32(src: Uint16Array): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  const t = f16Table;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
  return out;
}

/** Largest finite values of the 16-bit float types (bf16: the largest below f32's overflow threshold). */
export const HALF_MAX_FINITE = { f16: 65504, bf16: (2 - 2 ** -7) * 2 ** 127 } as const;

/** |x| from which each 16-bit type rounds to infinity: halfway from its largest finite value to the next power. */
export const HALF_OVERFLOW_AT = { f16: 65520, bf16: (2 - 2 ** -8) * 2 ** 127 } as const;

/**
 * The largest finite |x| of `v` and whether it holds an infinity (NaN is neither): what a cast to a 16-bit
 * type checks against HALF_OVERFLOW_AT before values would silently become infinities.
 */
export function finiteMagnitude(v: Float32Array): { max: number; infinite: boolean } {
  let max = 0;
  let infinite = false;
  for (let i = 0; i < v.length; i++) {
    const a = Math.abs(v[i]!);
    if (a === Number.POSITIVE_INFINITY) infinite = true;
    else if (a > max) max = a;
  }
  return { max, infinite };
}
