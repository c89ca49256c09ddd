import { describeLayerKind, uniform } from '@lineage/core/testing';
import type { QuantBits } from './grid.js';
import { QUANTIZED_KIND, QuantizedLinear } from './quantized-linear.js';
import { rtn } from './rtn.js';

/** A layer of uniform random weights on the grid (whole-row groups: the kind's exactly sliceable form). */
function make(bits: QuantBits, zeroPoint: boolean) {
  return ({ out, in: inp, bias, seed }: { out: number; in: number; bias: boolean; seed: number }) =>
    QuantizedLinear.fromQuantized(
      rtn(Float64Array.from(uniform([out, inp], seed)), out, inp, { bits, groupSize: 0, zeroPoint }),
      {
        ...(bias ? { bias: uniform([out], seed + 2) } : {}),
      },
    );
}

describeLayerKind(QUANTIZED_KIND, { make: make(4, false), frozen: true, label: '4-bit symmetric' });
describeLayerKind(QUANTIZED_KIND, { make: make(3, true), frozen: true, label: '3-bit with zero points' });
