import { type Backend, BLOCK_LINEARS, LineageError, type LinearLayer, type LlamaModel } from '@lineage/core';
import { SHARED_INPUT, StatsCollector, statNames } from './statistics.js';
import { type WalkProgress, walkLayers } from './walk.js';

/**
 * One decoder block as the sequential (GPTQ-style) walk presents it to a compression method, before the
 * block's outputs are computed: the Hessians of its linears' inputs come from calibration inputs that went
 * through every earlier block as the method left it (compressed), not through the parent's.
 */
export interface SequentialBlock {
  readonly index: number;
  readonly numLayers: number;
  /** Full names of the block's linear layers (`model.layers.{index}.{slot}`), in forward order. */
  readonly layers: readonly string[];
  /** Calibration tokens the statistics were taken over. */
  readonly tokens: number;
  /**
   * H = Σ xᵀx of a linear layer's input (float64, [in, in], as `CalibrationStats.hessian` gives it): q/k/v
   * share one, gate/up share one. All four are taken in one pass through the block as it was when visited.
   */
  hessian(layer: string): Promise<Float64Array>;
  /** Mean of the layer's input, [in]. */
  mean(layer: string): Promise<Float64Array>;
  getLinear(layer: string): LinearLayer;
  /** Replaces one of the block's linears (its compressed version); the walk then runs the block with it. */
  setLinear(layer: string, replacement: LinearLayer): void;
}

/** What a method does with each block: compress its linears from the block's Hessians and set them. */
export type SequentialVisit = (block: SequentialBlock) => void | Promise<void>;

export interface SequentialWalkOptions {
  /** Largest micro-batch in padded tokens (default 512). */
  microBatchTokens?: number;
  onProgress?: (p: WalkProgress) => void;
  /** See WalkOptions.collectGarbage. */
  collectGarbage?: () => void;
}

export interface SequentialWalkResult {
  tokens: number;
  /** Wall time of the whole walk, the visits included. */
  seconds: number;
}

/**
 * Walks `model` block by block over the calibration sequences: for block i it collects the input Hessians of
 * the block's linears (calibrate's StatsCollector, one pass through the block), calls `visit` — which may
 * replace the block's linears with compressed ones — and then computes the block's outputs with whatever
 * `visit` left, so block i+1 sees inputs that passed through the compressed blocks 0..i (GPTQ's sequential
 * calibration). `model` is changed in place by the visits: pass a copy of the parent.
 */
export async function sequentialWalk(
  model: LlamaModel,
  backend: Backend,
  sequences: readonly Int32Array[],
  visit: SequentialVisit,
  options: SequentialWalkOptions = {},
): Promise<SequentialWalkResult> {
  const tokens = sequences.reduce((a, s) => a + s.length, 0);
  const r = await walkLayers(model, backend, sequences, {
    ...options,
    onLayer: async (step) => {
      const collector = new StatsCollector(model.config, ['hessian']);
      await step.run(collector);
      const stats = collector.finishLayer(step.index);
      const prefix = `model.layers.${step.index}.`;
      const slotOf = (layer: string) => {
        const slot = layer.startsWith(prefix) ? layer.slice(prefix.length) : undefined;
        if (!slot || !(BLOCK_LINEARS as readonly string[]).includes(slot))
          throw new LineageError(`'${layer}' is not a linear layer of block ${step.index}`);
        return slot as (typeof BLOCK_LINEARS)[number];
      };
      const tensor = (layer: string, kind: 'hessian' | 'mean'): Float64Array => {
        const slot = slotOf(layer);
        const key = statNames[kind](`${prefix}${SHARED_INPUT[slot] ?? slot}`);
        const t = stats.get(key);
        if (!t) throw new Error(`sequential walk: no statistic '${key}' was collected`);
        return t.data as Float64Array;
      };
      await visit({
        index: step.index,
        numLayers: step.numLayers,
        layers: BLOCK_LINEARS.map((s) => `${prefix}${s}`),
        tokens,
        hessian: async (layer) => tensor(layer, 'hessian'),
        mean: async (layer) => tensor(layer, 'mean'),
        getLinear: (layer) => step.getLinear(slotOf(layer)),
        setLinear: (layer, replacement) => step.setLinear(slotOf(layer), replacement),
      });
    },
  });
  return { tokens, seconds: r.seconds };
}
