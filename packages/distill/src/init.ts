import {
  type ModelShape as CoreModelShape,
  HostTensor,
  initModel,
  LineageError,
  type LlamaConfig,
  type LlamaModel,
  Random,
  withShape,
} from '@lineage/core';

/**
 * The numbers people quote for a Llama shape (the `lineage init` flags): `dim` is the model width, `hidden`
 * the FFN width. Core's `ModelShape` says the same in Hugging Face's words; this maps onto it.
 */
export interface QuotedShape {
  dim?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  /** FFN (intermediate) width. */
  hidden?: number;
}

/** @deprecated The quoted shape; use `QuotedShape`, or core's `ModelShape` (Hugging Face names). */
export type ModelShape = QuotedShape;

const QUOTED: Record<keyof QuotedShape, keyof CoreModelShape> = {
  dim: 'hiddenSize',
  layers: 'numLayers',
  heads: 'numHeads',
  kvHeads: 'numKvHeads',
  hidden: 'intermediateSize',
};

/** A quoted shape in core's (Hugging Face) vocabulary; a core shape is returned as it is. */
export function toModelShape(shape: QuotedShape | CoreModelShape): CoreModelShape {
  const out: CoreModelShape = {};
  let quoted = false;
  let hf = false;
  for (const [k, v] of Object.entries(shape)) {
    if (v === undefined) continue;
    const mapped = QUOTED[k as keyof QuotedShape];
    if (mapped) quoted = true;
    else hf = true;
    out[mapped ?? (k as keyof CoreModelShape)] = v;
  }
  if (quoted && hf)
    throw new LineageError(
      `a shape mixes quoted names (dim, layers, heads, kvHeads, hidden) with config names (${Object.keys(shape).join(', ')})`,
    );
  return out;
}

/** @deprecated Use core's `withShape` (Hugging Face names); this maps the quoted names onto it. */
export function configLike(parent: LlamaConfig, shape: QuotedShape): LlamaConfig {
  return withShape(parent, toModelShape(shape));
}

/**
 * A randomly initialised model shaped like `parent` with `shape` overrides (core's `ModelShape`, or the
 * quoted names) and the parent's tokenizer: the from-scratch baseline that compression methods must beat.
 * Weights N(0, std²) (default 0.02), norms 1.
 */
export function initLike(
  parent: LlamaModel,
  shape: CoreModelShape | QuotedShape = {},
  options: { seed?: number; std?: number } = {},
): LlamaModel {
  const model = initModel(withShape(parent.config, toModelShape(shape)), options);
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
