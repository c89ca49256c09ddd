import { type Json, LineageError, type LinearLayer, type LlamaModel, type Progress } from '@lineage/core';
import { matmul64, matrix64 } from '@lineage/linalg';
import { E8P12, ldlqE8p, padForE8p } from './e8p.js';
import { E8pLinear } from './e8p-linear.js';
import type { QuantBits, ScalarGrid } from './grid.js';
import { type Incoherence, randomIncoherence, transformHessian, transformWeight } from './hadamard.js';
import { ldlq } from './ldlq.js';
import { QuantizedLinear } from './quantized-linear.js';
import { rtn } from './rtn.js';

/** Input Hessians (E[x·xᵀ] of each layer's input, float64, in·in) by layer name: calibrate's statistics. */
export interface HessianSource {
  hessian(layer: string): Promise<Float64Array>;
}

/**
 * Sequential (GPTQ-style) calibration as @lineage/calibrate's `calibrationWalk` offers it: walks the model
 * block by block, each block's Hessians taken from inputs that went through the blocks already quantized.
 */
export type SequentialHessians = (
  model: LlamaModel,
  visit: (block: {
    readonly layers: readonly string[];
    hessian(layer: string): Promise<Float64Array>;
  }) => Promise<void>,
) => Promise<unknown>;

export interface QuantizeModelOptions {
  quantizer: 'rtn' | 'ldlq';
  bits: QuantBits;
  /** Input columns per group (a width ≥ the layer's: one group per row). */
  groupSize: number;
  zeroPoint?: boolean;
  /**
   * 'e8p12': QuIP#'s E8P12 lattice codebook (2 bits per weight, one 16-bit code per 8, an f16 scale per row;
   * `bits` must be 2, `groupSize` and `zeroPoint` do not apply); default 'scalar': the grid of `bits`.
   */
  codebook?: 'scalar' | typeof E8P12;
  /** Randomized Hadamard incoherence (signs stored with each layer). */
  hadamard?: boolean;
  /** Transform the output side too (default: the input side only). */
  hadamardOutput?: boolean;
  /** Seed of the Hadamard signs (each layer draws its own from it). */
  seed?: number;
  /** LDLQ's relative damping (default 0.01). */
  damp?: number;
  /** Input Hessians (LDLQ). */
  hessians?: HessianSource;
  /** Instead of `hessians`: each block's Hessians from a walk through the already quantized blocks. */
  sequential?: SequentialHessians;
  /** Also quantize an untied output head (default: the block linears only). */
  includeHead?: boolean;
  progress?: Progress;
}

export interface QuantizedLayerOutcome {
  name: string;
  shape: [number, number];
  /** Stored bytes × 8 / weights (payload, scales, zero points, signs). */
  bitsPerParam: number;
  /** LDLQ's proxy loss relative to the weight's: tr(ΔHΔᵀ)/tr(WHWᵀ) (RTN: the same measure when H is known). */
  relError?: number;
}

export interface QuantizeModelResult {
  model: LlamaModel;
  layers: QuantizedLayerOutcome[];
}

/** The layers a quantizer replaces: every block linear (and the untied head when asked). */
export function quantizableLayers(model: LlamaModel, includeHead = false): [string, LinearLayer][] {
  return model.linearLayers().filter(([name]) => name !== 'lm_head' || includeHead);
}

