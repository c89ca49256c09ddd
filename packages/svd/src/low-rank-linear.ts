import {
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
import { fromF32, matmul64, toF32 } from '@lineage/linalg';
import { registerLayerExporter } from '@lineage/onnx';
import { lowRankExporter } from './low-rank-onnx.js';

/** The layer kind name recorded in config.json for factored layers. */
export const LOW_RANK_KIND = 'low_rank';

/**
 * y = x·(A·B)ᵀ + b as two thin products, x·Bᵀ then ·Aᵀ, with A [out, r] and B [r, in] stored as
 * `${layer}.A` and `${layer}.B` (f32): r·(out + in) parameters instead of out·in. Both factors train.
 */
export class LowRankLinear implements LinearLayer {
  readonly kind = LOW_RANK_KIND;
  readonly A: Parameter;
  readonly B: Parameter;
  readonly bias: Parameter | undefined;

  constructor(A: HostTensor, B: HostTensor, bias?: HostTensor) {
    if (A.shape.length !== 2 || B.shape.length !== 2 || A.shape[1] !== B.shape[0]) {
      throw new RangeError(`LowRankLinear: factors [${A.shape}]·[${B.shape}] do not chain`);
    }
    if (A.shape[1]! < 1) throw new RangeError('LowRankLinear: rank must be at least 1');
    if (bias && (bias.shape.length !== 1 || bias.shape[0] !== A.shape[0])) {
      throw new RangeError(`LowRankLinear: bias [${bias.shape}] does not match [${A.shape[0]}] outputs`);
    }
    this.A = new Parameter(A);
    this.B = new Parameter(B);
    this.bias = bias ? new Parameter(bias) : undefined;
  }

  /** From f32 factors: a [out·r] row-major, b [r·in] row-major. */
  static fromFactors(
    a: Float32Array,
    b: Float32Array,
    out: number,
    rank: number,
    inp: number,
    bias?: Float32Array,
  ): LowRankLinear {
    return new LowRankLinear(
      new HostTensor('f32', [out, rank], a),
      new HostTensor('f32', [rank, inp], b),
      bias ? new HostTensor('f32', [bias.length], bias) : undefined,
    );
  }

  get rank(): number {
    return this.A.shape[1]!;
  }
  get outFeatures(): number {
    return this.A.shape[0]!;
  }
  get inFeatures(): number {
    return this.B.shape[1]!;
  }

  async forward(ops: Ops, x: Tensor): Promise<Tensor> {
    const be = ops.backend;
    const h = await ops.linear(x, this.B.tensor(be));
    const y = await ops.linear(h, this.A.tensor(be), this.bias?.tensor(be));
    ops.dispose(h);
    return y;
  }

  /** Rows of A·B for token ids: rows of A, then ·B (a factored embedding table is never densified). */
  async lookup(ops: Ops, ids: Tensor): Promise<Tensor> {
    const be = ops.backend;
    const rows = await ops.gather(this.A.tensor(be), ids);
    const y = await ops.matmul(rows, this.B.tensor(be));
    ops.dispose(rows);
    return y;
  }

  parameters(): ReadonlyMap<string, Parameter> {
    const m = new Map<string, Parameter>([
      ['A', this.A],
      ['B', this.B],
    ]);
    if (this.bias) m.set('bias', this.bias);
    return m;
  }

  stats(): LayerStats {
    return storedStats(this.parameters());
  }

  meta(): Json {
    return { rank: this.rank };
  }

  /** A·B in float64 (the engine's GEMM), rounded to f32 once. */
  denseWeight(): Float32Array {
    const r = this.rank;
    const a = fromF32(this.outFeatures, r, this.A.value.toF32());
    const b = fromF32(r, this.inFeatures, this.B.value.toF32());
    return toF32(matmul64(a, b));
  }

  denseBias(): Float32Array | undefined {
    return this.bias?.value.toF32();
  }

  /** Rows slice A [out, r] (and the bias), columns slice B [r, in]: the rank and the factors' dtype stay. */
  select(selection: Selection): LowRankLinear {
    const { rows, cols } = checkSelection(
      selection,
      [this.outFeatures, this.inFeatures],
      `a ${this.kind} layer`,
    );
    const A = rows ? takeAlong(this.A.value, 0, rows) : this.A.value;
    const B = cols ? takeAlong(this.B.value, 1, cols) : this.B.value;
    const b = this.bias && rows ? takeAlong(this.bias.value, 0, rows) : this.bias?.value;
    const out = new LowRankLinear(A, B, b);
    carryTrainable(this, out);
    return out;
  }
}

registerLinearKind({
  kind: LOW_RANK_KIND,
  load(tensors, meta, where, [out, inp]) {
    const A = tensors.get('A');
    const B = tensors.get('B');
    if (!A || !B)
      throw new LineageError(`low-rank layer '${where}' needs tensors '${where}.A' and '${where}.B'`);
    const rank = (meta as { rank?: unknown } | null)?.rank;
    if (A.shape.length !== 2 || B.shape.length !== 2 || A.shape[0] !== out || B.shape[1] !== inp) {
      throw new LineageError(
        `low-rank layer '${where}': factors [${A.shape}]·[${B.shape}] do not make the [${out}, ${inp}] the config implies`,
      );
    }
    if (A.shape[1] !== B.shape[0] || (rank !== undefined && rank !== A.shape[1])) {
      throw new LineageError(
        `low-rank layer '${where}': factors [${A.shape}]·[${B.shape}] disagree with each other or with rank ${String(rank)} in config.json`,
      );
    }
    return new LowRankLinear(A, B, tensors.get('bias'));
  },
});

// Its ONNX export (lineage export): two MatMuls, never densified.
registerLayerExporter(LOW_RANK_KIND, lowRankExporter);
