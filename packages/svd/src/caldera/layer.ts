import { LineageError } from '@lineage/core';
import {
  E8P12,
  type E8pMatrix,
  type QuantBits,
  type QuantizedMatrix,
  randomIncoherence,
  transformHessian,
  transformWeight,
} from '@lineage/quant';
import {
  type CalderaDecomposition,
  type CalderaSettings,
  type CalderaStep,
  calderaDecompose,
  type MatrixQuantizer,
} from './decompose.js';
import { QlrLinear, type QlrQuantizedPart } from './qlr-linear.js';
import { lQuantizer, qE8pQuantizer, qQuantizer, rQuantizer } from './quantizers.js';

export interface CalderaLayerOptions {
  qBits: QuantBits;
  /** Q's codebook: the scalar grid of `qBits` (default) or E8P12 (`qBits` 2). */
  qCodebook?: 'scalar' | typeof E8P12;
  /** Bits of L and R, or 16: kept in 16 bits (all of the rank then counts as `ftRank`). */
  lrBits: QuantBits | 16;
  rank: number;
  outerIters: number;
  lplrIters: number;
  hadamard: boolean;
  hessianDowndate: boolean;
  /** Ranks of L (columns) and R (rows) kept 16-bit and trainable, the leading (largest) ones. */
  ftRank: number;
  /** Seed of the Hadamard signs. */
  seed?: number;
  name?: string;
  onStep?: (s: CalderaStep) => void;
  /** The LR step's SVD (see CalderaSettings.svd; default 'auto'). */
  svd?: CalderaSettings['svd'];
  /** Seconds per phase are added here (see CalderaSettings.profile). */
  profile?: Record<string, number>;
}

export interface CalderaLayerResult {
  layer: QlrLinear;
  decomposition: CalderaDecomposition<QuantizedMatrix | E8pMatrix, QuantizedMatrix, QuantizedMatrix>;
}

/** Rows [from, to) of a quantized matrix as a qlr part, its scales multiplied by `gain`. */
function part(
  q: QuantizedMatrix,
  from: number,
  to: number,
  gain: number,
  perTensor = false,
): QlrQuantizedPart {
  const c = q.cols;
  return {
    bits: q.grid.bits,
    codes: q.codes.slice(from * c, to * c),
    scales: perTensor ? Float32Array.of(q.scales[0]! * gain) : q.scales.slice(from, to).map((s) => s * gain),
  };
}

/**
 * One layer by CALDERA: W (f32 [m, n]) and its input Hessian → a `qlr` layer. With `hadamard`, W and H are
 * first rotated by randomized Hadamard transforms (signs seeded, stored with the layer). W's RMS is folded
 * into the stored scales and the 16-bit ranks, so the layer is exactly scale·(Q + L·R) as decomposed.
 */
export async function calderaLayer(
  weight: Float32Array,
  m: number,
  n: number,
  hessian: Float64Array,
  bias: Float32Array | undefined,
  o: CalderaLayerOptions,
): Promise<CalderaLayerResult> {
  const where = o.name ? `'${o.name}'` : 'the layer';
  if (o.ftRank > o.rank)
    throw new LineageError(`caldera: ftRank ${o.ftRank} exceeds rank ${o.rank} at ${where}`);
  const e8p = o.qCodebook === E8P12;
  if (e8p && o.qBits !== 2)
    throw new LineageError(
      `caldera: Q on the ${E8P12} codebook has 2 bits, got qBits ${o.qBits} at ${where}`,
    );
  let w: Float64Array = Float64Array.from(weight);
  let h: Float64Array = hessian;
  const inc = o.hadamard ? randomIncoherence(m, n, o.seed ?? 42, 'both') : undefined;
  if (inc) {
    const t0 = performance.now();
    w = transformWeight(w, m, n, inc);
    h = transformHessian(hessian, inc.signsIn);
    if (o.profile) o.profile.hadamard = (o.profile.hadamard ?? 0) + (performance.now() - t0) / 1000;
  }
  const lrBits = o.lrBits === 16 ? undefined : o.lrBits;
  const quantized = lrBits !== undefined;
  const d = await calderaDecompose(w, m, n, h, {
    rank: o.rank,
    outerIters: o.outerIters,
    lplrIters: o.lplrIters,
    quantizeQ: (e8p ? qE8pQuantizer(o.name) : qQuantizer(o.qBits, o.name)) as MatrixQuantizer<
      QuantizedMatrix | E8pMatrix
    >,
    ...(lrBits ? { quantizeL: lQuantizer(lrBits), quantizeR: rQuantizer(lrBits) } : {}),
    hessianDowndate: o.hessianDowndate,
    ...(o.name ? { name: o.name } : {}),
    ...(o.onStep ? { onStep: o.onStep } : {}),
    ...(o.svd ? { svd: o.svd } : {}),
    ...(o.profile ? { profile: o.profile } : {}),
  });
  const k = o.rank;
  const ft = quantized ? o.ftRank : k;
  const g = d.scale;
  // 16-bit ranks: the leading columns of L and rows of R, as decomposed (their dequantized values).
  const lFt = new Float32Array(m * ft);
  for (let i = 0; i < m; i++) for (let j = 0; j < ft; j++) lFt[i * ft + j] = g * d.L.values[i * k + j]!;
  const rFt = Float32Array.from(d.R.values.subarray(0, ft * n));
  const layer = QlrLinear.fromParts({
    out: m,
    in: n,
    q: e8p
      ? {
          bits: 2,
          codebook: E8P12,
          codes: (d.Q.payload as E8pMatrix).codes,
          scales: Float32Array.of((d.Q.payload as E8pMatrix).scales[0]! * g),
        }
      : part(d.Q.payload as QuantizedMatrix, 0, m, g, true),
    ...(quantized && ft < k
      ? {
          lt: part(d.L.payload as QuantizedMatrix, ft, k, g),
          r: part(d.R.payload as QuantizedMatrix, ft, k, 1),
        }
      : {}),
    ...(ft > 0 ? { ftRank: ft, lFt, rFt } : {}),
    ...(inc ? { signsIn: inc.signsIn, signsOut: inc.signsOut } : {}),
    ...(bias ? { bias } : {}),
  });
  return { layer, decomposition: d as CalderaLayerResult['decomposition'] };
}
