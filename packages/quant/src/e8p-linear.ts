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
  type Selection,
  storedStats,
  type Tensor,
  takeAlong,
} from '@lineage/core';
import { dequantizedLinear, releaseDequantized } from './dequantized-forward.js';
import { E8P12, type E8pMatrix, e8pDecodeInto, e8pWidth } from './e8p.js';
import { type Incoherence, untransformWeight } from './hadamard.js';

/** What config.json records of a `quantized` layer on the E8P12 codebook (its tensors carry the rest). */
export interface E8pMeta {
  codebook: typeof E8P12;
  /** 2 bits per weight (one 16-bit code per 8). */
  bits: 2;
  hadamard: boolean;
  /** Width of the quantized matrix before padding to a multiple of 8 (the layer's inputs, before `select`). */
  columns: number;
  /** Kept input columns / output rows of the stored matrix, after a `select` the codes cannot follow. */
  inputs?: number[];
  outputs?: number[];
}

const signBits = (s: Int8Array) =>
  HostTensor.fromF32(
    Float32Array.from(s, (v) => (v < 0 ? 1 : 0)),
    [s.length],
    'u1',
  );

/**
 * y = x·Wᵀ + b with W on QuIP#'s E8P12 lattice codebook (e8p.ts), a variant of the `quantized` kind (meta
 * `codebook: 'e8p12'`), stored as
 *
 * - `codes`  [out, ⌈in/8⌉]  u16: one codeword index per 8 consecutive input columns, the width padded to a
 *   multiple of 8 (172 → 176; the padding's weights are dropped when decoding);
 * - `scales` [out, 1]       f16: w = scale·codeword;
 * - `signs_in` [in] / `signs_out` [out] u1 (1 = −1), with Hadamard incoherence: the codes hold
 *   W̃ = T_out·W·T_inᵀ, as in the scalar kind;
 * - `bias`   [out]          f32, when the layer has one (the only trainable tensor).
 *
 * Forward decodes on the host (a table of all 2^16 codewords, built once) into a transient f32 weight, the
 * incoherence undone, uploads it and runs one linear; `cacheDequantized` keeps it per backend instead.
 *
 * A codeword spans 8 columns, so input columns cannot be cut out of the codes: `select` keeps the stored
 * matrix and records the kept inputs (and, with an output-side transform, the kept outputs) in its meta,
 * as the `qlr` kind does under Hadamard. Rows without an output transform slice exactly.
 */
export class E8pLinear implements LinearLayer {
  readonly kind = 'quantized';
  readonly codes: Parameter;
  readonly scales: Parameter;
  readonly signsIn: Parameter | undefined;
  readonly signsOut: Parameter | undefined;
  readonly bias: Parameter | undefined;
  /** Width of the stored matrix before padding. */
  readonly columns: number;
  private readonly sel: { in?: Int32Array; out?: Int32Array };
  cacheDequantized = false;
  private cache = new Map<Backend, Tensor>();

  constructor(
    tensors: {
      codes: HostTensor;
      scales: HostTensor;
      signsIn?: HostTensor;
      signsOut?: HostTensor;
      bias?: HostTensor;
    },
    meta: { hadamard: boolean; columns: number; inputs?: Int32Array; outputs?: Int32Array },
    where = 'E8pLinear',
  ) {
    const { codes, scales, signsIn, signsOut, bias } = tensors;
    const bad = (m: string): never => {
      throw new LineageError(`quantized layer '${where}' (e8p12): ${m}`);
    };
    const n = meta.columns;
    if (!Number.isInteger(n) || n < 1) bad(`columns ${n} in its meta is not a whole number ≥ 1`);
    const nb = e8pWidth(n) / 8;
    if (codes.dtype !== 'u16' || codes.shape.length !== 2 || codes.shape[1] !== nb)
      bad(`codes must be u16 [out, ${nb}] for ${n} columns, got ${codes.dtype} [${codes.shape}]`);
    const m = codes.shape[0]!;
    const shapeIs = (t: HostTensor, s: number[]) =>
      t.shape.length === s.length && t.shape.every((d, i) => d === s[i]);
    if (scales.dtype !== 'f16' || !shapeIs(scales, [m, 1]))
      bad(`scales must be f16 [${m}, 1], got ${scales.dtype} [${scales.shape}]`);
    if (meta.hadamard !== (signsIn !== undefined) || (signsOut && !signsIn))
      bad(meta.hadamard ? 'Hadamard signs are missing' : 'Hadamard signs without hadamard in its meta');
    if (signsIn && (signsIn.dtype !== 'u1' || !shapeIs(signsIn, [n])))
      bad(`signs_in must be u1 [${n}], got ${signsIn.dtype} [${signsIn.shape}]`);
    if (signsOut && (signsOut.dtype !== 'u1' || !shapeIs(signsOut, [m])))
      bad(`signs_out must be u1 [${m}], got ${signsOut.dtype} [${signsOut.shape}]`);
    for (const [side, idx, size] of [
      ['inputs', meta.inputs, n],
      ['outputs', meta.outputs, m],
    ] as const)
      if (idx && (idx.length === 0 || idx.some((i) => !Number.isInteger(i) || i < 0 || i >= size)))
        bad(`selected ${side} in its meta must be indices below ${size}`);
    if (meta.outputs && !signsOut) bad('selected outputs in its meta need the output-side signs');
    this.columns = n;
    this.sel = {
      ...(meta.inputs ? { in: meta.inputs } : {}),
      ...(meta.outputs ? { out: meta.outputs } : {}),
    };
    const frozen = (t: HostTensor) => new Parameter(t, false);
    this.codes = frozen(codes);
    this.scales = frozen(scales);
    this.signsIn = signsIn && frozen(signsIn);
    this.signsOut = signsOut && frozen(signsOut);
    this.bias = bias ? new Parameter(bias) : undefined;
    if (bias && !shapeIs(bias, [this.outFeatures]))
      bad(`bias [${bias.shape}] does not match [${this.outFeatures}] outputs`);
  }

