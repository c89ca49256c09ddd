import { LineageError } from '@lineage/core';
import { FLOAT, FLOAT16, type LayerExporter, UINT8 } from '@lineage/onnx';
import { groupsPerRow, groupWidth } from './grid.js';
import type { QuantizedLinear } from './quantized-linear.js';

declare module '@lineage/onnx' {
  interface OnnxLayerKinds {
    quantized: QuantizedLinear;
  }
}

/** Bit widths onnxruntime's MatMulNBits takes. */
const NBITS = [2, 4, 8];

/** Codes [rows, cols] packed as MatMulNBits wants them: per row, blocks of `bs`, LSB-first, padded. */
function packBlocks(codes: Int32Array, rows: number, cols: number, bits: number, bs: number, pad: number) {
  const blocks = Math.ceil(cols / bs);
  const blob = (bs * bits) / 8;
  const out = new Uint8Array(rows * blocks * blob);
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < blocks * bs; k++) {
      const c = k < cols ? codes[r * cols + k]! : pad;
      const bit = (r * blocks * bs + k) * bits;
      out[bit >> 3]! |= c << (bit & 7);
    }
  return out;
}

/** Zero points [rows, groups] as MatMulNBits packs them: per row ⌈groups·bits/8⌉ bytes, LSB-first. */
function packZeros(zeros: Int32Array, rows: number, groups: number, bits: number): Uint8Array {
  const perRow = Math.ceil((groups * bits) / 8);
  const out = new Uint8Array(rows * perRow);
  for (let r = 0; r < rows; r++)
    for (let g = 0; g < groups; g++) {
      const bit = g * bits;
      out[r * perRow + (bit >> 3)]! |= zeros[r * groups + g]! << (bit & 7);
    }
  return out;
}

/**
 * `quantized` in ONNX as onnxruntime's `MatMulNBits` (com.microsoft): the codes packed per block, the f16
 * scales as stored (a Cast to f32 that onnxruntime folds at load), integer zero points as uint8. The
 * symmetric grid s·(c − (2ᵇ−1)/2) is MatMulNBits' default zero point 2ᵇ⁻¹ plus s/2 per group, added as
 * (group sums of x)·(s/2)ᵀ from the same scales, so nothing beyond the stored bytes goes to disk. Groups
 * must be a power of two ≥ 16 wide (or one per row); Hadamard incoherence and 3-bit grids are refused.
 */
export const quantizedExporter: Omit<LayerExporter<QuantizedLinear>, 'kind'> = {
  linear(ctx, layer, x) {
    const { g } = ctx;
    const [N, K] = [layer.outFeatures, layer.inFeatures];
    const { bits, groupSize } = layer.grid;
    const refuse = (why: string): never => {
      throw new LineageError(`layer '${ctx.name}' (quantized): ${why} cannot be exported to ONNX yet`);
    };
    if (layer.signsIn) refuse('Hadamard incoherence');
    if (!NBITS.includes(bits)) refuse(`a ${bits}-bit grid (MatMulNBits takes ${NBITS.join(', ')} bits)`);
    const G = groupsPerRow(K, groupSize);
    const gw = G === 1 ? K : groupWidth(K, groupSize);
    const bs = G === 1 ? Math.max(16, 2 ** Math.ceil(Math.log2(K))) : gw;
    if (bs < 16 || (bs & (bs - 1)) !== 0)
      refuse(`groups of ${gw} columns (MatMulNBits needs a power of two ≥ 16)`);
    const blocks = Math.ceil(K / bs);
    const blob = (bs * bits) / 8;
    const zp = 2 ** (bits - 1);
    const codes = g.initializer(
      ctx.init('codes'),
      UINT8,
      [N, blocks, blob],
      packBlocks(layer.codes.value.toInts(), N, K, bits, bs, zp),
    );
    const scales16 = g.initializer(ctx.init('scales'), FLOAT16, [N * G], layer.scales.value.bytes());
    const scales = g.op('Cast', [scales16], { to: FLOAT });
    const inputs = [x, codes, scales];
    if (layer.zeros)
      inputs.push(
        g.initializer(
          ctx.init('zeros'),
          UINT8,
          [N * Math.ceil((G * bits) / 8)],
          packZeros(layer.zeros.value.toInts(), N, G, bits),
        ),
      );
    else {
      // The symmetric grid s·(c − (2ᵇ−1)/2): a float zero point per block, one constant expanded in the
      // graph (onnxruntime folds it at load), so no bytes go to disk for it.
      inputs.push(
        g.shared(`zero point ${bits} ${N * G}`, () =>
          g.op('Expand', [g.float((2 ** bits - 1) / 2), g.int64([N * G])]),
        ),
      );
    }
    const y = g.op('MatMulNBits', inputs, { K, N, bits, block_size: bs }, 'com.microsoft');
    const b = layer.bias?.value;
    return b ? g.op('Add', [y, ctx.weight('bias', b.toF32(), [N])]) : y;
  },
};
