import { HostTensor, LineageError, Linear, Random } from '@lineage/core';
import { describe, expect, it } from 'vitest';
import { factorize, truncate, truncationError, whiteningOf } from './factorize.js';

function layer(out: number, inp: number, seed: number): Linear {
  const r = new Random(seed);
  return new Linear(
    new HostTensor(
      'f32',
      [out, inp],
      Float32Array.from({ length: out * inp }, () => r.normal()),
    ),
  );
}

/** H = Σ xᵀx over `tokens` random inputs with correlated, badly scaled channels. */
function gram(n: number, tokens: number, seed: number): Float64Array {
  const r = new Random(seed);
  const h = new Float64Array(n * n);
  for (let t = 0; t < tokens; t++) {
    const base = r.normal();
    const x = Array.from({ length: n }, (_, i) => (base + r.normal()) * 10 ** (i % 3));
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j]! += x[i]! * x[j]!;
  }
  return h;
}

describe('factorize / truncate', () => {
  it('full rank reproduces W, plain and whitened; whitened factors are balanced', () => {
    const l = layer(8, 6, 1);
    const W = l.denseWeight();
    const w = whiteningOf(gram(6, 200, 2), 6, 'test');
    for (const f of [factorize(l), factorize(l, w)]) {
      const t = truncate(f, 6);
      const d = t.denseWeight();
      for (let i = 0; i < W.length; i++) expect(d[i]).toBeCloseTo(W[i]!, 4);
      const A = t.A.value.toF32();
      const B = t.B.value.toF32();
      for (let j = 0; j < 6; j++) {
        let na = 0;
        let nb = 0;
        for (let i = 0; i < 8; i++) na += A[i * 6 + j]! ** 2;
        for (let i = 0; i < 6; i++) nb += B[j * 6 + i]! ** 2;
        expect(Math.sqrt(na) / Math.sqrt(nb)).toBeCloseTo(1, 4);
      }
    }
  });

  it('whitened truncation minimises the output error ‖(W − W′)S‖, plain the weight error', () => {
    const l = layer(12, 10, 3);
    const W = l.denseWeight();
    const H = gram(10, 500, 4);
    const w = whiteningOf(H, 10, 'test');
    const outErr = (d: Float32Array) => {
      // tr(Δ H Δᵀ)
      let e = 0;
      for (let r = 0; r < 12; r++)
        for (let i = 0; i < 10; i++)
          for (let j = 0; j < 10; j++)
            e += (W[r * 10 + i]! - d[r * 10 + i]!) * H[i * 10 + j]! * (W[r * 10 + j]! - d[r * 10 + j]!);
      return e;
    };
    const fp = factorize(l);
    const fw = factorize(l, w);
    const plain = truncate(fp, 4).denseWeight();
    const aware = truncate(fw, 4).denseWeight();
    expect(outErr(aware)).toBeLessThan(outErr(plain));
    // the whitened σ predict the output error exactly: discarded share of tr(W H Wᵀ)
    expect(outErr(aware) / outErr(new Float32Array(120))).toBeCloseTo(truncationError(fw, 4), 4);
  });

  it('a Gram that is not positive definite is regularised; an empty one is refused', () => {
    const h = new Float64Array(9);
    h[0] = 1; // rank 1
    expect(whiteningOf(h, 3, 'x').lambda).toBeGreaterThan(0);
    expect(() => whiteningOf(new Float64Array(9), 3, 'x')).toThrow(/empty/);
    expect(() => whiteningOf(new Float64Array(8), 3, 'x')).toThrow(/3×3/);
  });

  it('bad Grams and weights are one-line errors naming the layer and the statistics file, each by its own name', () => {
    const nan = gram(3, 20, 1);
    nan[4] = Number.NaN;
    expect(() => whiteningOf(nan, 3, 'l0', 'stats.st')).toThrow(/^stats\.st: the Gram of 'l0' is not finite/);
    const negative = gram(3, 20, 1).map((v) => -v);
    expect(() => whiteningOf(negative, 3, 'l0', 'stats.st')).toThrow(/not positive semi-definite/);
    expect(() => whiteningOf(negative, 3, 'l0')).not.toThrow(/not finite/);
    // positive diagonal, indefinite: no loading up to 10% makes it positive definite
    const indefinite = Float64Array.from([1, 10, 0, 10, 1, 0, 0, 0, 1]);
    expect(() => whiteningOf(indefinite, 3, 'l0', 'stats.st')).toThrow(
      /^stats\.st: the Gram of 'l0' is indefinite/,
    );
    expect(() => whiteningOf(new Float64Array(8), 3, 'l0', 'stats.st')).toThrow(/^stats\.st: .*3×3/);
    // NaN weights reach the decomposition as a LineageError naming the layer, not the SVD's RangeError
    const w = layer(4, 3, 2).denseWeight().slice();
    w[5] = Number.NaN;
    const l = new Linear(new HostTensor('f32', [4, 3], w));
    let e: unknown;
    try {
      factorize(l, undefined, 'model.layers.0.mlp.up_proj');
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(LineageError);
    expect((e as Error).message).toMatch(
      /'model\.layers\.0\.mlp\.up_proj' are not finite \(NaN at element 5\)/,
    );
  });
});
