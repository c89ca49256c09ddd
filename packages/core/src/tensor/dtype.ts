/**
 * Dense element types. f16/bf16 are stored as raw 16-bit patterns in a Uint16Array; u16 (e.g. lattice codebook
 * indices, one per 8 weights) as unsigned integers in one.
 */
export type DenseDType = 'f32' | 'f16' | 'bf16' | 'i8' | 'u8' | 'u16' | 'i32' | 'f64';
/**
 * Packed sub-byte integers: `uN` unsigned in [0, 2^N), `iN` two's complement in [-2^(N-1), 2^(N-1)).
 * Elements are packed little-endian into a contiguous bit stream (element k occupies bits
 * [k·N, (k+1)·N) of the byte array, least significant bit first), so 3-bit values may straddle bytes.
 */
export type PackedDType =
  | 'u1'
  | 'u2'
  | 'u3'
  | 'u4'
  | 'u5'
  | 'u6'
  | 'u7'
  | 'i2'
  | 'i3'
  | 'i4'
  | 'i5'
  | 'i6'
  | 'i7';
export type DType = DenseDType | PackedDType;

export type Storage = Float32Array | Uint16Array | Int8Array | Uint8Array | Int32Array | Float64Array;

const DENSE_BITS: Record<DenseDType, number> = {
  f32: 32,
  f16: 16,
  bf16: 16,
  i8: 8,
  u8: 8,
  u16: 16,
  i32: 32,
  f64: 64,
};

export function isPacked(dtype: DType): dtype is PackedDType {
  return !(dtype in DENSE_BITS);
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'f32' || dtype === 'f16' || dtype === 'bf16' || dtype === 'f64';
}

export function bitsOf(dtype: DType): number {
  if (dtype in DENSE_BITS) return DENSE_BITS[dtype as DenseDType];
  return Number(dtype.slice(1));
}

export function isSignedPacked(dtype: PackedDType): boolean {
  return dtype.startsWith('i');
}

/** Bytes needed to store n elements of dtype (packed types round up to whole bytes). */
export function byteSize(dtype: DType, n: number): number {
  return Math.ceil((n * bitsOf(dtype)) / 8);
}

export const ALL_DTYPES: readonly DType[] = [
  'f32',
  'f16',
  'bf16',
  'i8',
  'u8',
  'u16',
  'i32',
  'f64',
  'u1',
  'u2',
  'u3',
  'u4',
  'u5',
  'u6',
  'u7',
  'i2',
  'i3',
  'i4',
  'i5',
  'i6',
  'i7',
];

export function parseDType(s: string): DType | undefined {
  return (ALL_DTYPES as readonly string[]).includes(s) ? (s as DType) : undefined;
}
