import { isHalf, registerLayerExporter, transpose2d } from './exporters.js';

// The dense kind: MatMul on Wᵀ stored [in, out] (no transpose at run time). As the embedding, W [vocab,
// hidden] is stored once as it is: Gather for the lookup, MatMul on a Transpose node for the tied head.
registerLayerExporter('linear', {
  linear(ctx, layer, x, { tied }) {
    const [out, inp] = [layer.outFeatures, layer.inFeatures];
    const W = layer.weight.value;
    const half = isHalf(W);
    const w = tied
      ? ctx.g.op('Transpose', [ctx.weight('weight', W.toF32(), [out, inp], { half })])
      : ctx.weight('weight_t', transpose2d(W.toF32(), out, inp), [inp, out], { half });
    const y = ctx.g.op('MatMul', [x, w]);
    const b = layer.bias?.value;
    return b ? ctx.g.op('Add', [y, ctx.weight('bias', b.toF32(), [out], { half: isHalf(b) })]) : y;
  },
  lookup(ctx, layer, ids) {
    const W = layer.weight.value;
    const w = ctx.weight('weight', W.toF32(), [layer.outFeatures, layer.inFeatures], { half: isHalf(W) });
    return ctx.g.op('Gather', [w, ids]);
  },
});
