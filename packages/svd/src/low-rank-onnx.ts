import { isHalf, type LayerExporter, transpose2d } from '@lineage/onnx';
import type { LowRankLinear } from './low-rank-linear.js';

declare module '@lineage/onnx' {
  interface OnnxLayerKinds {
    low_rank: LowRankLinear;
  }
}

/**
 * `low_rank` in ONNX as itself: y = (x·Bᵀ)·Aᵀ, two MatMuls on Bᵀ [in, r] and Aᵀ [r, out], never the dense
 * product. As the embedding, A [vocab, r] and B [r, hidden] are stored once as they are: rows of A gathered
 * then ·B for the lookup, Transpose nodes for the tied head. Registered beside the kind (low-rank-linear.ts).
 */
export const lowRankExporter: Omit<LayerExporter<LowRankLinear>, 'kind'> = {
  linear(ctx, layer, x, { tied }) {
    const [out, r, inp] = [layer.outFeatures, layer.rank, layer.inFeatures];
    const A = layer.A.value;
    const B = layer.B.value;
    const [a, b] = tied
      ? [
          ctx.g.op('Transpose', [ctx.weight('A', A.toF32(), [out, r], { half: isHalf(A) })]),
          ctx.g.op('Transpose', [ctx.weight('B', B.toF32(), [r, inp], { half: isHalf(B) })]),
        ]
      : [
          ctx.weight('A_t', transpose2d(A.toF32(), out, r), [r, out], { half: isHalf(A) }),
          ctx.weight('B_t', transpose2d(B.toF32(), r, inp), [inp, r], { half: isHalf(B) }),
        ];
    const y = ctx.g.op('MatMul', [ctx.g.op('MatMul', [x, b]), a]);
    const bias = layer.bias?.value;
    return bias ? ctx.g.op('Add', [y, ctx.weight('bias', bias.toF32(), [out], { half: isHalf(bias) })]) : y;
  },
  lookup(ctx, layer, ids) {
    const A = layer.A.value;
    const B = layer.B.value;
    const a = ctx.weight('A', A.toF32(), [layer.outFeatures, layer.rank], { half: isHalf(A) });
    const b = ctx.weight('B', B.toF32(), [layer.rank, layer.inFeatures], { half: isHalf(B) });
    return ctx.g.op('MatMul', [ctx.g.op('Gather', [a, ids]), b]);
  },
};
