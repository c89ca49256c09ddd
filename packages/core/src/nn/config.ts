/** Llama-3 style RoPE frequency scaling (config `rope_scaling` with rope_type "llama3"). */
export interface RopeScaling {
  type: 'llama3' | 'linear';
  factor: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositions?: number;
}

export type Architecture = 'llama' | 'mistral' | 'qwen2';

/**
 * The shape and numerics of a Llama-family decoder (Llama 1/2/3, Mistral, Qwen2). Field names are
 * camelCase; `io/hf-config.ts` maps them to and from Hugging Face `config.json`.
 */
export interface LlamaConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling?: RopeScaling;
  tieWordEmbeddings: boolean;
  /** Biases on q/k/v projections (Qwen2: true; Llama attention_bias: true also biases o). */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  bosTokenId?: number;
  eosTokenId?: number;
  /** Mistral sliding-window attention width; sequences longer than this are refused, not approximated. */
  slidingWindow?: number;
}