/** A copy of `model` with its block linears quantized (RTN or LDLQ, with or without incoherence). */
export async function quantizeModel(
  model: LlamaModel,
  o: QuantizeModelOptions,
): Promise<QuantizeModelResult> {
  if (o.quantizer === 'ldlq' && !o.hessians && !o.sequential)
    throw new LineageError('ldlq needs the input Hessians of every layer');
  if (o.sequential && o.includeHead)
    throw new LineageError('the sequential calibration walk covers the decoder blocks, not an untied head');
  const copy = model.clone();
  const layers = quantizableLayers(copy, o.includeHead);
  for (const [name, layer] of layers)
    if (layer.kind !== 'linear')
      throw new LineageError(
        `${o.quantizer}: layer '${name}' is a '${layer.kind}' layer (the model is already compressed); the quantizers take dense layers: quantize its dense parent, or make it dense first (lineage convert --dense)`,
        undefined,
        { inModel: true },
      );
  const e8p = o.codebook === E8P12;
  if (e8p && o.bits !== 2)
    throw new LineageError(
      `the ${E8P12} codebook stores 2 bits per weight; bits ${o.bits} needs the scalar grid`,
    );
  const grid: ScalarGrid = { bits: o.bits, groupSize: o.groupSize, zeroPoint: o.zeroPoint === true };
  const outcomes: QuantizedLayerOutcome[] = [];
  o.progress?.start('quantize', layers.length);
  const quantizeOne = async (i: number, name: string, layer: LinearLayer, hessian?: Float64Array) => {
    const rows = layer.outFeatures;
    const cols = layer.inFeatures;
    let w: Float64Array = Float64Array.from(layer.denseWeight());
    let h = hessian;
    if (h && h.length !== cols * cols)
      throw new LineageError(
        `layer '${name}': its Hessian is ${Math.sqrt(h.length)}-wide, the layer reads ${cols} inputs`,
        undefined,
        { inModel: true },
      );
    let t: Incoherence | undefined;
    if (o.hadamard) {
      t = randomIncoherence(rows, cols, ((o.seed ?? 0) + 2 * i) >>> 0, o.hadamardOutput ? 'both' : 'input');
      w = transformWeight(w, rows, cols, t);
      if (h) h = transformHessian(h, t.signsIn);
    }
    const bias = layer.denseBias();
    const extra = { ...(t ? { incoherence: t } : {}), ...(bias ? { bias } : {}) };
    let ql: QuantizedLinear | E8pLinear;
    if (e8p) {
      // LDLQ over blocks of 8 columns (block LDLᵀ, b = 8), the width padded to a multiple of 8; rtn: nearest codeword
      const p = padForE8p(w, rows, cols, o.quantizer === 'ldlq' ? h : undefined);
      const damp = o.damp !== undefined ? { damp: o.damp } : {};
      ql = E8pLinear.fromE8p(ldlqE8p(p.w, rows, p.cols, p.h, damp, `ldlq ${name}`), cols, extra);
    } else {
      const q =
        o.quantizer === 'ldlq'
          ? ldlq(w, rows, cols, h!, { ...grid, ...(o.damp !== undefined ? { damp: o.damp } : {}) }, name)
          : rtn(w, rows, cols, grid);
      ql = QuantizedLinear.fromQuantized(q, extra);
    }
    copy.setLinear(name, ql);
    const biasBytes = ql.bias ? ql.bias.value.byteLength : 0;
    const outcome: QuantizedLayerOutcome = {
      name,
      shape: [rows, cols],
      bitsPerParam: ((ql.stats().bytes - biasBytes) * 8) / (rows * cols),
    };
    if (h) outcome.relError = relativeProxyError(w, ql, h, t);
    outcomes.push(outcome);
    o.progress?.tick();
  };
  if (o.sequential) {
    const index = new Map(layers.map(([name], i) => [name, i]));
    await o.sequential(copy, async (block) => {
      for (const name of block.layers) {
        const i = index.get(name);
        if (i !== undefined) await quantizeOne(i, name, copy.getLinear(name), await block.hessian(name));
      }
    });
  } else {
    for (const [i, [name, layer]] of layers.entries())
      await quantizeOne(i, name, layer, o.hessians ? await o.hessians.hessian(name) : undefined);
  }
  o.progress?.end();
  return { model: copy, layers: outcomes };
}

/** tr(ΔHΔᵀ)/tr(WHWᵀ) in the (transformed) coordinates the layer was quantized in. */
function relativeProxyError(
  w: Float64Array,
  l: QuantizedLinear | E8pLinear,
  h: Float64Array,
  t: Incoherence | undefined,
): number {
  const rows = l.outFeatures;
  const cols = l.inFeatures;
  // The stored grid holds the transformed weight: compare there (T is orthogonal, the ratio is the same).
  const q =
    l instanceof E8pLinear
      ? l.storedWeight64()
      : t
        ? new QuantizedLinear(
            { codes: l.codes.value, scales: l.scales.value, ...(l.zeros ? { zeros: l.zeros.value } : {}) },
            { ...l.grid, zeroPoint: l.grid.zeroPoint === true, hadamard: false },
          ).denseWeight64()
        : l.denseWeight64();
  const d = new Float64Array(rows * cols);
  for (let k = 0; k < d.length; k++) d[k] = w[k]! - q[k]!;
  const H = matrix64(cols, cols, h);
  const dh = matmul64(matrix64(rows, cols, d), H).data;
  const wh = matmul64(matrix64(rows, cols, w), H).data;
  let num = 0;
  let den = 0;
  for (let k = 0; k < d.length; k++) {
    num += dh[k]! * d[k]!;
    den += wh[k]! * w[k]!;
  }
  return den > 0 ? num / den : 0;
}

/** Per-layer record of a quantization for the provenance. */
export function bitsRecord(layers: readonly QuantizedLayerOutcome[]): Record<string, Json> {
  return Object.fromEntries(layers.map((l) => [l.name, Number(l.bitsPerParam.toFixed(4))]));
}
