import {
  checkSelection,
  type DType,
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
import { fromF32, type Matrix64, matmul64, matrix64 } from '@lineage/linalg';
import { registerLayerExporter } from '@lineage/onnx';
import { E8P12, e8pDecodeInto, e8pWidth, incoherenceMatrix } from '@lineage/quant';
import { qlrExporter } from './qlr-onnx.js';

/** The layer kind name recorded in config.json for CALDERA layers. */
export const QLR_KIND = 'qlr';

/** Bits of a quantized part (Q, L or R); the factors may also stay 16-bit. */
export type QlrBits = 2 | 3 | 4 | 8;
const BITS: readonly number[] = [2, 3, 4, 8];

/**
 * One quantized part on a symmetric uniform grid: value = scale·(code − (2^bits − 1)/2); or, for Q with
 * `codebook: 'e8p12'`, on QuIP#'s E8P12 lattice codebook: value = scale·codeword, one 16-bit code per 8
 * columns (the width padded to a multiple of 8), stored u16.
 */
export interface QlrQuantizedPart {
  bits: QlrBits;
  /** Codes, row-major, each in [0, 2^bits − 1]; E8P12: [rows, ⌈cols/8⌉] codeword indices. */
  codes: Int32Array | Uint16Array;
  /** One scale per row, or one for the whole part (length 1). Stored as f16. */
  scales: Float32Array;
  /** Q only: the E8P12 codebook instead of the scalar grid (`bits` is then 2). */
  codebook?: typeof E8P12;
}

/**
 * The parts of a `qlr` layer, in the incoherent coordinates (W̃ = T_out·W·T_inᵀ when signs are given):
 * W̃ ≈ Q + L_q·R_q + L_ft·R_ft, with Q [m, n], L_q stored transposed [kq, m] (one scale per rank component),
 * R_q [kq, n], L_ft [m, ft] and R_ft [ft, n] in 16 bits.
 */
export interface QlrParts {
  out: number;
  in: number;
  q: QlrQuantizedPart;
  /** Lᵀ of the quantized ranks, [kq, out]. */
  lt?: QlrQuantizedPart;
  /** R of the quantized ranks, [kq, in]. */
  r?: QlrQuantizedPart;
  /** The 16-bit (trainable) ranks: L_ft [out, ft] and R_ft [ft, in]. */
  lFt?: Float32Array;
  rFt?: Float32Array;
  ftRank?: number;
  /** Randomized Hadamard signs (±1) of the input and output sides; absent: no incoherence transform. */
  signsIn?: Int8Array;
  signsOut?: Int8Array;
  bias?: Float32Array;
}

const codeDType = (bits: number): DType => (bits === 8 ? 'u8' : (`u${bits}` as DType));

function quantTensors(
  prefix: string,
  p: QlrQuantizedPart,
  rows: number,
  cols: number,
): [string, HostTensor][] {
  const e8p = p.codebook === E8P12;
  const width = e8p ? e8pWidth(cols) / 8 : cols;
  if (p.codes.length !== rows * width)
    throw new RangeError(`qlr: ${prefix} has ${p.codes.length} codes, expected ${rows}×${width}`);
  const s = p.scales.length;
  if (s !== 1 && s !== rows) throw new RangeError(`qlr: ${prefix} has ${s} scales, expected 1 or ${rows}`);
  return [
    [
      prefix,
      e8p
        ? new HostTensor('u16', [rows, width], Uint16Array.from(p.codes))
        : HostTensor.fromF32(Float32Array.from(p.codes), [rows, cols], codeDType(p.bits)),
    ],
    [`${prefix}_scale`, HostTensor.fromF32(p.scales, [s, 1], 'f16')],
  ];
}

const signBits = (s: Int8Array) =>
  HostTensor.fromF32(
    Float32Array.from(s, (v) => (v < 0 ? 1 : 0)),
    [s.length],
    'u1',
  );

/**
 * A CALDERA layer: y = x·(Q + L·R)ᵀ + b computed in the incoherent coordinates, x̃ = T_in·x, ỹ = x̃·(Q + L·R)ᵀ,
 * y = T_outᵀ·ỹ, with Q, L and R on quantized grids dequantized on the fly (codes × scales on the backend,
 * never a dense W), and the first `ftRank` ranks of L and R kept 16-bit and trainable (everything else frozen).
 * Tensors: `Q` (codes, packed) / `Q_scale` (f16), `L`/`L_scale` (Lᵀ, a scale per rank component), `R`/`R_scale`,
 * `L_ft`/`R_ft` (16-bit), `signs_in`/`signs_out` (u1, 1 = −1), `bias`. A Hadamard layer cut by `select`
 * keeps its selection as indices in its meta (the transform mixes every input, so nothing can be sliced).
 * Q may be on the E8P12 lattice codebook instead (meta `qCodebook: 'e8p12'`): `Q` then holds u16 codeword
 * indices [out, ⌈in/8⌉], decoded on the host per forward (a codeword spans 8 columns: such a layer is cut by
 * `select` as a Hadamard one is, by indices in its meta).
 */
export class QlrLinear implements LinearLayer {
  readonly kind = QLR_KIND;
  private readonly params: Map<string, Parameter>;
  private readonly m: number;
  private readonly n: number;
  readonly kq: number;
  readonly ftRank: number;
  /** Q is on the E8P12 codebook (u16 codes). */
  readonly qE8p: boolean;
  private transforms?: { tin?: Float32Array; tout?: Float32Array };
  /** Selected input columns / output rows of the incoherent coordinates (Hadamard layers after `select`). */
  private readonly sel: { in?: Int32Array; out?: Int32Array };

  constructor(
    tensors: ReadonlyMap<string, HostTensor>,
    where = 'qlr layer',
    selection: { in?: Int32Array; out?: Int32Array } = {},
  ) {
    this.sel = selection;
    const t = (k: string) => tensors.get(k);
    const q = t('Q');
    if (q?.shape.length !== 2 || !t('Q_scale'))
      throw new LineageError(`${where}: needs 2-D 'Q' and 'Q_scale'`);
    const lc = t('L');
    const rc = t('R');
    this.qE8p = q.dtype === 'u16';
    // E8P12 codes span 8 columns (the width padded): the width is the signs', R's or R_ft's
    const width = this.qE8p ? (t('signs_in')?.size ?? rc?.shape[1] ?? t('R_ft')?.shape[1]) : q.shape[1];
    if (width === undefined || (this.qE8p && e8pWidth(width) / 8 !== q.shape[1]))
      throw new LineageError(
        `${where}: E8P12 codes 'Q' [${q.shape}] need the signs, R or R_ft of a width padding to ${8 * q.shape[1]!} columns`,
      );
    [this.m, this.n] = [q.shape[0]!, width];
    if (!!lc !== !!rc || !!t('L_scale') !== !!lc || !!t('R_scale') !== !!rc)
      throw new LineageError(`${where}: 'L', 'L_scale', 'R' and 'R_scale' come together`);
    this.kq = lc ? lc.shape[0]! : 0;
    if (lc && (lc.shape[1] !== this.m || rc!.shape[0] !== this.kq || rc!.shape[1] !== this.n))
      throw new LineageError(
        `${where}: factors Lᵀ [${lc.shape}] and R [${rc!.shape}] do not fit Q [${this.m}, ${this.n}]`,
      );
    const lf = t('L_ft');
    const rf = t('R_ft');
    if (!!lf !== !!rf) throw new LineageError(`${where}: 'L_ft' and 'R_ft' come together`);
    this.ftRank = lf ? lf.shape[1]! : 0;
    if (lf && (lf.shape[0] !== this.m || rf!.shape[0] !== this.ftRank || rf!.shape[1] !== this.n))
      throw new LineageError(
        `${where}: 16-bit factors [${lf.shape}]·[${rf!.shape}] do not fit Q [${this.m}, ${this.n}]`,
      );
    for (const [k, s, rows] of [
      ['Q', t('Q_scale'), this.m],
      ['L', t('L_scale'), this.kq],
      ['R', t('R_scale'), this.kq],
    ] as const)
      if (s && !(s.shape.length === 2 && s.shape[1] === 1 && (s.shape[0] === 1 || s.shape[0] === rows)))
        throw new LineageError(`${where}: '${k}_scale' is [${s.shape}], expected [1, 1] or [${rows}, 1]`);
    const si = t('signs_in');
    const so = t('signs_out');
    if ((so && !si) || (si && si.size !== this.n) || (so && so.size !== this.m))
      throw new LineageError(
        `${where}: signs [${si?.shape}]/[${so?.shape}] do not fit Q [${this.m}, ${this.n}] (output signs need input signs)`,
      );
    const b = t('bias');
    this.params = new Map();
    for (const [k, v] of tensors)
      this.params.set(k, new Parameter(v, k === 'L_ft' || k === 'R_ft' || k === 'bias'));
    if (b && (b.shape.length !== 1 || b.shape[0] !== this.outFeatures))
      throw new LineageError(`${where}: bias [${b.shape}] does not match ${this.outFeatures} outputs`);
    const known = new Set(['Q', 'Q_scale', 'L', 'L_scale', 'R', 'R_scale', 'L_ft', 'R_ft']);
    for (const k of ['signs_in', 'signs_out', 'bias']) known.add(k);
    for (const k of tensors.keys())
      if (!known.has(k)) throw new LineageError(`${where}: unknown tensor '${k}'`);
    if ((selection.in || selection.out) && !si && !this.qE8p)
      throw new LineageError(`${where}: a selection in meta needs the Hadamard signs or an E8P12 Q`);
    for (const [side, n] of [
      ['in', this.n],
      ['out', this.m],
    ] as const) {
      const idx = selection[side];
      if (idx && (idx.length === 0 || idx.some((i) => !Number.isInteger(i) || i < 0 || i >= n)))
        throw new LineageError(`${where}: selected ${side}puts must be indices below ${n}`);
    }
  }

  /** From the parts (see QlrParts): codes packed at their bits, scales f16, the 16-bit ranks f16, signs u1. */
  static fromParts(p: QlrParts): QlrLinear {
    const { out: m, in: n } = p;
    const ts: [string, HostTensor][] = quantTensors('Q', p.q, m, n);
    const kq = p.lt ? p.lt.codes.length / m : 0;
    if (p.lt && p.r) ts.push(...quantTensors('L', p.lt, kq, m), ...quantTensors('R', p.r, kq, n));
    const ft = p.ftRank ?? 0;
    if (ft > 0) {
      ts.push(['L_ft', HostTensor.fromF32(p.lFt!, [m, ft], 'f16')]);
      ts.push(['R_ft', HostTensor.fromF32(p.rFt!, [ft, n], 'f16')]);
    }
    if (p.signsIn) ts.push(['signs_in', signBits(p.signsIn)]);
    if (p.signsIn && p.signsOut?.length) ts.push(['signs_out', signBits(p.signsOut)]);
    if (p.bias) ts.push(['bias', new HostTensor('f32', [m], p.bias.slice())]);
    return new QlrLinear(new Map(ts));
  }

  get inFeatures(): number {
    return this.sel.in?.length ?? this.n;
  }
  get outFeatures(): number {
    return this.sel.out?.length ?? this.m;
  }
  /** Total rank (quantized + 16-bit). */
  get rank(): number {
    return this.kq + this.ftRank;
  }
  get hadamard(): boolean {
    return this.params.has('signs_in');
  }

  private value(k: string): HostTensor | undefined {
    return this.params.get(k)?.value;
  }

  private signs(k: 'signs_in' | 'signs_out'): Int8Array | undefined {
    const s = this.value(k);
    return s ? Int8Array.from(s.toInts(), (b) => (b ? -1 : 1)) : undefined;
  }

  /** (T or I)[:, sel] as an [n0, |sel|] row-major matrix; undefined when it is the identity. */
  private transform(side: 'in' | 'out'): Float64Array | undefined {
    const n0 = side === 'in' ? this.n : this.m;
    const signs = this.signs(side === 'in' ? 'signs_in' : 'signs_out');
    const sel = this.sel[side];
    if (!signs && !sel) return undefined;
    let t: Float64Array;
    if (signs) t = incoherenceMatrix(signs);
    else {
      t = new Float64Array(n0 * n0);
      for (let i = 0; i < n0; i++) t[i * n0 + i] = 1;
    }
    if (!sel) return t;
    const out = new Float64Array(n0 * sel.length);
    for (let i = 0; i < n0; i++)
      for (let j = 0; j < sel.length; j++) out[i * sel.length + j] = t[i * n0 + sel[j]!]!;
    return out;
  }

  private hostTransforms(): { tin?: Float32Array; tout?: Float32Array } {
    if (!this.transforms) {
      const tin = this.transform('in');
      const tout = this.transform('out');
      this.transforms = {
        ...(tin ? { tin: Float32Array.from(tin) } : {}),
        ...(tout ? { tout: Float32Array.from(tout) } : {}),
      };
    }
    return this.transforms;
  }

  /** scale·(codes − offset) of part `k` on the backend, from the parameters' device copies. */
  private async dequantized(ops: Ops, k: 'Q' | 'L' | 'R'): Promise<Tensor> {
    // E8P12: decoded on the host (a table lookup per 8 weights) and uploaded; freed after its one use
    if (k === 'Q' && this.qE8p)
      return ops.upload(this.e8pQ(new Float32Array(this.m * this.n)), [this.m, this.n]);
    const be = ops.backend;
    const codes = this.params.get(k)!;
    const bits = codes.value.dtype === 'u8' ? 8 : Number(codes.value.dtype.slice(1));
    const centred = await ops.scale(codes.tensor(be), 1, -((2 ** bits - 1) / 2));
    const scales = this.params.get(`${k}_scale`)!;
    if (scales.value.size === 1) return ops.scale(centred, scales.value.toF32()[0]!);
    return ops.mul(centred, scales.tensor(be));
  }

  async forward(ops: Ops, x: Tensor): Promise<Tensor> {
    const be = ops.backend;
    const { tin, tout } = this.hostTransforms();
    const xt = tin ? await ops.linear(x, ops.upload(tin, [this.n, this.inFeatures])) : x;
    const q = await this.dequantized(ops, 'Q');
    let y = await ops.linear(xt, q);
    if (this.qE8p) ops.dispose(q);
    if (this.kq > 0) {
      const h = await ops.linear(xt, await this.dequantized(ops, 'R'));
      y = await ops.add(y, await ops.matmul(h, await this.dequantized(ops, 'L')));
    }
    if (this.ftRank > 0) {
      const h = await ops.linear(xt, this.params.get('R_ft')!.tensor(be));
      y = await ops.add(y, await ops.linear(h, this.params.get('L_ft')!.tensor(be)));
    }
    if (tout) y = await ops.matmul(y, ops.upload(tout, [this.m, this.outFeatures]));
    const b = this.params.get('bias');
    return b ? ops.add(y, b.tensor(be)) : y;
  }

  parameters(): ReadonlyMap<string, Parameter> {
    return this.params;
  }

  stats(): LayerStats {
    return storedStats(this.params);
  }

  meta(): Json {
    return {
      rank: this.rank,
      ftRank: this.ftRank,
      hadamard: this.hadamard,
      ...(this.qE8p ? { qCodebook: E8P12 } : {}),
      ...(this.sel.in ? { inputs: [...this.sel.in] } : {}),
      ...(this.sel.out ? { outputs: [...this.sel.out] } : {}),
    };
  }

  /** The E8P12 Q decoded into out [m, n] (padding dropped). */
  private e8pQ<T extends Float32Array | Float64Array>(out: T): T {
    const codes = this.value('Q')!;
    e8pDecodeInto(
      codes.data as Uint16Array,
      this.value('Q_scale')!.toF32(),
      this.m,
      codes.shape[1]!,
      this.n,
      out,
    );
    return out;
  }

  private dequantizedHost(k: 'Q' | 'L' | 'R'): Matrix64 {
    if (k === 'Q' && this.qE8p) return matrix64(this.m, this.n, this.e8pQ(new Float64Array(this.m * this.n)));
    const codes = this.value(k)!;
    const bits = codes.dtype === 'u8' ? 8 : Number(codes.dtype.slice(1));
    const off = (2 ** bits - 1) / 2;
    const s = this.value(`${k}_scale`)!.toF32();
    const [rows, cols] = [codes.shape[0]!, codes.shape[1]!];
    const c = codes.toInts();
    const out = matrix64(rows, cols);
    for (let r = 0; r < rows; r++) {
      const sr = s.length === 1 ? s[0]! : s[r]!;
      for (let j = 0; j < cols; j++) out.data[r * cols + j] = sr * (c[r * cols + j]! - off);
    }
    return out;
  }

  /** Q + L·R in the incoherent coordinates, float64 [m0, n0]. */
  incoherentWeight(): Matrix64 {
    const w = this.dequantizedHost('Q');
    const add = (a: Matrix64, b: Matrix64, transA = false) => {
      const p = matmul64(a, b, { transA });
      for (let i = 0; i < w.data.length; i++) w.data[i]! += p.data[i]!;
    };
    if (this.kq > 0) add(this.dequantizedHost('L'), this.dequantizedHost('R'), true);
    if (this.ftRank > 0)
      add(
        fromF32(this.m, this.ftRank, this.value('L_ft')!.toF32()),
        fromF32(this.ftRank, this.n, this.value('R_ft')!.toF32()),
      );
    return w;
  }

  /** T_out[:, rows]ᵀ·(Q + L·R)·T_in[:, cols] in float64, rounded to f32 once. */
  denseWeight(): Float32Array {
    let w = this.incoherentWeight();
    const tin = this.transform('in');
    const tout = this.transform('out');
    if (tin) w = matmul64(w, matrix64(this.n, this.inFeatures, tin));
    if (tout) w = matmul64(matrix64(this.m, this.outFeatures, tout), w, { transA: true });
    return Float32Array.from(w.data);
  }

  denseBias(): Float32Array | undefined {
    return this.value('bias')?.toF32();
  }

  /**
   * Output rows and input columns. Without a transform Q, L, R and the 16-bit ranks are sliced (codes stay
   * packed). With one (or an E8P12 Q, whose codewords span 8 columns), the parts are kept and the
   * selection is composed into the indices of T_in's columns / T_out's columns (meta `inputs`/`outputs`).
   */
  select(selection: Selection): QlrLinear {
    const { rows, cols } = checkSelection(
      selection,
      [this.outFeatures, this.inFeatures],
      `a ${this.kind} layer`,
    );
    const ts = new Map([...this.params].map(([k, p]) => [k, p.value]));
    const take = (k: string, axis: 0 | 1, idx: Int32Array | undefined) => {
      const v = ts.get(k);
      if (v && idx) ts.set(k, takeAlong(v, axis, idx));
    };
    take('bias', 0, rows);
    const sel = { ...this.sel };
    if (this.hadamard || this.qE8p) {
      const compose = (prev: Int32Array | undefined, idx: Int32Array) =>
        Int32Array.from(idx, (i) => (prev ? prev[i]! : i));
      if (rows) sel.out = compose(this.sel.out, rows);
      if (cols) sel.in = compose(this.sel.in, cols);
    } else {
      take('Q', 0, rows);
      take('Q', 1, cols);
      if (ts.get('Q_scale')!.size > 1) take('Q_scale', 0, rows);
      take('L', 1, rows);
      take('R', 1, cols);
      take('L_ft', 0, rows);
      take('R_ft', 1, cols);
    }
    const out = new QlrLinear(ts, 'qlr layer', sel);
    for (const [k, p] of this.params) out.params.get(k)!.trainable = p.trainable;
    return out;
  }
}

registerLinearKind({
  kind: QLR_KIND,
  load(tensors, meta, where, [out, inp]) {
    const mm = (meta ?? {}) as { inputs?: unknown; outputs?: unknown };
    const ints = (v: unknown, what: string) => {
      if (v === undefined) return undefined;
      if (!Array.isArray(v) || v.some((i) => !Number.isInteger(i)))
        throw new LineageError(`qlr layer '${where}': meta ${what} must be a list of indices`);
      return Int32Array.from(v as number[]);
    };
    const selIn = ints(mm.inputs, 'inputs');
    const selOut = ints(mm.outputs, 'outputs');
    const l = new QlrLinear(tensors, `qlr layer '${where}'`, {
      ...(selIn ? { in: selIn } : {}),
      ...(selOut ? { out: selOut } : {}),
    });
    if (l.outFeatures !== out || l.inFeatures !== inp)
      throw new LineageError(
        `qlr layer '${where}': its tensors make [${l.outFeatures}, ${l.inFeatures}], the config implies [${out}, ${inp}]`,
      );
    const m = meta as { rank?: unknown; ftRank?: unknown; qCodebook?: unknown } | null;
    if ((m?.qCodebook === E8P12) !== l.qE8p)
      throw new LineageError(
        `qlr layer '${where}': config.json says Q is on ${m?.qCodebook === undefined ? 'the scalar grid' : `codebook ${JSON.stringify(m.qCodebook)}`}, its tensor 'Q' is ${tensors.get('Q')!.dtype}${l.qE8p ? ' (E8P12 codes)' : ''}`,
      );
    if (
      m &&
      ((m.rank !== undefined && m.rank !== l.rank) || (m.ftRank !== undefined && m.ftRank !== l.ftRank))
    )
      throw new LineageError(
        `qlr layer '${where}': its factors have rank ${l.rank} (${l.ftRank} 16-bit), config.json says ${String(m.rank)} (${String(m.ftRank)})`,
      );
    return l;
  },
});

// Its ONNX export (lineage export): each quantized part as MatMulNBits, never densified.
registerLayerExporter(QLR_KIND, qlrExporter);

export { BITS as QLR_BITS };
