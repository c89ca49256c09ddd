import { describe, expect, it } from 'vitest';
import {
  allocateRanks,
  fixedRanks,
  type LayerSpectrum,
  maxSavingRank,
  rankForFraction,
} from './allocation.js';

const spectrum = (n: number, decay: number) => Float64Array.from({ length: n }, (_, i) => decay ** i);

describe('rank allocation', () => {
  it('break-even and SVD-LLM ranks', () => {
    expect(maxSavingRank(64, 64)).toBe(31); // 32·128 = 64² saves nothing
    expect(32 * 128).toBe(64 * 64);
    expect(maxSavingRank(172, 64)).toBe(46); // 47·236 = 11 092 > 11 008
    expect(46 * 236).toBeLessThan(172 * 64);
    expect(rankForFraction(0.5, 64, 64)).toBe(16);
    expect(rankForFraction(0.3, 172, 64)).toBe(13);
  });

  it('uniform: ⌊p·mn/(m+n)⌋ per layer; the plan counts parameters honestly', () => {
    const layers: LayerSpectrum[] = [
      { name: 'a', out: 64, in: 64 },
      { name: 'b', out: 172, in: 64 },
    ];
    const p = allocateRanks(layers, 0.5);
    expect(p.layers.map((l) => l.rank)).toEqual([16, 23]);
    expect(p.params).toBe(16 * 128 + 23 * 236);
    expect(p.denseParams).toBe(64 * 64 + 172 * 64);
    expect(p.fraction).toBeCloseTo(p.params / p.denseParams, 12);
    expect(p.fraction).toBeLessThanOrEqual(0.5);
  });

  it('uniform respects the current rank of factored layers (ranks only go down)', () => {
    const p = allocateRanks([{ name: 'a', out: 64, in: 64, currentRank: 10 }], 0.5);
    expect(p.layers[0]!.rank).toBe(10);
  });

  it('energy: spends the budget on the layers whose spectrum needs it, within the budget', () => {
    const layers: LayerSpectrum[] = [
      { name: 'flat', out: 64, in: 64, sigma: spectrum(64, 0.99) },
      { name: 'steep', out: 64, in: 64, sigma: spectrum(64, 0.5) },
    ];
    const p = allocateRanks(layers, 0.4, 'energy');
    const [flat, steep] = p.layers;
    expect(flat!.rank!).toBeGreaterThan(steep!.rank!);
    expect(steep!.rank!).toBeGreaterThanOrEqual(1);
    expect(p.params).toBeLessThanOrEqual(0.4 * p.denseParams);
    // nearly all of the budget is used (less than one component of the widest layer left)
    expect(0.4 * p.denseParams - p.params).toBeLessThan(128);
  });

  it('energy: a layer whose rank passes break-even becomes dense', () => {
    const layers: LayerSpectrum[] = [
      { name: 'flat', out: 16, in: 16, sigma: spectrum(16, 1) },
      { name: 'steep', out: 64, in: 64, sigma: spectrum(64, 0.3) },
    ];
    const p = allocateRanks(layers, 0.3, 'energy');
    expect(p.layers[0]!.rank).toBeUndefined();
    expect(p.layers[0]!.params).toBe(256);
  });

  it('a fixed rank: layers where it saves nothing stay dense; saving nothing anywhere is an error', () => {
    const layers: LayerSpectrum[] = [
      { name: 'small', out: 16, in: 16 },
      { name: 'big', out: 64, in: 64 },
    ];
    const p = fixedRanks(layers, 12);
    expect(p.layers.map((l) => l.rank)).toEqual([undefined, 12]);
    expect(p.params).toBe(256 + 12 * 128);
    expect(() => fixedRanks(layers, 32)).toThrow(/rank 32: saves nothing/);
    expect(() => fixedRanks(layers, 0)).toThrow(/≥ 1/);
  });

  it('bad targets: outside (0, 1), saving nothing, rank 0', () => {
    const layers: LayerSpectrum[] = [{ name: 'a', out: 64, in: 64 }];
    expect(() => allocateRanks(layers, 0)).toThrow(/in \(0, 1\)/);
    expect(() => allocateRanks(layers, 1)).toThrow(/in \(0, 1\)/);
    expect(() => allocateRanks(layers, -0.2)).toThrow(/in \(0, 1\)/);
    expect(() => allocateRanks(layers, Number.NaN)).toThrow(/in \(0, 1\)/);
    expect(allocateRanks(layers, 0.999).layers[0]!.rank).toBe(31); // uniform never passes break-even
    expect(() => allocateRanks(layers, 0.01)).toThrow(/rank 0/);
    expect(() => allocateRanks(layers, 0.5, 'bogus' as 'uniform')).toThrow(/unknown rank allocation/);
  });
});
