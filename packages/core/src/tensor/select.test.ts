import { describe, expect, it } from 'vitest';
import { HostTensor } from './host-tensor.js';
import { checkIndices, takeAlong } from './select.js';

const w = HostTensor.fromF32(
  Float32Array.from({ length: 12 }, (_, i) => i - 5.5),
  [3, 4],
  'f32',
);

describe('takeAlong', () => {
  it('keeps rows or columns in the order given', () => {
    expect([...takeAlong(w, 0, Int32Array.from([2, 0])).toF32()]).toEqual([
      2.5, 3.5, 4.5, 5.5, -5.5, -4.5, -3.5, -2.5,
    ]);
    const c = takeAlong(w, 1, Int32Array.from([3, 1]));
    expect(c.shape).toEqual([3, 2]);
    expect([...c.toF32()]).toEqual([-2.5, -4.5, 1.5, -0.5, 5.5, 3.5]);
  });

  it('copies f16, bf16 and packed storage bit for bit, keeping the dtype', () => {
    for (const dtype of ['f16', 'bf16'] as const) {
      const t = w.cast(dtype);
      const s = takeAlong(t, 1, Int32Array.from([0, 2]));
      expect(s.dtype).toBe(dtype);
      expect([...(s.data as Uint16Array)]).toEqual(
        [0, 2, 4, 6, 8, 10].map((i) => (t.data as Uint16Array)[i]),
      );
    }
    const q = HostTensor.fromF32(Float32Array.from([1, -2, 3, -4, 5, -6]), [2, 3], 'i4');
    const s = takeAlong(q, 1, Int32Array.from([2, 0]));
    expect(s.dtype).toBe('i4');
    expect([...s.toF32()]).toEqual([3, 1, -6, -4]);
    expect([...takeAlong(q.reshape([6]), 0, Int32Array.from([5, 1])).toF32()]).toEqual([-6, -2]);
  });
});

describe('checkIndices', () => {
  it('refuses out-of-range, repeated, fractional and empty selections with one-line errors', () => {
    expect(() => checkIndices([0, 4], 4, 'rows of x')).toThrow('rows of x: index 4 is outside 0..3');
    expect(() => checkIndices([1, 1], 4, 'rows of x')).toThrow('rows of x: index 1 is repeated');
    expect(() => checkIndices([0.5], 4, 'rows of x')).toThrow(/index 0.5 is outside/);
    expect(() => checkIndices([], 4, 'rows of x')).toThrow(/keeps nothing/);
  });
});
