import {
  type Backend,
  carryTrainable,
  checkSelection,
  HostTensor,
  type Json,
  type LayerStats,
  LineageError,
  type LinearLayer,
  type Ops,
  Parameter,
  registerLinearKind,
  type Selection,
  storedStats,
  type Tensor,
  takeAlong,
} from '@lineage/core';
import { registerLayerExporter } from '@lineage/onnx';
import { dequantizedLinear, releaseDequantized } from './dequantized-forward.js';
import { E8P12 } from './e8p.js';
import { loadE8pLinear } from './e8p-linear.js';
import {
  checkGrid,
  codeDType,
  dequantize,
  groupsPerRow,
  groupWidth,
  QUANT_BITS,
  type QuantBits,
  type QuantizedMatrix,
  type ScalarGrid,
} from './grid.js';
import { type Incoherence, untransformWeight } from './hadamard.js';
import { quantizedExporter } from './quantized-onnx.js';

/** The layer kind name recorded in config.json for quantized layers. */
export const QUANTIZED_KIND = 'quantized';

/** What config.json records of a quantized layer (its tensors carry the rest). */
export interface QuantizedMeta {
  bits: QuantBits;
  /** Input columns per group; 0 = the whole row. */
  groupSize: number;
  zeroPoint: boolean;
  /** Randomized Hadamard incoherence: the weight is stored as T_out·W·T_inᵀ with the signs beside it. */
  hadamard: boolean;
}

export interface QuantizedLinearOptions {
  /** The signs of the incoherence transform the matrix was quantized under (W̃ = T_out·W·T_inᵀ). */
  incoherence?: Incoherence;
  bias?: Float32Array;
}

/**
 * y = x·Wᵀ + b with W on a scalar grid (see ScalarGrid), stored as
 *
 * - `codes`  [out, in]      u2 / u3 / u4 (core's packed payloads) or u8: one code per weight, row-major;
 * - `scales` [out, groups]  f16: one per row and group of `groupSize` input columns (the last group shorter);
 * - `zeros`  [out, groups]  at `bits` bits, with zero points only;
 * - `signs_in` [in] u1 (1 = −1), with Hadamard incoherence only: the stored grid then holds W̃ = W·T_inᵀ
 *   and W = W̃·T_in; `signs_out` [out] u1 with the optional output side too (W̃ = T_out·W·T_inᵀ);
 * - `bias`   [out]          f32, when the layer has one (the only trainable tensor).
 *
 * Forward dequantizes on the host into a transient f32 weight (the incoherence transforms folded in, fast
 * Walsh–Hadamard and DCT), uploads it, runs one linear and frees it: what stays resident is the packed
 * payload. `cacheDequantized` keeps the f32 weight per backend instead (the memory of a dense layer).
 */
export class QuantizedLinear implements LinearLayer {
  readonly kind = QUANTIZED_KIND;
  readonly codes: Parameter;
  readonly scales: Parameter;
  readonly zeros: Parameter | undefined;
  readonly signsIn: Parameter | undefined;
  readonly signsOut: Parameter | undefined;
  readonly bias: Parameter | undefined;
  readonly grid: ScalarGrid;
  /** Keep the dequantized f32 weight on each backend after the first forward (off: dequantize per call). */
  cacheDequantized = false;
  private cache = new Map<Backend, Tensor>();

