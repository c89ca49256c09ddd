/** One layer as the pruning sees it: its relearned coefficients and what one kept basis costs. */
export interface PruneLayer {
  /** Effective coefficients s = w² of its pretrained bases. */
  coefficients: Float64Array;
  /** Parameters one basis costs in the exported factors (out + in). */
  cost: number;
  /** Fewest bases this round may leave (≥ 1). */
  min: number;
}

/** Bases by decreasing coefficient (ties: lower index first, so plans are deterministic). */
export function byImportance(s: Float64Array): number[] {
  return [...s.keys()].sort((a, b) => s[b]! - s[a]! || a - b);
}

/** The fewest top bases whose cumulative coefficients reach `tau` of the layer's total. */
export function keptAtThreshold(s: Float64Array, order: readonly number[], tau: number): number {
  const total = s.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return order.length;
  let acc = 0;
  for (let i = 0; i < order.length; i++) {
    acc += s[order[i]!]!;
    if (acc >= tau * total * (1 - 1e-12)) return i + 1;
  }
  return order.length;
}

/**
 * Global pruning: one cumulative threshold τ for every layer (each keeps the fewest top bases whose
 * coefficients reach τ of its total), the largest τ whose kept bases cost at most `budget`. Layers that
 * relearned a flat spectrum keep more bases than layers whose coefficients concentrate.
 */
export function globalCounts(layers: readonly PruneLayer[], budget: number): number[] {
  const orders = layers.map((l) => byImportance(l.coefficients));
  const counts = (tau: number) =>
    layers.map((l, i) =>
      Math.min(l.coefficients.length, Math.max(l.min, keptAtThreshold(l.coefficients, orders[i]!, tau))),
    );
  const cost = (c: number[]) => c.reduce((a, k, i) => a + k * layers[i]!.cost, 0);
  let lo = 0;
  let hi = 1;
  if (cost(counts(hi)) <= budget) return counts(hi);
  for (let it = 0; it < 60; it++) {
    const mid = (lo + hi) / 2;
    if (cost(counts(mid)) <= budget) lo = mid;
    else hi = mid;
  }
  return counts(lo);
}

/** Geometric interpolation from `start` to `end` at step i of n (i = n gives `end`). */
export function geometric(start: number, end: number, i: number, n: number): number {
  if (i >= n) return end;
  return start * (end / start) ** (i / n);
}
