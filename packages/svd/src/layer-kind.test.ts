import { describeLayerKind, uniform } from '@lineage/core/testing';
import { LOW_RANK_KIND, LowRankLinear } from './low-rank-linear.js';

// rank 3 below both sides of every shape the suite asks for, so every layer is truly factored.
describeLayerKind(LOW_RANK_KIND, {
  make: ({ out, in: inp, bias, seed }) =>
    LowRankLinear.fromFactors(
      uniform([out, 3], seed),
      uniform([3, inp], seed + 1),
      out,
      3,
      inp,
      bias ? uniform([out], seed + 2) : undefined,
    ),
});
