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
}
