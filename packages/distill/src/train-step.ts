import {
  type Backend,
  clipCoefficient,
  GradientAccumulator,
  gradNorm,
  type LlamaModel,
  Ops,
  type Optimizer,
  type Parameter,
  type Tensor,
  valueAndGrad,
} from '@lineage/core';
import { canFuseKdHead } from './kd-head.js';
import {
  type ForwardCapture,
  forwardCapture,
  forwardFinal,
  type StepLossOptions,
  stepLoss,
  type TeacherFinal,
} from './losses.js';
import { addRegularizers, type ResolvedRegularizer } from './regularizers.js';

/** What one optimiser step needs: the models, the objective, the batch plan and the optimiser. */
export interface StepContext {
  backend: Backend;
  model: LlamaModel;
  /** The teacher and where it runs, when the objective needs its outputs. */
  teacher: { model: LlamaModel; ops: Ops; layers: readonly number[] } | undefined;
  loss: StepLossOptions;
  /** The parameters that train (gradients are computed for these only). */
  params: readonly Parameter[];
  /** Extra terms of the objective. */
  regularizers: readonly ResolvedRegularizer[];
  seqLen: number;
  batchSize: number;
  micro: number;
  clip: number;
  optimizer: Optimizer;
}

export interface StepOutcome {
  /** The objective (mean over the batch). */
  loss: number;
  /** Its parts (mean over the batch). */
  metrics: Record<string, number>;
  /** Global gradient norm before clipping. */
  norm: number;
  /** False when the loss or gradient was not finite: the update was skipped. */
  finite: boolean;
}

/** Moves the teacher's outputs to the student's backend (a no-op when they share one). */
async function transfer(ops: Ops, t: Tensor, to: Backend): Promise<Tensor> {
  if (t.backend === to) return t;
  const data = await ops.read(t);
  ops.dispose(t);
  return to.upload(data instanceof Float32Array ? data : Float32Array.from(data), t.shape);
}

/**
 * One optimiser step on a batch of windows (`batchSize` rows of seqLen + 1 tokens): forward and backward
 * per micro-batch (gradients accumulated, weighted by rows), clipping, then the update at `lr` unless the
 * loss or gradient is not finite.
 */
export async function trainStep(c: StepContext, batch: Int32Array, lr: number): Promise<StepOutcome> {
  const { backend, model, seqLen, batchSize, micro } = c;
  const L = seqLen + 1;
  const acc = new GradientAccumulator();
  let grads: Map<Parameter, Float32Array> | undefined;
  let lossSum = 0;
  // The distillation head as one fused backend call when the backend has it and both heads are plain
  // matrices on it (onnxruntime-cpu); every other case keeps the composite ops (the js reference included).
  const fuseHead =
    c.teacher !== undefined &&
    c.loss.loss === 'kl' &&
    canFuseKdHead(new Ops(backend), model, c.teacher.model, c.teacher.ops);
  const metrics: Record<string, number> = {};
  for (let r0 = 0; r0 < batchSize; r0 += micro) {
    const rows = Math.min(micro, batchSize - r0);
    const ids = new Int32Array(rows * seqLen);
    const targets = new Int32Array(rows * seqLen);
    for (let b = 0; b < rows; b++) {
      const w = batch.subarray((r0 + b) * L, (r0 + b + 1) * L);
      ids.set(w.subarray(0, seqLen), b * seqLen);
      targets.set(w.subarray(1), b * seqLen);
    }
    let teacherOut: ForwardCapture | TeacherFinal | undefined;
    if (c.teacher) {
      const { ops: tops, model: teacher, layers } = c.teacher;
      if (fuseHead) {
        // Same backend: the fused head applies the teacher's head itself (no [N × V] logits here).
        const t = await tops.tidy(() => forwardFinal(tops, teacher, ids, rows, layers));
        teacherOut = { ...t, model: teacher };
      } else {
        const t = await tops.tidy(() => forwardCapture(tops, teacher, ids, rows, layers));
        teacherOut = {
          logits: await transfer(tops, t.logits, backend),
          hidden: await Promise.all(t.hidden.map((h) => transfer(tops, h, backend))),
        };
      }
    }
    try {
      const r = await valueAndGrad(
        backend,
        async (g) => {
          const out = await stepLoss(g, model, ids, targets, rows, teacherOut, c.loss);
          return c.regularizers.length ? addRegularizers(g, out, c.regularizers) : out;
        },
        c.params,
      );
      const w = rows / batchSize;
      lossSum += r.loss * w;
      for (const [k, v] of Object.entries(r.metrics)) metrics[k] = (metrics[k] ?? 0) + v * w;
      if (rows === batchSize) grads = r.grads;
      else acc.add(r.grads, rows);
    } finally {
      if (teacherOut) backend.dispose('final' in teacherOut ? teacherOut.final : teacherOut.logits);
      for (const h of teacherOut?.hidden ?? []) backend.dispose(h);
    }
  }
  grads ??= acc.take();
  // the optimiser applies the clipping coefficient on the fly (the same values, one pass over the gradients fewer)
  const norm = gradNorm(grads);
  const finite = Number.isFinite(norm) && Number.isFinite(lossSum);
  if (finite) c.optimizer.step(grads, lr, c.clip > 0 ? clipCoefficient(norm, c.clip) : 1);
  return { loss: lossSum, metrics, norm, finite };
}
