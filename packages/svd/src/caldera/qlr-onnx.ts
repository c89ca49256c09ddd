import { LineageError } from '@lineage/core';
import { FLOAT, FLOAT16, isHalf, type LayerExporter, transpose2d } from '@lineage/onnx';
import { matMulNBits, nbitsRefusal } from '@lineage/quant';
import type { QlrLinear } from './qlr-linear.js';

declare module '@lineage/onnx' {
  interface OnnxLayerKinds {
    qlr: QlrLinear;
  }
}

const bitsOf = (dtype: string) => (dtype === 'u8' ? 8 : Number(dtype.slice(1)));

/**
 * `qlr` (CALDERA) in ONNX as itself, y = x·(Q + L·R)ᵀ + x·(L_ft·R_ft)ᵀ: Q as a MatMulNBits (its row or
 * single scale), R as a MatMulNBits giving x·Rᵀ [.., kq], which is scaled by L's per-component scales and
 * fed to a MatMulNBits on L's codes (scales 1), and the 16-bit ranks as two MatMuls on f16 initializers.
 * Every part keeps its stored bits. Layers with Hadamard incoherence, 3-bit parts or an E8P12 Q are refused.
 */
export const qlrExporter: Omit<LayerExporter<QlrLinear>, 'kind'> = {
  linear(ctx, layer, x) {
    const { g } = ctx;
    const p = layer.parameters();
    const t = (k: string) => p.get(k)?.value;
    const refuse = (why: string): never => {
      throw new LineageError(`layer '${ctx.name}' (qlr): ${why} cannot be exported to ONNX yet`);
    };
    if (layer.hadamard) refuse('Hadamard incoherence');
    if (layer.qE8p) refuse('a Q on the E8P12 lattice codebook');
    const [m, n, kq] = [layer.outFeatures, layer.inFeatures, layer.kq];
    /** scale·(codes − offset) of part k [rows, cols], times x: a MatMulNBits with whole-row groups. */
    const part = (k: 'Q' | 'R', v: string, rows: number, cols: number) => {
      const codes = t(k)!;
      const grid = { bits: bitsOf(codes.dtype), groups: 1, groupWidth: cols };
      const why = nbitsRefusal(cols, grid);
      if (why) refuse(`its ${k} part: ${why}`);
      const s = t(`${k}_scale`)!;
      const s16 = g.initializer(ctx.init(`${k}_scale`), FLOAT16, [s.size], s.bytes());
      let scales = g.op('Cast', [s16], { to: FLOAT });
      if (s.size === 1) scales = g.op('Expand', [scales, g.int64([rows])]);
      return matMulNBits(ctx, v, { N: rows, K: cols, grid, codes: codes.toInts(), scales, prefix: k });
    };
    let y = part('Q', x, m, n);
    if (kq > 0) {
      const h = part('R', x, kq, n);
      // L [m, kq] = Lᵀ stored [kq, m] with a scale per rank component: scale h by it, then L's codes
      // (transposed to [m, kq]) with unit scales.
      const lt = t('L')!;
      const ls = t('L_scale')!;
      const ls16 = g.initializer(ctx.init('L_scale'), FLOAT16, [ls.size], ls.bytes());
      const hs = g.op('Mul', [h, g.op('Cast', [ls16], { to: FLOAT })]);
      const grid = { bits: bitsOf(lt.dtype), groups: 1, groupWidth: kq };
      const why = nbitsRefusal(kq, grid);
      if (why) refuse(`its L part: ${why}`);
      const codes = lt.toInts();
      const lCodes = new Int32Array(m * kq);
      for (let r = 0; r < kq; r++) for (let c = 0; c < m; c++) lCodes[c * kq + r] = codes[r * m + c]!;
      const ones = g.shared(`ones ${m}`, () => g.op('Expand', [g.float(1), g.int64([m])]));
      y = g.op('Add', [
        y,
        matMulNBits(ctx, hs, { N: m, K: kq, grid, codes: lCodes, scales: ones, prefix: 'L' }),
      ]);
    }
    if (layer.ftRank > 0) {
      const [L, R, ft] = [t('L_ft')!, t('R_ft')!, layer.ftRank];
      const r = ctx.weight('R_ft_t', transpose2d(R.toF32(), ft, n), [n, ft], { half: isHalf(R) });
      const l = ctx.weight('L_ft_t', transpose2d(L.toF32(), m, ft), [ft, m], { half: isHalf(L) });
      y = g.op('Add', [y, g.op('MatMul', [g.op('MatMul', [x, r]), l])]);
    }
    const b = t('bias');
    return b ? g.op('Add', [y, ctx.weight('bias', b.toF32(), [m], { half: isHalf(b) })]) : y;
  },
};
