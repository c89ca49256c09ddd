import { gaussian64 } from '@lineage/linalg';
import { describe, expect, it } from 'vitest';
import { e8pAbsGrid, e8pDecode, e8pDequantize, e8pEncode, ldlqE8p } from './e8p.js';
import { dequantize } from './grid.js';
import { rtn } from './rtn.js';

describe('E8P12 codebook', () => {
  const all = new Float64Array(65536 * 8);
  for (let c = 0; c < 65536; c++) e8pDecode(c, all, c * 8);

  it('has 2^16 distinct points of E8 + ¼', () => {
    expect(e8pAbsGrid().length).toBe(256 * 8);
    const keys = new Set<number>();
    let bad = 0;
    for (let c = 0; c < 65536; c++) {
      const v = all.subarray(c * 8, c * 8 + 8);
      let key = 0; // 4·v has odd entries in [−15, 15]: 5 bits each
      for (let i = 0; i < 8; i++) key = key * 32 + (Math.round(4 * v[i]!) + 16);
      keys.add(key);
      // v − shift is half-integer with an even sum (D̂8), the shift ±¼ read off v's fractional part
      const shift = Math.abs(v[0]! - Math.floor(v[0]!) - 0.75) < 1e-12 ? 0.25 : -0.25;
      let sum = 0;
      for (const x of v) {
        const u2 = 2 * (x - shift);
        if (Math.abs(u2 - Math.round(u2)) > 1e-12 || Math.abs(Math.round(u2)) % 2 !== 1) bad++;
        sum += x - shift;
      }
      if (Math.abs(Math.round(sum)) % 2 !== 0) bad++;
    }
    expect(bad).toBe(0);
    expect(keys.size).toBe(65536);
  });

  it('encodes to the nearest codeword (brute force over all 2^16)', () => {
    const y = gaussian64(20, 8, 3).data;
    for (let k = 0; k < 20; k++) {
      let best = Number.POSITIVE_INFINITY;
      for (let c = 0; c < 65536; c++) {
        let d = 0;
        for (let i = 0; i < 8; i++) d += (y[k * 8 + i]! - all[c * 8 + i]!) ** 2;
        best = Math.min(best, d);
      }
      const got = new Float64Array(8);
      e8pDecode(e8pEncode(y, k * 8), got, 0);
      let d = 0;
      for (let i = 0; i < 8; i++) d += (y[k * 8 + i]! - got[i]!) ** 2;
      expect(d).toBeCloseTo(best, 12);
    }
  });

  it('at 2 bits per weight beats the scalar 2-bit grid on Gaussian weights (one scale per row each)', () => {
    const rows = 32;
    const cols = 256;
    const w = gaussian64(rows, cols, 5).data;
    const mse = (d: Float64Array) => d.reduce((a, v, i) => a + (v - w[i]!) ** 2, 0) / d.length;
    const e8 = mse(e8pDequantize(ldlqE8p(w, rows, cols, undefined)));
    const scalar = mse(dequantize(rtn(w, rows, cols, { bits: 2, groupSize: 0 })));
    expect(e8).toBeLessThan(0.9 * scalar);
  });
});
