import { Random } from '@lineage/core';
import { describeLayerKind, uniform } from '@lineage/core/testing';
import { randomIncoherence } from '@lineage/quant';
import { describe, expect, it } from 'vitest';
import { QLR_KIND, QlrLinear, type QlrParts } from './qlr-linear.js';

function codes(n: number, bits: number, seed: number): Int32Array {
  const r = new Random(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r.next() * 2 ** bits));
}

/** A qlr layer with random codes: Q at 2 bits (one scale), rank `kq` at 4 bits, `ft` 16-bit ranks. */
function make(
  o: { out: number; in: number; bias: boolean; seed: number },
  kq: number,
  ft: number,
  hadamard: boolean,
): QlrLinear {
  const { out: m, in: n, seed } = o;
  const p: QlrParts = {
    out: m,
    in: n,
    q: { bits: 2, codes: codes(m * n, 2, seed), scales: Float32Array.of(0.25) },
    ...(kq > 0
      ? {
          lt: {
            bits: 4,
            codes: codes(kq * m, 4, seed + 1),
            scales: Float32Array.from({ length: kq }, (_, i) => 0.05 + 0.01 * i),
          },
          r: {
            bits: 4,
            codes: codes(kq * n, 4, seed + 2),
            scales: Float32Array.from({ length: kq }, (_, i) => 0.04 + 0.01 * i),
          },
        }
      : {}),
    ...(ft > 0 ? { ftRank: ft, lFt: uniform([m, ft], seed + 3), rFt: uniform([ft, n], seed + 4) } : {}),
    ...(hadamard ? randomIncoherence(m, n, seed + 5, 'both') : {}),
    ...(o.bias ? { bias: uniform([m], seed + 6) } : {}),
  };
  return QlrLinear.fromParts(p);
}

describeLayerKind(QLR_KIND, {
  make: (o) => make(o, 2, 1, true),
  label: 'Hadamard, 2 quantized + 1 16-bit ranks',
});
describeLayerKind(QLR_KIND, {
  make: (o) => make(o, 3, 0, false),
  label: 'no transform, all ranks quantized',
});

describe('qlr layer', () => {
  it('counts every stored byte: packed codes, f16 scales, 16-bit ranks, 1-bit signs', () => {
    const l = make({ out: 172, in: 64, bias: false, seed: 1 }, 3, 1, true);
    const tensors = Object.fromEntries(
      [...l.parameters()].map(([k, p]) => [k, [p.value.dtype, p.value.byteLength]]),
    );
    expect(tensors).toEqual({
      Q: ['u2', (172 * 64) / 4],
      Q_scale: ['f16', 2],
      L: ['u4', (3 * 172) / 2],
      L_scale: ['f16', 6],
      R: ['u4', (3 * 64) / 2],
      R_scale: ['f16', 6],
      L_ft: ['f16', 172 * 2],
      R_ft: ['f16', 64 * 2],
      signs_in: ['u1', 8],
      signs_out: ['u1', 22],
    });
    expect(l.stats().bytes).toBe(Object.values(tensors).reduce((s, [, b]) => s + (b as number), 0));
    expect(l.meta()).toEqual({ rank: 4, ftRank: 1, hadamard: true });
    // only the 16-bit ranks train
    expect([...l.parameters()].filter(([, p]) => p.trainable).map(([k]) => k)).toEqual(['L_ft', 'R_ft']);
  });
});
