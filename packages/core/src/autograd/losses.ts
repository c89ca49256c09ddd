import type { Tensor } from '../backend/backend.js';
import type { Ops } from '../backend/ops.js';
import type { LlamaModel } from '../nn/llama.js';
import { sizeOf } from '../tensor/host-tensor.js';

/** How per-row losses combine: weighted mean (default), weighted sum, or the per-row values. */
export type Reduction = 'mean' | 'sum' | 'none';

export interface RowLossOptions {
  /** Per-row weights (e.g. 0 for padding); the mean divides by their sum. */
  weights?: Float32Array;
  reduction?: Reduction;
}

function rows(t: Tensor): [number, number] {
  const V = t.shape[t.shape.length - 1] ?? 1;
  return [sizeOf(t.shape) / Math.max(1, V), V];
}

/** Combines per-row losses [N] into a scalar (shape []) or keeps them. */
async function reduceRows(ops: Ops, perRow: Tensor, o: RowLossOptions): Promise<Tensor> {
  const N = perRow.shape[0]!;
  let x = perRow;
  let total = N;
  if (o.weights) {
    if (o.weights.length !== N) throw new RangeError(`loss: ${o.weights.length} weights for ${N} rows`);
    x = await ops.mul(x, ops.upload(o.weights.slice(), [N]));
    total = 0;
    for (const w of o.weights) total += w;
  }
  const reduction = o.reduction ?? 'mean';
  if (reduction === 'none') return x;
  const sum = await ops.reduce('sum', x, [0]);
  return reduction === 'sum' ? sum : ops.scale(sum, total > 0 ? 1 / total : 0);
}

/**
 * Cross-entropy of logits [..., V] against integer targets (one per row): the mean over rows of
 * −log softmax(logits)[target] by default.
 */
export async function crossEntropyLoss(
  ops: Ops,
  logits: Tensor,
  targets: Int32Array | Tensor,
  options: RowLossOptions = {},
): Promise<Tensor> {
  const [N, V] = rows(logits);
  const flat = logits.shape.length === 2 ? logits : await ops.reshape(logits, [N, V]);
  const t = targets instanceof Int32Array ? ops.upload(targets.slice(), [N]) : targets;
  return reduceRows(ops, await ops.crossEntropy(flat, t), options);
}

export interface KlOptions extends RowLossOptions {
  /** Softmax temperature T applied to both distributions (default 1). */
  temperature?: number;
  /** Multiply by T² so gradient magnitudes do not depend on T (Hinton et al.; default true). */
  scaleByTemperatureSquared?: boolean;
}

/**
 * Distillation loss KL(teacher ‖ student) per row: Σ p_t·(log p_t − log p_s) with p = softmax(logits / T),
 * over logits [..., V] of the same shape. Compute the teacher's logits with plain `Ops` (or any
 * unwatched parameters) and only the student is differentiated.
 */
export async function klDivergence(
  ops: Ops,
  teacherLogits: Tensor,
  studentLogits: Tensor,
  options: KlOptions = {},
): Promise<Tensor> {
  const T = options.temperature ?? 1;
  const [N, V] = rows(studentLogits);
  if (sizeOf(teacherLogits.shape) !== N * V) {
    throw new RangeError(
      `klDivergence: teacher [${teacherLogits.shape}] and student [${studentLogits.shape}] differ`,
    );
  }
  const lp = async (x: Tensor) =>
    ops.logSoftmax(await ops.scale(x.shape.length === 2 ? x : await ops.reshape(x, [N, V]), 1 / T));
  const lt = await lp(teacherLogits);
  const ls = await lp(studentLogits);
  const perRow = await ops.reduce(
    'sum',
    await ops.mul(await ops.unary('exp', lt), await ops.sub(lt, ls)),
    [-1],
  );
  const scaled =
    (options.scaleByTemperatureSquared ?? true) && T !== 1 ? await ops.scale(perRow, T * T) : perRow;
  return reduceRows(ops, scaled, options);
}

/** Mean squared error between two tensors of the same shape (e.g. hidden states), a scalar. */
export async function mseLoss(ops: Ops, a: Tensor, b: Tensor): Promise<Tensor> {
  const d = await ops.sub(a, b);
  const all = d.shape.map((_, i) => i);
  return ops.scale(
    await ops.reduce('sum', await ops.unary('square', d), all),
    1 / Math.max(1, sizeOf(d.shape)),
  );
}

/**
 * Next-token language-model loss of `model` on `batch` rows of `tokens` ([batch, T+1] flattened): the
 * model reads tokens[:, :T] and is scored on tokens[:, 1:] (mean cross-entropy; `weights` [batch·T] may
 * mask padding).
 */
export async function languageModelLoss(
  ops: Ops,
  model: LlamaModel,
  tokens: Int32Array,
  batch: number,
  options: RowLossOptions = {},
): Promise<Tensor> {
  const L = tokens.length / batch;
  if (!Number.isInteger(L) || L < 2)
    throw new RangeError(`languageModelLoss: ${tokens.length} tokens in ${batch} rows`);
  const T = L - 1;
  const ids = new Int32Array(batch * T);
  const targets = new Int32Array(batch * T);
  for (let b = 0; b < batch; b++) {
    ids.set(tokens.subarray(b * L, b * L + T), b * T);
    targets.set(tokens.subarray(b * L + 1, (b + 1) * L), b * T);
  }
  return ops.tidy(async () => {
    const h = await model.hidden(ops, ids, batch);
    const logits = await model.logits(ops, await ops.reshape(h, [batch * T, model.config.hiddenSize]));
    return crossEntropyLoss(ops, logits, targets, options);
  });
}
