import { describe, expect, it } from 'vitest';
import { ALL_DTYPES, bitsOf, byteSize, isPacked, type PackedDType } from './dtype.js';
import {
  bf16BitsToF32,
  f16ArrayToF32,
  f16BitsToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16Bits,
  f32ToF16Bits,
} from './half.js';
import { HostTensor } from './host-tensor.js';
import { packInts, unpackInts } from './packed.js';

describe('f16', () => {
  it('encodes known values exactly', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [0.5, 0x3800],
      [2 ** -14, 0x0400],
      [2 ** -24, 0x0001],
      [Number.POSITIVE_INFINITY, 0x7c00],
      [1e6, 0x7c00],
      [2 ** -26, 0],
    ];
    for (const [x, h] of cases) expect(f32ToF16Bits(x), `${x}`).toBe(h);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(Number.NaN)))).toBe(true);
  });

  it('round-trips every finite half exactly and rounds to nearest even', () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = f16BitsToF32(h);
      if (Number.isNaN(x)) continue;
      expect(f32ToF16Bits(x)).toBe(h);
    }
    // 1 + 2^-11 is halfway between 1 and 1+2^-10: ties to even (1).
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });

  it('array conversion matches the scalar one', () => {
    const xs = Float32Array.from([0.1, -3.5, 1e-5, 7e4, Number.NEGATIVE_INFINITY]);
    const h = f32ArrayToF16(xs);
    expect(Array.from(f16ArrayToF32(h))).toEqual(Array.from(h, f16BitsToF32));
  });
});

describe('bf16', () => {
  it('rounds to nearest even and keeps NaN', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    // 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1+2^-7: ties to even.
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(Number.NaN)))).toBe(true);
    const xs = Float32Array.from([Math.PI, -2.5e-3, 1e30]);
    const b = f32ArrayToBf16(xs);
    for (let i = 0; i < xs.length; i++) expect(b[i]).toBe(f32ToBf16Bits(xs[i]!));
  });
});

describe('packed integers', () => {
  const packed = ALL_DTYPES.filter(isPacked) as PackedDType[];
  it.each(packed)('%s round-trips its whole range at odd lengths', (dt) => {
    const bits = bitsOf(dt);
    const lo = dt.startsWith('i') ? -(1 << (bits - 1)) : 0;
    const hi = dt.startsWith('i') ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    const vals: number[] = [];
    for (let i = 0; i < 37; i++) vals.push(lo + ((i * 7) % (hi - lo + 1)));
    const bytes = packInts(vals, dt);
    expect(bytes.length).toBe(byteSize(dt, vals.length));
    expect(Array.from(unpackInts(bytes, dt, vals.length))).toEqual(vals);
  });

  it('uses a little-endian bit stream', () => {
    expect(Array.from(packInts([1, 2, 3, 0], 'u2'))).toEqual([0b00111001]);
    expect(Array.from(packInts([0xf, 0x1], 'u4'))).toEqual([0x1f]);
    // 3-bit values straddle bytes: 5 | 6<<3 | 7<<6 → 0b11_110_101, then the last bit of 7.
    expect(Array.from(packInts([5, 6, 7], 'u3'))).toEqual([0b11110101, 0b1]);
  });

  it('refuses out-of-range values', () => {
    expect(() => packInts([8], 'i4')).toThrow(/outside i4/);
    expect(() => packInts([-1], 'u2')).toThrow(/outside u2/);
    expect(() => packInts([0.5], 'u4')).toThrow();
  });
});

describe('HostTensor', () => {
  it('validates storage against dtype and shape', () => {
    expect(() => new HostTensor('f32', [2, 3], new Float32Array(5))).toThrow(/needs 6/);
    expect(() => new HostTensor('bf16', [2], new Float32Array(2))).toThrow(/Uint16Array/);
    expect(() => new HostTensor('f32', [-1], new Float32Array(0))).toThrow(/bad dimension/);
    expect(new HostTensor('u4', [3], new Uint8Array(2)).byteLength).toBe(2);
    expect(HostTensor.zeros('f32', [0, 4]).size).toBe(0);
  });

  it('converts between dtypes and bytes', () => {
    const x = HostTensor.fromF32(Float32Array.from([1, -2, 0.5, 3]), [2, 2]);
    const b = x.cast('bf16');
    expect(b.dtype).toBe('bf16');
    expect(Array.from(b.toF32())).toEqual([1, -2, 0.5, 3]);
    const h = HostTensor.fromBytes('f16', [2, 2], x.cast('f16').bytes());
    expect(Array.from(h.toF32())).toEqual([1, -2, 0.5, 3]);
    const q = HostTensor.fromF32(Float32Array.from([-8, 7, 0, -1, 3]), [5], 'i4');
    expect(Array.from(q.toInts())).toEqual([-8, 7, 0, -1, 3]);
    expect(q.byteLength).toBe(3);
    expect(() => x.reshape([3])).toThrow(/changes size/);
  });
});
