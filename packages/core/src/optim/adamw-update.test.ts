import { describe, expect, it, vi } from 'vitest';
import { Random } from '../util/random.js';
import { adamwUpdateJs } from './adamw-update.js';
import { ADAMW_CHUNK, adamwWasmKernel, type Update } from './adamw-wasm.js';

/** The update's scalar arguments (b1, b2, shrink, stepSize, sbc2, eps, scale). */
type F = Float32Array;
type Args = Parameters<Update> extends [F, F, F, F, F, ...infer R] ? R : never;

/** Values of every kind the update meets: ordinary, zeros, denormals, huge and tiny, both signs. */
function mixed(rng: Random, n: number, scaleOf: number, positive = false): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const kind = rng.int(20);
    let x =
      kind === 0
        ? 0
        : kind === 1
          ? 1e-42 * (1 + rng.int(1000)) // denormal
          : kind === 2
            ? 1e30 * rng.next()
            : kind === 3
              ? 1e-30 * rng.next()
              : scaleOf * (rng.next() * 2 - 1);
    if (positive) x = Math.abs(x);
    else if (rng.int(2)) x = -x;
    a[i] = x;
  }
  return a;
}

/** The same update through the JS loop and the wasm kernel, from identical copies; bits compared. */
function compare(n: number, args: Args, seed: number, inPlace: boolean): void {
  const k = adamwWasmKernel();
  if (!k) throw new Error('no wasm SIMD on this platform');
  const rng = new Random(seed);
  const w0 = mixed(rng, n, 0.1);
  const g = mixed(rng, n, 0.01);
  const m = mixed(rng, n, 0.001);
  const v = mixed(rng, n, 1e-5, true);
  const run = (f: typeof adamwUpdateJs) => {
    const [w0c, mc, vc] = [w0.slice(), m.slice(), v.slice()];
    const w = inPlace ? w0c : new Float32Array(n).fill(7);
    f(w0c, w, g, mc, vc, ...args);
    if (!inPlace) expect(w0c).toEqual(w0); // w0 read only
    return [w, mc, vc];
  };
  const js = run(adamwUpdateJs);
  const wasm = run(k);
  for (let a = 0; a < 3; a++) {
    const x = new Uint32Array(js[a]!.buffer);
    const y = new Uint32Array(wasm[a]!.buffer);
    for (let i = 0; i < n; i++) {
      if (x[i] === y[i]) continue;
      // NaN (inf·0, inf/inf from the huge values) is NaN either way; its payload bits are not specified
      if (Number.isNaN(js[a]![i]) && Number.isNaN(wasm[a]![i])) continue;
      throw new Error(
        `array ${'wmv'[a]} differs at ${i} of ${n}: ${js[a]![i]} (JS) vs ${wasm[a]![i]} (wasm)`,
      );
    }
  }
}

describe('adamwUpdate in wasm SIMD', () => {
  const typical: Args = [
    0.9,
    0.999,
    1 - 3e-4 * 0.01,
    3e-4 / (1 - 0.9 ** 3),
    Math.sqrt(1 - 0.999 ** 3),
    1e-8,
    1,
  ];
  const clipped: Args = [0.85, 0.995, 0.97, 1.7e-3, 0.31, 1e-6, 0.4370129];
  const lengths = [0, 1, 3, 4, 5, 1023, ADAMW_CHUNK - 1, ADAMW_CHUNK + 5, 100003];

  for (const inPlace of [false, true]) {
    it(`equals the JS loop bit for bit (${inPlace ? 'in place' : 'into a fresh array'})`, () => {
      lengths.forEach((n, i) => {
        compare(n, typical, 10 + i, inPlace);
        compare(n, clipped, 100 + i, inPlace);
      });
    });
  }

  it('equals the JS loop bit for bit at scale and shrink extremes', () => {
    compare(4099, [0.9, 0.999, 1, 1e-3, 1e-4, 1e-8, 1e20], 7, true); // g·scale overflows f32
    compare(4099, [0.9, 0.999, 0.5, 1e30, 0.9999, 1e-30, 1e-30], 8, false);
    compare(4099, [0, 0, 0, 1, 1, 0, 3], 9, true);
  });

  it('falls back to the JS loop where there is no WebAssembly', async () => {
    vi.resetModules();
    vi.stubGlobal('WebAssembly', undefined);
    try {
      const fresh = await import('./adamw-wasm.js');
      expect(fresh.adamwWasmKernel()).toBeNull();
      const { adamwUpdate } = await import('./adamw-update.js');
      const [w, m, v] = [new Float32Array([1, -2, 3]), new Float32Array(3), new Float32Array(3)];
      const [w2, m2, v2] = [w.slice(), m.slice(), v.slice()];
      const g = new Float32Array([0.5, 0.25, -1]);
      adamwUpdate(w, w, g, m, v, 0.9, 0.999, 0.99, 1e-3, 0.1, 1e-8, 1);
      adamwUpdateJs(w2, w2, g, m2, v2, 0.9, 0.999, 0.99, 1e-3, 0.1, 1e-8, 1);
      expect([w, m, v]).toEqual([w2, m2, v2]);
    } finally {
      vi.unstubAllGlobals();
      vi.resetModules();
    }
  });
});