  constructor(
    tensors: {
      codes: HostTensor;
      scales: HostTensor;
      zeros?: HostTensor;
      signsIn?: HostTensor;
      signsOut?: HostTensor;
      bias?: HostTensor;
    },
    meta: QuantizedMeta,
    where = 'QuantizedLinear',
  ) {
    checkGrid({ bits: meta.bits, groupSize: meta.groupSize }, where);
    const { codes, scales, zeros, signsIn, signsOut, bias } = tensors;
    const bad = (m: string): never => {
      throw new LineageError(`quantized layer '${where}': ${m}`);
    };
    if (codes.shape.length !== 2) bad(`codes must be 2-D, got [${codes.shape}]`);
    const [out, inp] = codes.shape as [number, number];
    if (codes.dtype !== codeDType(meta.bits))
      bad(`codes are ${codes.dtype}, ${meta.bits} bits need ${codeDType(meta.bits)}`);
    const g = groupsPerRow(inp, meta.groupSize);
    const shapeIs = (t: HostTensor, s: number[]) =>
      t.shape.length === s.length && t.shape.every((d, i) => d === s[i]);
    if (scales.dtype !== 'f16' || !shapeIs(scales, [out, g]))
      bad(`scales must be f16 [${out}, ${g}], got ${scales.dtype} [${scales.shape}]`);
    if (meta.zeroPoint !== (zeros !== undefined))
      bad(meta.zeroPoint ? 'zero points are missing' : 'zero points without zeroPoint in its meta');
    if (zeros && (zeros.dtype !== codes.dtype || !shapeIs(zeros, [out, g])))
      bad(`zeros must be ${codes.dtype} [${out}, ${g}], got ${zeros.dtype} [${zeros.shape}]`);
    if (meta.hadamard !== (signsIn !== undefined) || (signsOut && !signsIn))
      bad(meta.hadamard ? 'Hadamard signs are missing' : 'Hadamard signs without hadamard in its meta');
    if (signsIn && (signsIn.dtype !== 'u1' || !shapeIs(signsIn, [inp])))
      bad(`signs_in must be u1 [${inp}], got ${signsIn.dtype} [${signsIn.shape}]`);
    if (signsOut && (signsOut.dtype !== 'u1' || !shapeIs(signsOut, [out])))
      bad(`signs_out must be u1 [${out}], got ${signsOut.dtype} [${signsOut.shape}]`);
    if (bias && !shapeIs(bias, [out])) bad(`bias [${bias.shape}] does not match [${out}] outputs`);
    const frozen = (t: HostTensor) => new Parameter(t, false);
    this.codes = frozen(codes);
    this.scales = frozen(scales);
    this.zeros = zeros && frozen(zeros);
    this.signsIn = signsIn && frozen(signsIn);
    this.signsOut = signsOut && frozen(signsOut);
    this.bias = bias ? new Parameter(bias) : undefined;
    this.grid = { bits: meta.bits, groupSize: meta.groupSize, zeroPoint: meta.zeroPoint };
  }

  /** Packs a quantized matrix (and the incoherence signs it was quantized under) into a layer. */
  static fromQuantized(q: QuantizedMatrix, o: QuantizedLinearOptions = {}): QuantizedLinear {
    const dtype = codeDType(q.grid.bits);
    const g = q.scales.length / q.rows;
    const signs = (s: Int8Array) =>
      HostTensor.fromF32(
        Float32Array.from(s, (v) => (v < 0 ? 1 : 0)),
        [s.length],
        'u1',
      );
    return new QuantizedLinear(
      {
        codes: HostTensor.fromF32(Float32Array.from(q.codes), [q.rows, q.cols], dtype),
        scales: HostTensor.fromF32(q.scales, [q.rows, g], 'f16'),
        ...(q.grid.zeroPoint && q.zeros ? { zeros: HostTensor.fromF32(q.zeros, [q.rows, g], dtype) } : {}),
        ...(o.incoherence
          ? {
              signsIn: signs(o.incoherence.signsIn),
              ...(o.incoherence.signsOut.length ? { signsOut: signs(o.incoherence.signsOut) } : {}),
            }
          : {}),
        ...(o.bias ? { bias: new HostTensor('f32', [o.bias.length], o.bias.slice()) } : {}),
      },
      {
        bits: q.grid.bits,
        groupSize: q.grid.groupSize,
        zeroPoint: q.grid.zeroPoint === true,
        hadamard: o.incoherence !== undefined,
      },
    );
  }

  get outFeatures(): number {
    return this.codes.shape[0]!;
  }
  get inFeatures(): number {
    return this.codes.shape[1]!;
  }

