import { type Json, LineageError, type LinearLayer, type LlamaModel, type Progress } from '@lineage/core';
import {
  type Allocation,
  allocateRanks,
  checkEnergyBudget,
  fixedRanks,
  type LayerSpectrum,
  maxSavingRank,
  type RankPlan,
} from './allocation.js';
import {
  factorize,
  type GramSource,
  type LayerFactorization,
  truncate,
  truncationError,
  whiteningOf,
} from './factorize.js';
import { LowRankLinear } from './low-rank-linear.js';

export interface DecomposeOptions {
  /** Target fraction of the decomposable parameters (of the dense parent: Σ m·n), in (0, 1). */
  fraction?: number;
  /** Or one rank for every layer (layers where it saves nothing stay dense). */
  rank?: number;
  allocation?: Allocation;
  /** Input Grams for SVD-LLM whitening (minimise the output error instead of the weight error). */
  gram?: GramSource;
  /** Also decompose an untied output head (default false: the block linears only). */
  includeHead?: boolean;
  progress?: Progress;
}

/** What happened to one layer. */
export interface LayerOutcome {
  name: string;
  shape: [number, number];
  /** Rank after this step; undefined: dense. */
  rank: number | undefined;
  params: number;
  /** Why it is dense, or kept as it was. */
  note?: string;
  /** Relative squared error of the truncation, ‖discarded σ‖² / ‖σ‖² (whitened when data-aware). */
  error?: number;
  /** Diagonal loading λ the whitening needed. */
  lambda?: number;
}

export interface DecomposeResult {
  model: LlamaModel;
  plan: RankPlan;
  layers: LayerOutcome[];
}

/** The layers a low-rank method may factor: every block linear, and the untied head on request. */
export function decomposableLayers(model: LlamaModel, includeHead = false): [string, LinearLayer][] {
  return model.linearLayers().filter(([name]) => name !== 'lm_head' || includeHead);
}

/**
 * Throws what decomposeModel would throw about `fractions` of `model` (a rank 0 somewhere, nothing saved,
 * a budget below rank 1), from the layers' shapes alone: before any work, so that a family refused by
 * one of its sizes says so before it starts. Layers of a later, progressive member are lowered from these
 * shapes with the same per-layer ranks, so what passes here passes there.
 */
export function checkFractions(
  model: LlamaModel,
  fractions: readonly number[],
  o: { includeHead?: boolean; allocation?: Allocation },
): void {
  const spectra: LayerSpectrum[] = decomposableLayers(model, o.includeHead).map(([name, l]) => ({
    name,
    out: l.outFeatures,
    in: l.inFeatures,
    ...(l instanceof LowRankLinear ? { currentRank: l.rank } : {}),
  }));
  if (!spectra.length) return;
  for (const f of fractions) {
    if ((o.allocation ?? 'uniform') === 'uniform') allocateRanks(spectra, f, 'uniform');
    else checkEnergyBudget(spectra, f);
  }
}

/**
 * A copy of `model` whose decomposable layers are cut to the ranks that fit `fraction` of the dense
 * parameter count. Layers already factored are only ever lowered (their factors are re-decomposed through
 * a QR of each factor, not densified); layers where a rank saves nothing stay dense, and the outcome says so.
 * `denseParams` fixes what the fraction is of (default: Σ m·n of these layers — the dense parent's count).
 */
export async function decomposeModel(model: LlamaModel, o: DecomposeOptions): Promise<DecomposeResult> {
  if ((o.fraction === undefined) === (o.rank === undefined))
    throw new LineageError('give either a target fraction or a rank');
  const copy = model.clone();
  const layers = decomposableLayers(copy, o.includeHead);
  const progress = o.progress;
  const factorizations = new Map<string, LayerFactorization>();
  const factorOf = async (name: string, layer: LinearLayer) => {
    let f = factorizations.get(name);
    if (!f) {
      const whitening = o.gram
        ? whiteningOf(await o.gram.hessian(name), layer.inFeatures, name, o.gram.path)
        : undefined;
      f = factorize(layer, whitening, name);
      factorizations.set(name, f);
    }
    return f;
  };
  const needSpectra = o.rank === undefined && (o.allocation ?? 'uniform') === 'energy';
  const spectra: LayerSpectrum[] = [];
  progress?.start(needSpectra ? 'spectra' : 'decompose', layers.length);
  for (const [name, layer] of layers) {
    const current = layer instanceof LowRankLinear ? layer.rank : undefined;
    if (layer.kind !== 'linear' && current === undefined) {
      throw new LineageError(
        `layer '${name}' is a '${layer.kind}' layer; low-rank methods decompose dense or low-rank layers`,
        undefined,
        { inModel: true },
      );
    }
    const s: LayerSpectrum = {
      name,
      out: layer.outFeatures,
      in: layer.inFeatures,
      ...(current !== undefined ? { currentRank: current } : {}),
    };
    if (needSpectra) {
      s.sigma = (await factorOf(name, layer)).sigma;
      progress?.tick();
    }
    spectra.push(s);
  }
  if (needSpectra) progress?.start('decompose', layers.length);
  const plan =
    o.rank !== undefined ? fixedRanks(spectra, o.rank) : allocateRanks(spectra, o.fraction!, o.allocation);
  const outcomes: LayerOutcome[] = [];
  for (const [i, [name, layer]] of layers.entries()) {
    const c = plan.layers[i]!;
    const shape: [number, number] = [c.out, c.in];
    const current = layer instanceof LowRankLinear ? layer.rank : undefined;
    if (c.rank === undefined) {
      outcomes.push({
        name,
        shape,
        rank: undefined,
        params: c.params,
        note: `dense: a rank saves parameters only below ${maxSavingRank(c.out, c.in) + 1}`,
      });
    } else if (c.rank === current) {
      outcomes.push({ name, shape, rank: c.rank, params: c.params, note: 'kept: already at this rank' });
    } else {
      const f = await factorOf(name, layer);
      copy.setLinear(name, truncate(f, c.rank));
      outcomes.push({
        name,
        shape,
        rank: c.rank,
        params: c.params,
        error: truncationError(f, c.rank),
        ...(f.whitening ? { lambda: f.whitening.lambda } : {}),
      });
      factorizations.delete(name);
    }
    progress?.tick();
  }
  progress?.end();
  return { model: copy, plan, layers: outcomes };
}

/** Ranks per layer as recorded in a lineage record ('dense' for layers left dense). */
export function ranksRecord(layers: readonly LayerOutcome[]): Record<string, Json> {
  return Object.fromEntries(layers.map((l) => [l.name, l.rank ?? 'dense']));
}
