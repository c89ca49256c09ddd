import { describe, expect, it } from 'vitest';
import { syrkUpper64 } from './syrk.js';
import { gaussian, naiveMatmul } from './test-helpers.js';

describe('syrkUpper64', () => {
  for (const [rows, n] of [
    [1, 1],
    [3, 7],
    [256, 130],
    [300, 257],
    [17, 400],
  ] as const) {
    it(`G += α·XᵀX on and above the diagonal blocks, below them untouched (${rows} rows × ${n})`, () => {
      // X sits inside a wider array (offset 3, leading dimension n + 5); G is a view with its own stride.
      const ldx = n + 5;
      const x = gaussian(rows + 1, ldx, rows + n);
      const X = gaussian(rows, n, 0);
      for (let r = 0; r < rows; r++) for (let c = 0; c < n; c++) X.data[r * n + c] = x.data[3 + r * ldx + c]!;
      const ref = naiveMatmul(X, X, true, false);
      const ldg = n + 2;
      const g = new Float64Array(2 + n * ldg).fill(0.5);
      syrkUpper64(rows, n, 2, x.data, 3, ldx, g, 2, ldg);
      let err = 0;
      let scale = 0;
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) {
          const v = g[2 + i * ldg + j]!;
          if (Math.floor(j / 128) < Math.floor(i / 128)) expect(v).toBe(0.5);
          else if (j >= i) {
            err = Math.max(err, Math.abs(v - 0.5 - 2 * ref.data[i * n + j]!));
            scale = Math.max(scale, Math.abs(2 * ref.data[i * n + j]!));
          }
        }
      expect(err / scale).toBeLessThan(1e-14);
      expect(g[0]).toBe(0.5); // before the view
      expect(g[1]).toBe(0.5);
    });
  }

  it('rejects sizes and views that do not fit', () => {
    expect(() => syrkUpper64(-1, 2, 1, new Float64Array(4), 0, 2, new Float64Array(4), 0, 2)).toThrow(
      /^syrkUpper64: sizes must be non-negative integers/,
    );
    expect(() => syrkUpper64(3, 2, 1, new Float64Array(4), 0, 2, new Float64Array(4), 0, 2)).toThrow(
      'syrkUpper64: X (3×2, leading dimension 2) overruns its array',
    );
    expect(() => syrkUpper64(2, 2, 1, new Float64Array(4), 0, 2, new Float64Array(3), 0, 2)).toThrow(
      'syrkUpper64: G (2×2, leading dimension 2) overruns its array',
    );
  });
});
