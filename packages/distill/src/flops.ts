import type { LlamaConfig } from '@lineage/core';

/** Parameters that take part in matrix multiplies per token: every block linear and the output head. */
export function matmulParams(c: LlamaConfig): number {
  const { hiddenSize: d, headDim: D, numHeads: H, numKvHeads: Hkv, intermediateSize: F, vocabSize: V } = c;
  const block = d * H * D + 2 * d * Hkv * D + H * D * d + 3 * d * F;
  return c.numLayers * block + V * d;
}

export interface TrainingFlops {
  /** Forward FLOPs per token: 2·(matmul params) + causal attention 4·layers·(heads·headDim)·(mean attended positions). */
  forward: number;
  /** Training FLOPs per token (forward + backward ≈ 3× forward): 6·params + 12·layers·(heads·headDim)·positions. */
  train: number;
}

/**
 * FLOPs per token of a sequence of `seqLen` tokens (causal attention attends to (seqLen + 1) / 2 positions
 * on average). The usual convention: 2 per multiply-add of every matmul, elementwise work not counted.
 */
export function trainingFlops(c: LlamaConfig, seqLen: number): TrainingFlops {
  const p = matmulParams(c);
  const attn = 4 * c.numLayers * c.numHeads * c.headDim * ((seqLen + 1) / 2);
  return { forward: 2 * p + attn, train: 6 * p + 3 * attn };
}
