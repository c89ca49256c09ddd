import { type Matrix64, matrix64 } from './matrix.js';

/**
 * Seeded PRNG: the same generator as `Random` in @lineage/core (mulberry32 over a splitmix-hashed seed,
 * Box–Muller normals), so a seed gives the same stream, and randomized SVDs the same result, as before the
 * engine left @lineage/svd. Kept here so the engine has no dependency.
 */
export class Rng {
  private s: number;
  constructor(seed: number) {
    let z = (seed >>> 0) + 0x9e3779b9;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    this.s = (z ^ (z >>> 16)) >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

/** Seeded m×n matrix of independent standard normals (the same entries for the same seed). */
export function gaussian64(rows: number, cols: number, seed: number): Matrix64 {
  const rng = new Rng(seed);
  const a = matrix64(rows, cols);
  for (let i = 0; i < a.data.length; i++) a.data[i] = rng.normal();
  return a;
}
