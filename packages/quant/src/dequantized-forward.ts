import type { Backend, Ops, Tensor } from '@lineage/core';

/**
 * The forward shared by the layers stored as codes (`quantized`, E8P12): W decoded on the host and uploaded
 * per call (transient), or, with `cached`, once per backend into `cache` (the memory of a dense layer).
 */
export async function dequantizedLinear(
  ops: Ops,
  x: Tensor,
  o: {
    cache: Map<Backend, Tensor>;
    cached: boolean;
    shape: number[];
    weight: () => Float32Array;
    bias: Tensor | undefined;
  },
): Promise<Tensor> {
  const be = ops.backend;
  if (o.cached) {
    let w = o.cache.get(be);
    if (!w) {
      w = be.upload(o.weight(), o.shape); // owned by the cache, outside every Ops scope
      o.cache.set(be, w);
    }
    return ops.linear(x, w, o.bias);
  }
  // transient: ops.dispose defers it while an autograd tape still needs it for the input's gradient
  const w = ops.upload(o.weight(), o.shape);
  const y = await ops.linear(x, w, o.bias);
  ops.dispose(w);
  return y;
}

/** Frees the dequantized weights `dequantizedLinear` cached. */
export function releaseDequantized(cache: Map<Backend, Tensor>): void {
  for (const [b, t] of cache) b.dispose(t);
  cache.clear();
}