  /**
   * Packs an E8P matrix of a layer `columns` wide (q.cols: that width padded to a multiple of 8) and the
   * incoherence signs it was quantized under into a layer.
   */
  static fromE8p(
    q: E8pMatrix,
    columns: number,
    o: { incoherence?: Incoherence; bias?: Float32Array } = {},
  ): E8pLinear {
    if (q.cols !== e8pWidth(columns))
      throw new RangeError(`E8pLinear: ${q.cols} stored columns do not pad ${columns} to a multiple of 8`);
    return new E8pLinear(
      {
        codes: new HostTensor('u16', [q.rows, q.cols / 8], Uint16Array.from(q.codes)),
        scales: HostTensor.fromF32(q.scales, [q.rows, 1], 'f16'),
        ...(o.incoherence
          ? {
              signsIn: signBits(o.incoherence.signsIn),
              ...(o.incoherence.signsOut.length ? { signsOut: signBits(o.incoherence.signsOut) } : {}),
            }
          : {}),
        ...(o.bias ? { bias: new HostTensor('f32', [o.bias.length], o.bias.slice()) } : {}),
      },
      { hadamard: o.incoherence !== undefined, columns },
    );
  }

  /** Rows of the stored matrix (before an output selection). */
  get storedRows(): number {
    return this.codes.shape[0]!;
  }
  get outFeatures(): number {
    return this.sel.out?.length ?? this.storedRows;
  }
  get inFeatures(): number {
    return this.sel.in?.length ?? this.columns;
  }

