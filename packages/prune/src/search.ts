import { type LlamaConfig, OptionError } from '@lineage/core';
import { type Axis, denseParams, prunedConfig } from './shape.js';

export interface SearchSpace {
  /** Axes that may be cut; the others keep the parent's size. */
  axes: readonly Axis[];
  /** Hidden and FFN widths are multiples of this. */
  multipleOf: number;
  /** Cut whole KV groups only (query heads follow their group). */
  kvGroups?: boolean;
  /** Whether the head is untied (its parameters count). */
  untiedHead: boolean;
}

/** A shape the search considers, with its parameter count. */
export interface Candidate {
  config: LlamaConfig;
  params: number;
}

/** Widths from `max` down to ⌈minFraction·max⌉ in steps of 5%, rounded down to multiples of `m`. */
function widths(max: number, m: number, minFraction: number): number[] {
  const out = new Set<number>([max]);
  for (let f = 0.95; f >= minFraction - 1e-9; f -= 0.05) {
    const v = Math.floor((max * f) / m) * m;
    if (v >= m) out.add(v);
  }
  return [...out];
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let v = from; v >= to; v--) out.push(v);
  return out;
}

/**
 * Every shape of the grid over the chosen axes, with its parameter count. `wide` spans widths down to 5% and
 * every depth; otherwise the grid is ModelOpt's: the top 60% of width choices and 80% of depth choices.
 */
function grid(parent: LlamaConfig, s: SearchSpace, wide: boolean): Candidate[] {
  const has = (a: Axis) => s.axes.includes(a);
  const minW = wide ? 0.05 : 0.4;
  const G = parent.numHeads / parent.numKvHeads;
  const hidden = has('hidden') ? widths(parent.hiddenSize, s.multipleOf, minW) : [parent.hiddenSize];
  const ffn = has('ffn') ? widths(parent.intermediateSize, s.multipleOf, minW) : [parent.intermediateSize];
  const layers = has('layers')
    ? range(parent.numLayers, wide ? 1 : Math.max(1, Math.ceil(0.2 * parent.numLayers)))
    : [parent.numLayers];
  const kvs =
    has('kv-heads') || (s.kvGroups && has('heads'))
      ? range(parent.numKvHeads, wide ? 1 : Math.max(1, Math.ceil(minW * parent.numKvHeads)))
      : [parent.numKvHeads];
  const perGroup = has('heads') && !s.kvGroups ? range(G, wide ? 1 : Math.max(1, Math.ceil(minW * G))) : [G];
  const out: Candidate[] = [];
  for (const kv of kvs)
    for (const p of perGroup)
      for (const h of hidden)
        for (const f of ffn)
          for (const l of layers) {
            const config = prunedConfig(
              parent,
              { layers: l, hidden: h, ffn: f, kvHeads: kv, heads: kv * p },
              s.multipleOf,
            );
            out.push({ config, params: denseParams(config, s.untiedHead) });
          }
  return out;
}

const isWidthOnly = (c: LlamaConfig, p: LlamaConfig) => c.numLayers === p.numLayers;
const isDepthOnly = (c: LlamaConfig, p: LlamaConfig) =>
  c.hiddenSize === p.hiddenSize &&
  c.intermediateSize === p.intermediateSize &&
  c.numHeads === p.numHeads &&
  c.numKvHeads === p.numKvHeads;

/**
 * The `k` largest shapes within `budget` parameters (ModelOpt's searcher), keeping room for the largest
 * width-only and the largest depth-only shape when the axes allow them, so a search always weighs width
 * against depth. Falls back to a wider grid (widths to 5%, any depth) when the usual one has nothing within
 * the budget; a budget nothing fits is a one-line error.
 */
export function candidates(parent: LlamaConfig, budget: number, k: number, s: SearchSpace): Candidate[] {
  const parentParams = denseParams(parent, s.untiedHead);
  if (budget >= parentParams)
    throw new OptionError(
      '',
      'params',
      undefined,
      `a budget of ${budget} parameters is not below the parent's ${parentParams} (nothing to prune)`,
    );
  let pool = grid(parent, s, false).filter((c) => c.params <= budget);
  if (!pool.length) pool = grid(parent, s, true).filter((c) => c.params <= budget);
  if (!pool.length)
    throw new OptionError(
      '',
      'params',
      undefined,
      `a budget of ${budget} parameters is too small: no shape over the axes ${s.axes.join(',')} has so few (the smallest has ${Math.min(...grid(parent, s, true).map((c) => c.params))})`,
    );
  pool.sort((a, b) => b.params - a.params || b.config.numLayers - a.config.numLayers);
  if (k < 2) return pool.slice(0, 1);
  const kinds = [isWidthOnly, isDepthOnly];
  // the largest shapes, less as many as it takes to fit the best of each missing kind
  for (let head = k; head >= 0; head--) {
    const top = pool.slice(0, head);
    const extras = kinds
      .filter((want) => !top.some((c) => want(c.config, parent)))
      .map((want) => pool.find((c) => want(c.config, parent)))
      .filter((c): c is Candidate => c !== undefined && !top.includes(c));
    if (head + extras.length <= k) return [...top, ...new Set(extras)].sort((a, b) => b.params - a.params);
  }
  return pool.slice(0, k);
}

/** A `--params` value as a parameter count: a fraction in (0, 1) of the parent's, or a count. */
export function budgetOf(params: number, parentParams: number): number {
  if (params > 0 && params < 1) return Math.floor(params * parentParams);
  if (Number.isInteger(params) && params >= 1) return params;
  throw new OptionError('', 'params', params, 'must be a fraction in (0, 1) or a whole parameter count');
}