  /** The stored grid as a QuantizedMatrix (codes unpacked). */
  toQuantized(): QuantizedMatrix {
    const q: QuantizedMatrix = {
      rows: this.outFeatures,
      cols: this.inFeatures,
      grid: { ...this.grid },
      codes: this.codes.value.toInts(),
      scales: this.scales.value.toF32(),
    };
    if (this.zeros) q.zeros = this.zeros.value.toF32();
    return q;
  }

  /** The incoherence signs (±1), when the layer has them. */
  incoherence(): Incoherence | undefined {
    if (!this.signsIn) return undefined;
    const pm = (t: HostTensor) => Int8Array.from(t.toInts(), (b) => (b ? -1 : 1));
    return {
      signsIn: pm(this.signsIn.value),
      signsOut: this.signsOut ? pm(this.signsOut.value) : new Int8Array(0),
    };
  }

  /** W in float64: the grid's values, the incoherence transforms undone. */
  denseWeight64(): Float64Array {
    const w = dequantize(this.toQuantized());
    const t = this.incoherence();
    return t ? untransformWeight(w, this.outFeatures, this.inFeatures, t) : w;
  }

  forward(ops: Ops, x: Tensor): Promise<Tensor> {
    return dequantizedLinear(ops, x, {
      cache: this.cache,
      cached: this.cacheDequantized,
      shape: [this.outFeatures, this.inFeatures],
      weight: () => this.denseWeight(),
      bias: this.bias?.tensor(ops.backend),
    });
  }

  /** Frees the cached dequantized weights. */
  release(): void {
    releaseDequantized(this.cache);
  }

  parameters(): ReadonlyMap<string, Parameter> {
    const m = new Map<string, Parameter>([
      ['codes', this.codes],
      ['scales', this.scales],
    ]);
    if (this.zeros) m.set('zeros', this.zeros);
    if (this.signsIn) m.set('signs_in', this.signsIn);
    if (this.signsOut) m.set('signs_out', this.signsOut);
    if (this.bias) m.set('bias', this.bias);
    return m;
  }

  /** The stored tensors: packed codes, f16 scales, zero points, signs and bias, as saved. */
  stats(): LayerStats {
    return storedStats(this.parameters());
  }

  meta(): Json {
    return {
      bits: this.grid.bits,
      groupSize: this.grid.groupSize,
      zeroPoint: this.grid.zeroPoint === true,
      hadamard: this.signsIn !== undefined,
    };
  }

  /** W as f32 (what forward uploads): without incoherence straight from the codes, no float64 detour. */
  denseWeight(): Float32Array {
    if (this.signsIn) return Float32Array.from(this.denseWeight64());
    const rows = this.outFeatures;
    const cols = this.inFeatures;
    const codes = this.codes.value.toInts();
    const scales = this.scales.value.toF32();
    const zeros = this.zeros?.value.toF32();
    const gpr = groupsPerRow(cols, this.grid.groupSize);
    const gw = groupWidth(cols, this.grid.groupSize);
    const sym = ((1 << this.grid.bits) - 1) / 2;
    const out = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++)
      for (let g = 0; g < gpr; g++) {
        const s = scales[r * gpr + g]!;
        const z = zeros ? zeros[r * gpr + g]! : sym;
        const c1 = Math.min(cols, (g + 1) * gw);
        for (let p = r * cols + g * gw, e = r * cols + c1; p < e; p++) out[p] = s * (codes[p]! - z);
      }
    return out;
  }

  denseBias(): Float32Array | undefined {
    return this.bias?.value.toF32();
  }

  /**
   * Rows slice codes, scales, zero points and the bias as they are (an input-side Hadamard transform stays:
   * rows of W·T_inᵀ are rows of W, transformed). Columns slice them too where every row has one group and
   * there is no input-side transform. Anything else cannot be sliced without requantizing and is refused
   * (slice the model before quantizing it, or `convert --dense` first).
   */
  select(selection: Selection): QuantizedLinear {
    const { rows, cols } = checkSelection(
      selection,
      [this.outFeatures, this.inFeatures],
      `a ${this.kind} layer`,
    );
    const refuse = (why: string): never => {
      throw new LineageError(`${why} cannot be sliced exactly; prune before quantizing`);
    };
    if (this.signsOut && rows)
      refuse('the output rows of a quantized layer with output-side Hadamard incoherence');
    if (this.signsIn && cols) refuse('the input columns of a quantized layer with Hadamard incoherence');
    if (cols && groupsPerRow(this.inFeatures, this.grid.groupSize) > 1)
      refuse(`the input columns of a quantized layer with groups of ${this.grid.groupSize}`);
    const take = (t: HostTensor | undefined, axis: 0 | 1, idx: Int32Array | undefined) =>
      t && idx ? takeAlong(t, axis, idx) : t;
    const out = new QuantizedLinear(
      {
        codes: take(take(this.codes.value, 0, rows), 1, cols)!,
        scales: take(this.scales.value, 0, rows)!,
        ...(this.zeros ? { zeros: take(this.zeros.value, 0, rows)! } : {}),
        ...(this.signsIn ? { signsIn: this.signsIn.value } : {}),
        ...(this.signsOut ? { signsOut: this.signsOut.value } : {}),
        ...(this.bias ? { bias: take(this.bias.value, 0, rows)! } : {}),
      },
      this.meta() as unknown as QuantizedMeta,
    );
    carryTrainable(this, out);
    return out;
  }
}