  /** The stored matrix as an E8pMatrix (padded width). */
  toE8p(): E8pMatrix {
    return {
      rows: this.storedRows,
      cols: e8pWidth(this.columns),
      codes: this.codes.value.data as Uint16Array,
      scales: this.scales.value.toF32(),
    };
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

  /** The decoded stored matrix [storedRows, columns], padding dropped, in the coordinates it was quantized in. */
  storedWeight64(): Float64Array {
    const m = this.storedRows;
    const out = new Float64Array(m * this.columns);
    e8pDecodeInto(
      this.codes.value.data as Uint16Array,
      this.scales.value.toF32(),
      m,
      this.codes.shape[1]!,
      this.columns,
      out,
    );
    return out;
  }

  /** W in float64: the codewords, the incoherence undone, the selection applied. */
  denseWeight64(): Float64Array {
    const m = this.storedRows;
    const n = this.columns;
    let w = this.storedWeight64();
    const t = this.incoherence();
    if (t) w = untransformWeight(w, m, n, t);
    const { in: ci, out: ro } = this.sel;
    if (!ci && !ro) return w;
    const rows = ro ?? Int32Array.from({ length: m }, (_, i) => i);
    const cols = ci ?? Int32Array.from({ length: n }, (_, i) => i);
    const out = new Float64Array(rows.length * cols.length);
    for (let r = 0; r < rows.length; r++)
      for (let c = 0; c < cols.length; c++) out[r * cols.length + c] = w[rows[r]! * n + cols[c]!]!;
    return out;
  }

  /** W as f32 (what forward uploads): without transform or selection straight from the table. */
  denseWeight(): Float32Array {
    if (this.signsIn || this.sel.in || this.sel.out) return Float32Array.from(this.denseWeight64());
    const out = new Float32Array(this.storedRows * this.columns);
    e8pDecodeInto(
      this.codes.value.data as Uint16Array,
      this.scales.value.toF32(),
      this.storedRows,
      this.codes.shape[1]!,
      this.columns,
      out,
    );
    return out;
  }

  denseBias(): Float32Array | undefined {
    return this.bias?.value.toF32();
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
    if (this.signsIn) m.set('signs_in', this.signsIn);
    if (this.signsOut) m.set('signs_out', this.signsOut);
    if (this.bias) m.set('bias', this.bias);
    return m;
  }

  /** The stored tensors: u16 codes, f16 scales, u1 signs and the bias, as saved. */
  stats(): LayerStats {
    return storedStats(this.parameters());
  }

  meta(): Json {
    return {
      codebook: E8P12,
      bits: 2,
      hadamard: this.signsIn !== undefined,
      columns: this.columns,
      ...(this.sel.in ? { inputs: [...this.sel.in] } : {}),
      ...(this.sel.out ? { outputs: [...this.sel.out] } : {}),
    } satisfies E8pMeta;
  }

  /**
   * Rows slice the codes, scales and bias where there is no output-side transform; otherwise rows, and
   * columns always, are kept as indices into the stored matrix (meta `outputs` / `inputs`).
   */
  select(selection: Selection): E8pLinear {
    const { rows, cols } = checkSelection(
      selection,
      [this.outFeatures, this.inFeatures],
      'a quantized layer',
    );
    const compose = (prev: Int32Array | undefined, idx: Int32Array) =>
      Int32Array.from(idx, (i) => (prev ? prev[i]! : i));
    const take = (t: HostTensor | undefined, idx: Int32Array | undefined) =>
      t && idx ? takeAlong(t, 0, idx) : t;
    const inputs = cols ? compose(this.sel.in, cols) : this.sel.in;
    const outputs = this.signsOut && rows ? compose(this.sel.out, rows) : this.sel.out;
    const direct = this.signsOut ? undefined : rows; // rows sliced in the stored tensors
    const out = new E8pLinear(
      {
        codes: take(this.codes.value, direct)!,
        scales: take(this.scales.value, direct)!,
        ...(this.signsIn ? { signsIn: this.signsIn.value } : {}),
        ...(this.signsOut ? { signsOut: this.signsOut.value } : {}),
        ...(this.bias ? { bias: take(this.bias.value, rows)! } : {}),
      },
      {
        hadamard: this.signsIn !== undefined,
        columns: this.columns,
        ...(inputs ? { inputs } : {}),
        ...(outputs ? { outputs } : {}),
      },
    );
    carryTrainable(this, out);
    return out;
  }
}

/** The `quantized` kind's loader for meta `codebook: 'e8p12'` (see E8pLinear). */
export function loadE8pLinear(
  tensors: ReadonlyMap<string, HostTensor>,
  meta: Record<string, unknown>,
  where: string,
  [out, inp]: [number, number],
): E8pLinear {
  const codes = tensors.get('codes');
  const scales = tensors.get('scales');
  if (!codes || !scales)
    throw new LineageError(`quantized layer '${where}' needs tensors '${where}.codes' and '${where}.scales'`);
  const ints = (v: unknown, what: string) => {
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((i) => !Number.isInteger(i)))
      throw new LineageError(
        `quantized layer '${where}': meta ${what} in config.json must be a list of indices`,
      );
    return Int32Array.from(v as number[]);
  };
  if (meta.bits !== 2)
    throw new LineageError(
      `quantized layer '${where}': the e8p12 codebook stores 2 bits per weight, config.json says bits ${String(meta.bits)}`,
    );
  const inputs = ints(meta.inputs, 'inputs');
  const outputs = ints(meta.outputs, 'outputs');
  const opt = (k: string) => tensors.get(k);
  const l = new E8pLinear(
    {
      codes,
      scales,
      ...(opt('signs_in') ? { signsIn: opt('signs_in')! } : {}),
      ...(opt('signs_out') ? { signsOut: opt('signs_out')! } : {}),
      ...(opt('bias') ? { bias: opt('bias')! } : {}),
    },
    {
      hadamard: meta.hadamard === true,
      columns: typeof meta.columns === 'number' ? meta.columns : Number.NaN,
      ...(inputs ? { inputs } : {}),
      ...(outputs ? { outputs } : {}),
    },
    where,
  );
  if (l.outFeatures !== out || l.inFeatures !== inp)
    throw new LineageError(
      `quantized layer '${where}' (e8p12): its tensors and meta make [${l.outFeatures}, ${l.inFeatures}], the config implies [${out}, ${inp}]`,
    );
  return l;
}
