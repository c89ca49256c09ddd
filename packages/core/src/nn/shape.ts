import { LineageError } from '../util/errors.js';
import type { LlamaConfig } from './config.js';

/**
 * The sizes that define a Llama shape, in `LlamaConfig`'s (Hugging Face's) vocabulary: `hiddenSize` is the
 * model width, `intermediateSize` the FFN width. Unset fields are the parent's.
 */
export interface ModelShape {
  hiddenSize?: number;
  intermediateSize?: number;
  numLayers?: number;
  numHeads?: number;
  numKvHeads?: number;
  /**
   * Per-head width. Default: the parent's when neither `hiddenSize` nor `numHeads` changes, else
   * hiddenSize / numHeads (a fresh model). Pruning passes it explicitly: removing heads or channels keeps it.
   */
  headDim?: number;
}

/**
 * `parent` with another shape (vocabulary, context, RoPE, norms and biases kept), validated: the shape
 * arithmetic of from-scratch baselines (`initLike`) and of the surgery primitives.
 */
export function withShape(parent: LlamaConfig, shape: ModelShape): LlamaConfig {
  for (const [k, v] of Object.entries(shape))
    if (v !== undefined && !(Number.isInteger(v) && v >= 1))
      throw new LineageError(`${k} must be a positive integer, got ${v}`);
  const hiddenSize = shape.hiddenSize ?? parent.hiddenSize;
  const numHeads = shape.numHeads ?? parent.numHeads;
  const numKvHeads =
    shape.numKvHeads ??
    (shape.numHeads !== undefined ? Math.min(numHeads, parent.numKvHeads) : parent.numKvHeads);
  let headDim = shape.headDim;
  if (headDim === undefined) {
    if (shape.hiddenSize === undefined && shape.numHeads === undefined) headDim = parent.headDim;
    else if (hiddenSize % numHeads !== 0)
      throw new LineageError(`hiddenSize ${hiddenSize} is not a multiple of numHeads ${numHeads}`);
    else headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw new LineageError(`head dim ${headDim} must be even for RoPE`);
  if (numHeads % numKvHeads !== 0)
    throw new LineageError(`numHeads ${numHeads} is not a multiple of numKvHeads ${numKvHeads}`);
  return {
    ...parent,
    hiddenSize,
    intermediateSize: shape.intermediateSize ?? parent.intermediateSize,
    numLayers: shape.numLayers ?? parent.numLayers,
    numHeads,
    numKvHeads,
    headDim,
  };
}

/** A config's shape (every field set). */
export function shapeOf(config: LlamaConfig): Required<ModelShape> {
  const { hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim } = config;
  return { hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim };
}
