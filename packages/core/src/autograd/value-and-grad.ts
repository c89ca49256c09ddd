import type { Backend, Tensor } from '../backend/backend.js';
import type { Parameter } from '../nn/parameter.js';
import { GradOps } from './grad-ops.js';

export interface ValueAndGrad {
  /** The loss (summed over its elements if it is not a scalar). */
  loss: number;
  /**
   * d loss / d parameter, f32 on the host, for every trainable parameter the loss depends on (frozen or
   * unused parameters have no entry, as PyTorch leaves their `.grad` None).
   */
  grads: Map<Parameter, Float32Array>;
  /** The values (summed) of the extra tensors `fn` returned under `metrics`, e.g. the parts of a loss. */
  metrics: Record<string, number>;
}

/** What the loss function returns: the loss, or the loss plus named tensors to report (not differentiated). */
export type LossOutput = Tensor | { loss: Tensor; metrics?: Record<string, Tensor> };

/**
 * Runs `fn` on a recording `GradOps` and backpropagates its loss to `params`. `fn` returns the loss, or
 * `{ loss, metrics }` to also report other tensors of the forward (e.g. the KL and CE parts of a loss). Each gradient is read to
 * the host and freed on the device as soon as it is complete; every tensor of the forward pass is freed
 * by the time this returns.
 *
 * ```ts
 * const { loss, grads } = await valueAndGrad(backend, (ops) => languageModelLoss(ops, model, tokens, batch), params);
 * ```
 */
export async function valueAndGrad(
  backend: Backend,
  fn: (ops: GradOps) => Promise<LossOutput>,
  params: Iterable<Parameter>,
): Promise<ValueAndGrad> {
  const ops = new GradOps(backend);
  const byTensor = new Map<Tensor, Parameter>();
  for (const p of params) {
    const t = ops.watch(p);
    if (t) byTensor.set(t, p);
  }
  try {
    const result = await ops.tidy(() => fn(ops));
    const out = 'handle' in result ? result : result.loss;
    const sum = async (t: Tensor) => (await ops.readF32(t)).reduce((a, v) => a + v, 0);
    const loss = await sum(out);
    const metrics: Record<string, number> = {};
    if (!('handle' in result)) {
      for (const [k, t] of Object.entries(result.metrics ?? {})) {
        metrics[k] = await sum(t);
        if (t !== out && !byTensor.has(t)) ops.dispose(t);
      }
    }
    const grads = new Map<Parameter, Float32Array>();
    try {
      await ops.backward(out, {
        onGrad: async (leaf, g, sole) => {
          const p = byTensor.get(leaf);
          // a gradient nothing else holds is freed right after: take its array rather than a copy
          if (p) grads.set(p, await (sole ? ops.readF32Once(g) : ops.readF32(g)));
        },
      });
    } finally {
      if (!byTensor.has(out)) ops.dispose(out);
    }
    return { loss, grads, metrics };
  } finally {
    ops.tape.dispose();
  }
}
