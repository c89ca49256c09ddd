import { LineageError } from '@lineage/core';
import { type ExportContext, FLOAT, FLOAT16, type LayerExporter, UINT8 } from '@lineage/onnx';
import { E8pLinear } from './e8p-linear.js';
import { groupsPerRow, groupWidth } from './grid.js';
import type { QuantizedLinear } from './quantized-linear.js';

declare module '@lineage/onnx' {
  interface OnnxLayerKinds {
    quantized: QuantizedLinear | E8pLinear;
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

/** A grid MatMulNBits runs: `bits`, and groups of `groupWidth` input columns (G per row). */
export interface NBitsGrid {
  bits: number;
  /** Groups per row (1: whole rows). */
  groups: number;
  /** Input columns per group (ignored for whole rows). */
  groupWidth: number;
}

/**
 * Why a grid cannot run as MatMulNBits (a phrase for an error message), or undefined when it can: 2, 4 or
 * 8 bits, and groups a power of two ≥ 16 wide or whole rows.
 */
export function nbitsRefusal(K: number, grid: NBitsGrid): string | undefined {
  if (!NBITS.includes(grid.bits))
    return `a ${grid.bits}-bit grid (MatMulNBits takes ${NBITS.join(', ')} bits)`;
  const bs = blockSize(K, grid);
  if (bs < 16 || (bs & (bs - 1)) !== 0)
    return `groups of ${grid.groupWidth} columns (MatMulNBits needs a power of two ≥ 16)`;
  return undefined;
}

/** Whole rows take the block (16…128) that pads K least (the row's scale repeated per block); groups their width. */
function blockSize(K: number, { groups, groupWidth }: NBitsGrid): number {
  if (groups !== 1) return groupWidth;
  let best = 16;
  for (const bs of [32, 64, 128]) if (Math.ceil(K / bs) * bs <= Math.ceil(K / best) * best) best = bs;
  return best;
}

/**
 * y = x·Wᵀ for W [N, K] = scale·(code − zero) as onnxruntime's MatMulNBits (com.microsoft): `codes` row-major
 * [N, K] packed per block under `${prefix}.codes`; `scales` an f32 value of [N·groups] (whole rows: [N],
 * repeated over the row's blocks in the graph); `zeros` integer zero points [N, groups] (stored uint8, packed), or none for the symmetric grid's (2ᵇ−1)/2, which is a
 * float zero point expanded in the graph (folded at load: no bytes on disk). Check nbitsRefusal first.
 */
export function matMulNBits(
  ctx: ExportContext,
  x: string,
  o: {
    N: number;
    K: number;
    grid: NBitsGrid;
    codes: Int32Array;
    scales: string;
    zeros?: Int32Array;
    prefix?: string;
  },
): string {
  const { g } = ctx;
  const { N, K, grid } = o;
  const { bits, groups: G } = grid;
  const bs = blockSize(K, grid);
  const blocks = Math.ceil(K / bs);
  const name = (k: string) => (o.prefix ? ctx.init(`${o.prefix}.${k}`) : ctx.init(k));
  // Whole rows over several blocks: each block takes its row's scale and zero point.
  const perBlock = G === 1 && blocks > 1;
  const scales = perBlock
    ? g.op('Reshape', [
        g.op('Expand', [g.op('Reshape', [o.scales, g.int64([N, 1])]), g.int64([N, blocks])]),
        g.int64([-1]),
      ])
    : o.scales;
  const zeroInts =
    o.zeros && perBlock
      ? Int32Array.from({ length: N * blocks }, (_, i) => o.zeros![Math.floor(i / blocks)]!)
      : o.zeros;
  const Gz = perBlock ? blocks : G;
  const codes = g.initializer(
    name('codes'),
    UINT8,
    [N, blocks, (bs * bits) / 8],
    packBlocks(o.codes, N, K, bits, bs, 2 ** (bits - 1)),
  );
  const zeros = zeroInts
    ? g.initializer(name('zeros'), UINT8, [N * Math.ceil((Gz * bits) / 8)], packZeros(zeroInts, N, Gz, bits))
    : g.shared(`zero point ${bits} ${N * Gz}`, () =>
        g.op('Expand', [g.float((2 ** bits - 1) / 2), g.int64([N * Gz])]),
      );
  return g.op('MatMulNBits', [x, codes, scales, zeros], { K, N, bits, block_size: bs }, 'com.microsoft');
}

/**
 * `quantized` in ONNX as onnxruntime's `MatMulNBits` (see matMulNBits): the codes packed per block, the
 * f16 scales as stored (a Cast to f32 that onnxruntime folds at load), integer zero points as uint8.
 * Groups must be a power of two ≥ 16 wide (or one per row); Hadamard incoherence, 3-bit grids and the E8P12
 * codebook are refused with the layer's name.
 */
export const quantizedExporter: Omit<LayerExporter<QuantizedLinear | E8pLinear>, 'kind'> = {
  linear(ctx, layer, x) {
    const { g } = ctx;
    const refuse = (why: string): never => {
      throw new LineageError(`layer '${ctx.name}' (quantized): ${why} cannot be exported to ONNX yet`);
    };
    if (layer instanceof E8pLinear) return refuse('the E8P12 lattice codebook');
    const [N, K] = [layer.outFeatures, layer.inFeatures];
    const { bits, groupSize } = layer.grid;
    if (layer.signsIn) refuse('Hadamard incoherence');
    const G = groupsPerRow(K, groupSize);
    const grid = { bits, groups: G, groupWidth: G === 1 ? K : groupWidth(K, groupSize) };
    const why = nbitsRefusal(K, grid);
    if (why) refuse(why);
    const scales16 = g.initializer(ctx.init('scales'), FLOAT16, [N * G], layer.scales.value.bytes());
    const y = matMulNBits(ctx, x, {
      N,
      K,
      grid,
      codes: layer.codes.value.toInts(),
      scales: g.op('Cast', [scales16], { to: FLOAT }),
      ...(layer.zeros ? { zeros: layer.zeros.value.toInts() } : {}),
    });
    const b = layer.bias?.value;
    return b ? g.op('Add', [y, ctx.weight('bias', b.toF32(), [N])]) : y;
  },
};
