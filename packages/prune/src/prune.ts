import {
  keepFfn,
  keepHeads,
  keepHidden,
  keepKvGroups,
  keepLayers,
  LineageError,
  type LlamaConfig,
  type LlamaModel,
} from '@lineage/core';
import { type Importance, topK } from './importance.js';

export interface PruneOptions {
  /**
   * The decoder layers to keep (parent indices), instead of the `target.numLayers` best by
   * `importance.layers` (e.g. the layers around the contiguous block whose removal costs least).
   */
  keepLayers?: readonly number[];
}

/**
 * `model` sliced to `target` (a config from `prunedConfig`) by importance, uniformly across layers: the KV
 * groups of highest importance, within each kept group its most important query heads (heads are ranked
 * within their group, so every group keeps as many), the most important FFN neurons of each layer, the most
 * important hidden channels (one set for the shared residual stream), then the most important layers. Every
 * step is one of core's surgery primitives, so a factored layer stays factored (`select`). Kept indices stay
 * in the parent's order.
 */
export function pruneToShape(
  model: LlamaModel,
  importance: Importance,
  target: LlamaConfig,
  options: PruneOptions = {},
): LlamaModel {
  const c = model.config;
  const L = c.numLayers;
  const G = c.numHeads / c.numKvHeads;
  if (target.headDim !== c.headDim)
    throw new LineageError(`pruning keeps the head size (${c.headDim}), the target has ${target.headDim}`);
  let m = model;
  // KV groups first: the head scores are then read through the map from kept group to parent group
  let groups: Int32Array[] = Array.from({ length: L }, () =>
    Int32Array.from({ length: c.numKvHeads }, (_, i) => i),
  );
  if (target.numKvHeads < c.numKvHeads) {
    groups = importance.kvGroups.map((s) => topK(s, target.numKvHeads));
    m = keepKvGroups(m, groups);
  }
  const perGroup = target.numHeads / target.numKvHeads;
  if (perGroup < G) {
    // new head index j·G + i is parent head groups[j]·G + i
    const heads = groups.map((gs, l) => {
      const keep: number[] = [];
      gs.forEach((g, j) => {
        const scores = importance.heads[l]!.subarray(g * G, (g + 1) * G);
        for (const i of topK(scores, perGroup)) keep.push(j * G + i);
      });
      return keep;
    });
    m = keepHeads(m, heads);
  }
  if (target.intermediateSize < c.intermediateSize)
    m = keepFfn(
      m,
      importance.neurons.map((s) => topK(s, target.intermediateSize)),
    );
  if (target.hiddenSize < c.hiddenSize) m = keepHidden(m, topK(importance.channels, target.hiddenSize));
  const layers = keptLayers(importance, L, target, options);
  if (layers.length < L) m = keepLayers(m, layers);
  if (m === model) m = model.clone();
  return m;
}

/** The parent layers `pruneToShape` keeps, ascending: `options.keepLayers`, else the most important. */
export function keptLayers(
  importance: Importance,
  parentLayers: number,
  target: LlamaConfig,
  options: PruneOptions = {},
): Int32Array {
  const layers = options.keepLayers
    ? Int32Array.from([...options.keepLayers].sort((a, b) => a - b))
    : target.numLayers < parentLayers
      ? topK(importance.layers, target.numLayers)
      : Int32Array.from({ length: parentLayers }, (_, l) => l);
  if (layers.length !== target.numLayers)
    throw new LineageError(`keepLayers lists ${layers.length} layers, the target has ${target.numLayers}`);
  return layers;
}
