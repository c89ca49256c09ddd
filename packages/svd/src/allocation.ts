import { LineageError, OptionError } from '@lineage/core';

/**
 * The largest rank at which W ≈ A·B still stores fewer numbers than W: r·(m + n) < m·n. At or above
 * it the layer stays dense.
 */
export function maxSavingRank(out: number, inp: number): number {
  return Math.ceil((out * inp) / (out + inp)) - 1;
}

/** SVD-LLM's rank for a parameter ratio p: ⌊p·m·n/(m + n)⌋. */
export function rankForFraction(fraction: number, out: number, inp: number): number {
  return Math.floor((fraction * out * inp) / (out + inp));
}

export type Allocation = 'uniform' | 'energy';

/** What the allocator knows about one decomposable layer. */
export interface LayerSpectrum {
  name: string;
  out: number;
  in: number;
  /**
   * Singular values, descending (of W, or of W·S when data-aware); only `energy` needs them. For a layer
   * that is already factored, its current rank's worth.
   */
  sigma?: Float64Array;
  /** Rank it has now when already factored (ranks are only ever lowered). */
  currentRank?: number;
}

/** One layer's share: `rank` undefined means it stays dense. */
export interface RankChoice {
  name: string;
  out: number;
  in: number;
  rank: number | undefined;
  /** Parameters it will store (the bias not included). */
  params: number;
}

export interface RankPlan {
  layers: RankChoice[];
  /** Σ m·n over the decomposable layers (the dense parent's count). */
  denseParams: number;
  /** Σ params of the plan. */
  params: number;
  /** params / denseParams. */
  fraction: number;
}

function checkFraction(fraction: number): void {
  if (!(fraction > 0 && fraction < 1))
    throw new OptionError('', 'params', fraction, 'must be a fraction in (0, 1)');
}

function choice(l: LayerSpectrum, rank: number | undefined): RankChoice {
  return {
    name: l.name,
    out: l.out,
    in: l.in,
    rank,
    params: rank === undefined ? l.out * l.in : rank * (l.out + l.in),
  };
}

function plan(layers: RankChoice[], denseParams: number): RankPlan {
  const params = layers.reduce((s, l) => s + l.params, 0);
  return { layers, denseParams, params, fraction: params / denseParams };
}

/**
 * Ranks for a target fraction of the decomposable parameters (those of the dense parent: Σ m·n).
 * - `uniform`: every layer gets SVD-LLM's ⌊p·m·n/(m+n)⌋ (capped at its current rank); layers where that
 *   saves nothing stay dense.
 * - `energy`: one global budget spent greedily on the components with the most singular-value energy per
 *   stored parameter, σᵢ² / ‖σ‖² / (m + n) — relative energy, so that layers of different scales compete
 *   on the share of their own signal they keep. Every layer keeps at least rank 1; a layer whose rank
 *   reaches the break-even point becomes dense.
 */
export function allocateRanks(
  layers: readonly LayerSpectrum[],
  fraction: number,
  mode: Allocation = 'uniform',
): RankPlan {
  checkFraction(fraction);
  if (!layers.length) throw new LineageError('no layers to decompose');
  const denseParams = layers.reduce((s, l) => s + l.out * l.in, 0);
  let out: RankChoice[];
  if (mode === 'uniform') {
    out = layers.map((l) => {
      const r = Math.min(rankForFraction(fraction, l.out, l.in), l.currentRank ?? Number.POSITIVE_INFINITY);
      if (r < 1) {
        throw new OptionError(
          '',
          'params',
          fraction,
          `leaves layer '${l.name}' [${l.out}×${l.in}] rank 0; the smallest fraction giving every layer rank 1 is ${((l.out + l.in) / (l.out * l.in)).toPrecision(3)}`,
        );
      }
      return choice(l, r > maxSavingRank(l.out, l.in) && l.currentRank === undefined ? undefined : r);
    });
  } else if (mode === 'energy') {
    out = allocateByEnergy(layers, fraction * denseParams, fraction);
  } else throw new LineageError(`unknown rank allocation '${String(mode)}' (uniform, energy)`);
  if (out.every((l) => l.rank === undefined)) {
    throw new OptionError(
      '',
      'params',
      fraction,
      'saves nothing: every layer would stay dense (ranks that small save no parameters)',
    );
  }
  return plan(out, denseParams);
}

/**
 * The same rank r for every layer (capped at a factored layer's current rank); layers where r saves
 * nothing stay dense — and when that is every layer, it is an error.
 */
