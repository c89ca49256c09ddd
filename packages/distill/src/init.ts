import {
  HostTensor,
  initModel,
  LineageError,
  type LlamaConfig,
  type LlamaModel,
  Random,
} from '@lineage/core';

/** The numbers people quote for a Llama shape; unset ones are the parent's. */
export interface ModelShape {
  dim?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  /** FFN (intermediate) width. */
  hidden?: number;
}

/** A parent's config with another shape (vocabulary, context, RoPE, norms and biases kept), validated. */
export function configLike(parent: LlamaConfig, shape: ModelShape): LlamaConfig {
  for (const [k, v] of Object.entries(shape))
    if (v !== undefined && !(Number.isInteger(v) && v >= 1))
      throw new LineageError(`${k} must be a positive integer, got ${v}`);
  const dim = shape.dim ?? parent.hiddenSize;
  const heads = shape.heads ?? parent.numHeads;
  const kvHeads =
    shape.kvHeads ?? (shape.heads !== undefined ? Math.min(heads, parent.numKvHeads) : parent.numKvHeads);
  const keepHeadDim = shape.dim === undefined && shape.heads === undefined;
  if (!keepHeadDim && dim % heads !== 0)
    throw new LineageError(`dim ${dim} is not a multiple of heads ${heads}`);
  const headDim = keepHeadDim ? parent.headDim : dim / heads;
  if (headDim % 2 !== 0) throw new LineageError(`head dim ${headDim} (dim / heads) must be even for RoPE`);
  if (heads % kvHeads !== 0)
    throw new LineageError(`heads ${heads} is not a multiple of kv-heads ${kvHeads}`);
  return {
    ...parent,
    hiddenSize: dim,
    numLayers: shape.layers ?? parent.numLayers,
    numHeads: heads,
    numKvHeads: kvHeads,
    headDim,
    intermediateSize: shape.hidden ?? parent.intermediateSize,
  };
}

/**
 * A randomly initialised model shaped like `parent` with `shape` overrides and the parent's tokenizer:
 * the from-scratch baseline that compression methods must beat. Weights N(0, std²) (default 0.02), norms 1.
 */
export function initLike(
  parent: LlamaModel,
  shape: ModelShape = {},
  options: { seed?: number; std?: number } = {},
): LlamaModel {
  const model = initModel(configLike(parent.config, shape), options);
  model.tokenizer = parent.tokenizer;
  return model;
}

/**
 * Multiplies every element of every linear layer's weight by (1 + sigma·N(0, 1)), seeded: a damaged copy
 * whose recovery by distillation from the original is a test and a bench. Biases, norms and the
 * (tied) embedding are left alone.
 */
export function perturbLinearWeights(model: LlamaModel, sigma: number, seed = 0): LlamaModel {
  const rng = new Random(seed);
  for (const [, layer] of model.linearLayers()) {
    for (const [name, p] of layer.parameters()) {
      if (name !== 'weight') continue;
      const w = Float32Array.from(p.value.toF32());
      for (let i = 0; i < w.length; i++) w[i] = w[i]! * (1 + sigma * rng.normal());
      p.value = new HostTensor('f32', p.shape, w);
    }
  }
  return model;
}
