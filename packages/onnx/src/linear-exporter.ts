import { registerLayerExporter, transpose2d } from './exporters.js';

// The dense kind: MatMul on Wᵀ stored [in, out] (no transpose at run time). As the embedding, W [vocab,
// hidden] is stored once as it is: Gather for the lookup, MatMul on a Transpose node for the tied head.
registerLayerExporter('linear', {
  linear(ctx, layer, x, { tied }) {
    const [out, inp] = [layer.outFeatures, layer.inFeatures];
    const w = tied
      ? ctx.g.op('Transpose', [ctx.weight('weight', layer.weight.value.toF32(), [out, inp])])
      : ctx.weight('weightT', transpose2d(layer.weight.value.toF32(), out, inp), [inp, out]);
    const y = ctx.g.op('MatMul', [x, w]);
    const b = layer.bias?.value.toF32();
    return b ? ctx.g.op('Add', [y, ctx.weight('bias', b, [out])]) : y;
  },
  lookup(ctx, layer, ids) {
    const w = ctx.weight('weight', layer.weight.value.toF32(), [layer.outFeatures, layer.inFeatures]);
    return ctx.g.op('Gather', [w, ids]);
  },
});
