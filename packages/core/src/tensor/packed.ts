import { bitsOf, byteSize, isSignedPacked, type PackedDType } from './dtype.js';

/** Packs integers into the little-endian bit stream described on PackedDType. Throws on out-of-range values. */
export function packInts(values: ArrayLike<number>, dtype: PackedDType): Uint8Array {
  const bits = bitsOf(dtype);
  const signed = isSignedPacked(dtype);
  const lo = signed ? -(1 << (bits - 1)) : 0;
  const hi = signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(byteSize(dtype, values.length));
  let bitPos = 0;
  for (let i = 0; i < values.length; i++, bitPos += bits) {
    const v = values[i]!;
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new RangeError(`packInts: value ${v} at ${i} is outside ${dtype} range [${lo}, ${hi}]`);
    }
    const u = v & mask;
    const byte = bitPos >>> 3;
    const shift = bitPos & 7;
    out[byte]! |= (u << shift) & 0xff;
    if (shift + bits > 8) out[byte + 1]! |= u >>> (8 - shift);
  }
  return out;
}

/** Inverse of packInts: n integers (sign-extended for iN types). */
export function unpackInts(bytes: Uint8Array, dtype: PackedDType, n: number): Int32Array {
  const bits = bitsOf(dtype);
  if (bytes.length < byteSize(dtype, n)) {
    throw new RangeError(`unpackInts: ${bytes.length} bytes cannot hold ${n} ${dtype} values`);
  }
  const signed = isSignedPacked(dtype);
  const mask = (1 << bits) - 1;
  const signBit = 1 << (bits - 1);
  const out = new Int32Array(n);
  let bitPos = 0;
  for (let i = 0; i < n; i++, bitPos += bits) {
    const byte = bitPos >>> 3;
    const shift = bitPos & 7;
    let u = bytes[byte]! >>> shift;
    if (shift + bits > 8) u |= bytes[byte + 1]! << (8 - shift);
    u &= mask;
    out[i] = signed && u & signBit ? u - (1 << bits) : u;
  }
  return out;
}