function parseMeta(meta: Json, where: string): QuantizedMeta {
  const m = (meta ?? {}) as Partial<Record<keyof QuantizedMeta, unknown>>;
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta))
    throw new LineageError(`quantized layer '${where}': config.json records no meta for it`);
  if (!QUANT_BITS.includes(m.bits as QuantBits))
    throw new LineageError(
      `quantized layer '${where}': bits ${String(m.bits)} in config.json is not one of ${QUANT_BITS.join(', ')}`,
    );
  if (typeof m.groupSize !== 'number' || !Number.isInteger(m.groupSize) || m.groupSize < 0)
    throw new LineageError(
      `quantized layer '${where}': group size ${String(m.groupSize)} in config.json is not a whole number ≥ 0`,
    );
  return {
    bits: m.bits as QuantBits,
    groupSize: m.groupSize,
    zeroPoint: m.zeroPoint === true,
    hadamard: m.hadamard === true,
  };
}

registerLinearKind({
  kind: QUANTIZED_KIND,
  load(tensors, meta, where, [out, inp]) {
    // a lattice codebook instead of the scalar grid (E8pLinear)
    const codebook = (meta as { codebook?: unknown } | null)?.codebook;
    if (codebook !== undefined) {
      if (codebook !== E8P12)
        throw new LineageError(
          `quantized layer '${where}': codebook ${JSON.stringify(codebook)} in config.json is not '${E8P12}'`,
        );
      return loadE8pLinear(tensors, meta as Record<string, unknown>, where, [out, inp]);
    }
    const codes = tensors.get('codes');
    const scales = tensors.get('scales');
    if (!codes || !scales)
      throw new LineageError(
        `quantized layer '${where}' needs tensors '${where}.codes' and '${where}.scales'`,
      );
    if (codes.shape.length !== 2 || codes.shape[0] !== out || codes.shape[1] !== inp)
      throw new LineageError(
        `quantized layer '${where}': codes [${codes.shape}] are not the [${out}, ${inp}] the config implies`,
      );
    const opt = (k: string) => tensors.get(k);
    return new QuantizedLinear(
      {
        codes,
        scales,
        ...(opt('zeros') ? { zeros: opt('zeros')! } : {}),
        ...(opt('signs_in') ? { signsIn: opt('signs_in')! } : {}),
        ...(opt('signs_out') ? { signsOut: opt('signs_out')! } : {}),
        ...(opt('bias') ? { bias: opt('bias')! } : {}),
      },
      parseMeta(meta, where),
      where,
    );
  },
});

// Its ONNX export (lineage export): onnxruntime's MatMulNBits on the stored codes and scales.
registerLayerExporter(QUANTIZED_KIND, quantizedExporter);
