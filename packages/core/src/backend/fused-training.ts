import { BLOCK_LINEARS } from '../nn/llama.js';
import type { Tensor } from './backend.js';

/**
 * The inputs of the distillation head: the student's and the teacher's final hidden states (after the final
 * norm) and their output heads, on one backend. Logits are hidden · weightᵀ.
 */
export interface KdHeadInputs {
  /** Student hidden states [N, D]. */
  hidden: Tensor;
  /** Student head weight [V, D] (the tied embedding or lm_head). */
  weight: Tensor;
  /** Teacher hidden states [N, Dt]. */
  teacherHidden: Tensor;
  /** Teacher head weight [V, Dt]. */
  teacherWeight: Tensor;
  /** Next-token targets [N] (valid token ids), for the cross-entropy metric. */
  targets: Int32Array;
  /** Softmax temperature T applied to both distributions (the KL is scaled by T² when T ≠ 1). */
  temperature: number;
}

/** What the fused head returns: the loss, the metric and the loss's gradients, all tensors of the backend. */
export interface KdHeadResult {
  /** Mean over rows of KL(softmax(zt/T) ‖ softmax(zs/T)) (× T² when T ≠ 1), shape []: `klDivergence`'s value. */
  kl: Tensor;
  /** Mean cross-entropy of the student's logits (T = 1) against `targets`, shape [] (not differentiated). */
  ce: Tensor;
  /** d kl / d hidden, [N, D]. */
  dHidden: Tensor;
  /** d kl / d weight, [V, D]. */
  dWeight: Tensor;
}

/**
 * A backend capability for training: the knowledge-distillation head (both models' logits, the KL, the CE
 * metric and the KL's gradients w.r.t. the student's hidden states and head) as one call, so the
 * [N × V] logits never reach JavaScript. The composite ops (logits → logSoftmax → KL, recorded on the tape)
 * stay the reference it must agree with; callers fall back to them when it is absent or unsupported.
 */
export interface FusedTraining {
  kdHead(inputs: KdHeadInputs): Promise<KdHeadResult | { unsupported: string }>;
  /**
   * A dense decoder block's forward (as `LlamaModel.block` without a KV cache) as one call; with `save`,
   * also the activations `blockBackward` reads, as opaque tensors of the backend (keep them until then).
   */
  blockForward?(
    inputs: FusedBlockInputs & { save: boolean },
  ): Promise<{ y: Tensor; saved: Tensor[] } | { unsupported: string }>;
  /** The block's vector-Jacobian product from d y: d x and the gradient of every weight (FUSED_BLOCK_WEIGHTS order). */
  blockBackward?(
    inputs: FusedBlockInputs & { dy: Tensor; saved: readonly Tensor[] },
  ): Promise<{ dx: Tensor; dWeights: Tensor[] }>;
}

/** The weights of a dense decoder block in the order FusedBlockInputs.weights lists them. */
export const FUSED_BLOCK_WEIGHTS = ['input_layernorm', 'post_attention_layernorm', ...BLOCK_LINEARS] as const;

/**
 * A dense Llama decoder block for the fused block pieces: x [B, T, dim], the norm weights [dim] and the
 * linear weights [out, in] (no bias) in FUSED_BLOCK_WEIGHTS order, RoPE tables [T, headDim/2] for
 * positions 0…T−1, and causal attention with grouped-query heads.
 */
export interface FusedBlockInputs {
  x: Tensor;
  weights: readonly Tensor[];
  cos: Tensor;
  sin: Tensor;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** RMSNorm epsilon. */
  eps: number;
}