export function fixedRanks(layers: readonly LayerSpectrum[], rank: number): RankPlan {
  if (!Number.isInteger(rank) || rank < 1)
    throw new OptionError('', 'rank', rank, 'must be a whole number ≥ 1');
  if (!layers.length) throw new LineageError('no layers to decompose');
  const denseParams = layers.reduce((s, l) => s + l.out * l.in, 0);
  const out = layers.map((l) => {
    if (l.currentRank !== undefined) return choice(l, Math.min(rank, l.currentRank));
    return choice(l, rank > maxSavingRank(l.out, l.in) ? undefined : rank);
  });
  if (out.every((l) => l.rank === undefined)) {
    // the layer with the most room: no rank below its break-even is too large for every layer
    const l = layers.reduce((x, y) => (maxSavingRank(y.out, y.in) > maxSavingRank(x.out, x.in) ? y : x));
    throw new OptionError(
      '',
      'rank',
      rank,
      `saves nothing: every layer would stay dense (the widest, '${l.name}' [${l.out}×${l.in}], saves only below rank ${maxSavingRank(l.out, l.in) + 1})`,
    );
  }
  return plan(out, denseParams);
}

/** Energy allocation keeps rank 1 in every layer: a fraction whose budget is below that is an error. */
export function checkEnergyBudget(layers: readonly LayerSpectrum[], fraction: number): void {
  const budget = fraction * layers.reduce((s, l) => s + l.out * l.in, 0);
  const spent = layers.reduce((s, l) => s + l.out + l.in, 0);
  if (spent > budget)
    throw new OptionError(
      '',
      'params',
      fraction,
      `a budget of ${Math.round(budget)} parameters is below rank 1 everywhere (${spent}); raise it`,
    );
}

function allocateByEnergy(layers: readonly LayerSpectrum[], budget: number, fraction: number): RankChoice[] {
  const state = layers.map((l) => {
    if (!l.sigma?.length) throw new LineageError(`energy allocation needs the spectrum of '${l.name}'`);
    let total = 0;
    for (const s of l.sigma) total += s * s;
    const cap = Math.min(l.currentRank ?? Number.POSITIVE_INFINITY, l.sigma.length);
    return { l, total: total || 1, rank: 1, cap, dense: false };
  });
  checkEnergyBudget(layers, fraction);
  let spent = state.reduce((s, x) => s + x.l.out + x.l.in, 0);
  // Greedy over a max-heap keyed by the next component's gain per parameter. Gains fall within a layer
  // (σ descending) and every component of a layer costs the same, so greedy is optimal for this knapsack.
  const gain = (i: number) => {
    const s = state[i]!;
    const sig = s.l.sigma![s.rank]!;
    return (sig * sig) / s.total / (s.l.out + s.l.in);
  };
  const heap: number[] = [];
  const less = (a: number, b: number) => gain(a) < gain(b);
  const push = (i: number) => {
    heap.push(i);
    let k = heap.length - 1;
    while (k > 0) {
      const p = (k - 1) >> 1;
      if (!less(heap[p]!, heap[k]!)) break;
      [heap[p], heap[k]] = [heap[k]!, heap[p]!];
      k = p;
    }
  };
  const pop = (): number => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length) {
      heap[0] = last;
      let k = 0;
      for (;;) {
        const a = 2 * k + 1;
        const b = a + 1;
        let m = k;
        if (a < heap.length && less(heap[m]!, heap[a]!)) m = a;
        if (b < heap.length && less(heap[m]!, heap[b]!)) m = b;
        if (m === k) break;
        [heap[m], heap[k]] = [heap[k]!, heap[m]!];
        k = m;
      }
    }
    return top;
  };
  state.forEach((s, i) => {
    if (s.rank < s.cap) push(i);
  });
  while (heap.length) {
    const i = pop();
    const s = state[i]!;
    const cost = s.l.out + s.l.in;
    if (spent + cost > budget) continue; // this layer's next component does not fit; others may
    s.rank++;
    spent += cost;
    if (s.l.currentRank === undefined && s.rank > maxSavingRank(s.l.out, s.l.in)) {
      // past break-even: dense is cheaper and exact
      s.dense = true;
      spent += s.l.out * s.l.in - s.rank * cost;
      continue;
    }
    if (s.rank < s.cap) push(i);
  }
  return state.map((s) => choice(s.l, s.dense ? undefined : s.rank));
}
