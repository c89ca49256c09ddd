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
  Random,
  registerLinearKind,
  type Selection,
  storedStats,
  type Tensor,
  takeAlong,
} from '@lineage/core';
import { LowRankLinear } from '../low-rank-linear.js';

/** The layer kind name recorded in config.json for a layer of pretrained bases with relearned coefficients. */
export const BASIS_KIND = 'basis';

function f64(t: HostTensor): Float64Array {
  return Float64Array.from(t.toF32());
}

/**
 * Basis Selection's layer: W = U·diag(s)·V + A·B with frozen pretrained bases U [out, k] and V [k, in]
 * (column i of U and row i of V make basis i), trainable coefficients s = w² (w [k]; the square keeps each
 * coefficient non-negative, as in the authors' code) and optional new trainable bases A [out, r], B [r, in].
 * The forward is ((x·Vᵀ) ⊙ s)·Uᵀ + (x·Bᵀ)·Aᵀ (+ bias): W is never formed. A pruned basis is dropped from U,
 * w and V (the authors' mask, realised by removal, so stored counts are honest at every round).
 */
export class BasisLinear implements LinearLayer {
  readonly kind = BASIS_KIND;
  readonly U: Parameter;
  readonly V: Parameter;
  readonly w: Parameter;
  readonly A: Parameter | undefined;
  readonly B: Parameter | undefined;
  readonly bias: Parameter | undefined;

  constructor(
    U: HostTensor,
    V: HostTensor,
    w: HostTensor,
    added?: { A: HostTensor; B: HostTensor },
    bias?: HostTensor,
  ) {
    const [m, k] = U.shape as [number, number];
    const n = V.shape[1]!;
    if (
      U.shape.length !== 2 ||
      V.shape.length !== 2 ||
      V.shape[0] !== k ||
      w.shape.length !== 1 ||
      w.shape[0] !== k
    )
      throw new RangeError(`BasisLinear: U [${U.shape}], w [${w.shape}], V [${V.shape}] do not chain`);
    if (k < 1) throw new RangeError('BasisLinear: needs at least one basis');
    if (added) {
      const { A, B } = added;
      if (
        A.shape.length !== 2 ||
        B.shape.length !== 2 ||
        A.shape[0] !== m ||
        B.shape[1] !== n ||
        A.shape[1] !== B.shape[0]
      )
        throw new RangeError(`BasisLinear: new bases [${A.shape}]·[${B.shape}] do not make [${m}, ${n}]`);
    }
    if (bias && (bias.shape.length !== 1 || bias.shape[0] !== m))
      throw new RangeError(`BasisLinear: bias [${bias.shape}] does not match [${m}] outputs`);
    this.U = new Parameter(U, false);
    this.V = new Parameter(V, false);
    this.w = new Parameter(w);
    this.A = added ? new Parameter(added.A) : undefined;
    this.B = added ? new Parameter(added.B) : undefined;
    this.bias = bias ? new Parameter(bias) : undefined;
  }

  /** Pretrained bases kept. */
  get bases(): number {
    return this.w.shape[0]!;
  }
  /** New bases (0: none). */
  get newRank(): number {
    return this.A?.shape[1] ?? 0;
  }
  get outFeatures(): number {
    return this.U.shape[0]!;
  }
  get inFeatures(): number {
    return this.V.shape[1]!;
  }

  /** The effective coefficients s = w² (float64). */
  coefficients(): Float64Array {
    return f64(this.w.value).map((x) => x * x);
  }

  async forward(ops: Ops, x: Tensor): Promise<Tensor> {
    const be = ops.backend;
    const w = this.w.tensor(be);
    const s = await ops.mul(w, w);
    const h = await ops.linear(x, this.V.tensor(be)); // [..., k]
    const hs = await ops.mul(h, s);
    ops.dispose(h, s);
    let y = await ops.linear(hs, this.U.tensor(be), this.A ? undefined : this.bias?.tensor(be));
    ops.dispose(hs);
    if (this.A && this.B) {
      const g = await ops.linear(x, this.B.tensor(be));
      const z = await ops.linear(g, this.A.tensor(be), this.bias?.tensor(be));
      ops.dispose(g);
      const sum = await ops.add(y, z);
      ops.dispose(y, z);
      y = sum;
    }
    return y;
  }

  parameters(): ReadonlyMap<string, Parameter> {
    const m = new Map<string, Parameter>([
      ['U', this.U],
      ['w', this.w],
      ['V', this.V],
    ]);
    if (this.A && this.B) {
      m.set('A', this.A);
      m.set('B', this.B);
    }
    if (this.bias) m.set('bias', this.bias);
    return m;
  }

  stats(): LayerStats {
    return storedStats(this.parameters());
  }

  meta(): Json {
    return { bases: this.bases, newRank: this.newRank };
  }

  /** The factors of the exported low-rank layer: [U·√s | A] (out × (k+r)) and [√s·V ; B] ((k+r) × in), float64. */
  private factors(): { a: Float64Array; b: Float64Array; rank: number } {
    const m = this.outFeatures;
    const n = this.inFeatures;
    const k = this.bases;
    const r = this.newRank;
    const rank = k + r;
    const U = f64(this.U.value);
    const V = f64(this.V.value);
    const root = f64(this.w.value).map(Math.abs); // √s = |w|
    const a = new Float64Array(m * rank);
    const b = new Float64Array(rank * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) a[i * rank + j] = U[i * k + j]! * root[j]!;
    for (let j = 0; j < k; j++) for (let c = 0; c < n; c++) b[j * n + c] = V[j * n + c]! * root[j]!;
    if (r && this.A && this.B) {
      const A = f64(this.A.value);
      const B = f64(this.B.value);
      for (let i = 0; i < m; i++) for (let j = 0; j < r; j++) a[i * rank + k + j] = A[i * r + j]!;
      b.set(B, k * n);
    }
    return { a, b, rank };
  }

  /** U·diag(s)·V + A·B in float64, rounded to f32 once. */
  denseWeight(): Float32Array {
    const m = this.outFeatures;
    const n = this.inFeatures;
    const { a, b, rank } = this.factors();
    const w = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < rank; j++) {
        const x = a[i * rank + j]!;
        if (x === 0) continue;
        for (let c = 0; c < n; c++) w[i * n + c]! += x * b[j * n + c]!;
      }
    return Float32Array.from(w);
  }

  denseBias(): Float32Array | undefined {
    return this.bias?.value.toF32();
  }

  /**
   * The same map as an ordinary `low_rank` layer of rank kept + new bases: the factors concatenated (exact,
   * no re-decomposition), each component balanced so its two factor columns have equal norms (one learning
   * rate then suits both when it is fine-tuned further).
   */
  exportLowRank(): LowRankLinear {
    const m = this.outFeatures;
    const n = this.inFeatures;
    const { a, b, rank } = this.factors();
    for (let j = 0; j < rank; j++) {
      let na = 0;
      let nb = 0;
      for (let i = 0; i < m; i++) na += a[i * rank + j]! ** 2;
      for (let c = 0; c < n; c++) nb += b[j * n + c]! ** 2;
      if (!(na > 0 && nb > 0)) continue;
      const g = Math.sqrt(Math.sqrt(nb / na));
      for (let i = 0; i < m; i++) a[i * rank + j]! *= g;
      for (let c = 0; c < n; c++) b[j * n + c]! /= g;
    }
    return LowRankLinear.fromFactors(
      Float32Array.from(a),
      Float32Array.from(b),
      m,
      rank,
      n,
      this.bias?.value.toF32().slice(),
    );
  }

  /** The layer with only the pretrained bases `keep` (indices, in the order given); new bases stay. */
  keepBases(keep: ArrayLike<number>): BasisLinear {
    if (keep.length < 1) throw new LineageError('a basis layer must keep at least one basis');
    const idx = Int32Array.from(keep);
    const out = new BasisLinear(
      takeAlong(this.U.value, 1, idx),
      takeAlong(this.V.value, 0, idx),
      takeAlong(this.w.value, 0, idx),
      this.A && this.B ? { A: this.A.value, B: this.B.value } : undefined,
      this.bias?.value,
    );
    carryTrainable(this, out);
    return out;
  }

  /**
   * The layer with `rank` new bases added (replacing any it had): A = 0 and B random/√in, so the layer's map
   * is unchanged and the gradient reaches A at once (the authors' LoRA-like initialisation).
   */
  withNewBases(rank: number, seed: number): BasisLinear {
    if (!Number.isInteger(rank) || rank < 0) throw new RangeError(`withNewBases: rank ${rank}`);
    const m = this.outFeatures;
    const n = this.inFeatures;
    const rng = new Random(seed);
    const B = new Float32Array(rank * n);
    for (let i = 0; i < B.length; i++) B[i] = rng.normal() / Math.sqrt(n);
    const added = rank
      ? {
          A: new HostTensor('f32', [m, rank], new Float32Array(m * rank)),
          B: new HostTensor('f32', [rank, n], B),
        }
      : undefined;
    const out = new BasisLinear(this.U.value, this.V.value, this.w.value, added, this.bias?.value);
    out.w.trainable = this.w.trainable;
    return out;
  }

  /** Rows slice U, A and the bias; columns slice V and B: the bases and their coefficients stay. */
  select(selection: Selection): BasisLinear {
    const { rows, cols } = checkSelection(
      selection,
      [this.outFeatures, this.inFeatures],
      `a ${this.kind} layer`,
    );
    const pick = (t: HostTensor, axis: 0 | 1, ix: Int32Array | undefined) =>
      ix ? takeAlong(t, axis, ix) : t;
    const out = new BasisLinear(
      pick(this.U.value, 0, rows),
      pick(this.V.value, 1, cols),
      this.w.value,
      this.A && this.B ? { A: pick(this.A.value, 0, rows), B: pick(this.B.value, 1, cols) } : undefined,
      this.bias ? pick(this.bias.value, 0, rows) : undefined,
    );
    carryTrainable(this, out);
    return out;
  }
}

registerLinearKind({
  kind: BASIS_KIND,
  load(tensors, meta, where, [out, inp]) {
    const U = tensors.get('U');
    const V = tensors.get('V');
    const w = tensors.get('w');
    if (!U || !V || !w)
      throw new LineageError(
        `basis layer '${where}' needs tensors '${where}.U', '${where}.w' and '${where}.V'`,
      );
    const A = tensors.get('A');
    const B = tensors.get('B');
    if (!A !== !B)
      throw new LineageError(`basis layer '${where}' has only one of '${where}.A' and '${where}.B'`);
    const m = (meta ?? {}) as { bases?: unknown; newRank?: unknown };
    const k = w.shape[0];
    const r = A?.shape[1] ?? 0;
    const shapesOk =
      U.shape.length === 2 &&
      V.shape.length === 2 &&
      w.shape.length === 1 &&
      U.shape[0] === out &&
      U.shape[1] === k &&
      V.shape[0] === k &&
      V.shape[1] === inp &&
      (!A ||
        (A.shape.length === 2 &&
          B!.shape.length === 2 &&
          A.shape[0] === out &&
          B!.shape[0] === r &&
          B!.shape[1] === inp));
    if (!shapesOk)
      throw new LineageError(
        `basis layer '${where}': U [${U.shape}], w [${w.shape}], V [${V.shape}]${A ? `, A [${A.shape}], B [${B!.shape}]` : ''} do not make the [${out}, ${inp}] the config implies`,
      );
    if ((m.bases !== undefined && m.bases !== k) || (m.newRank !== undefined && m.newRank !== r))
      throw new LineageError(
        `basis layer '${where}': ${k} bases and ${r} new ones disagree with config.json (${String(m.bases)}, ${String(m.newRank)})`,
      );
    return new BasisLinear(U, V, w, A && B ? { A, B } : undefined, tensors.get('bias'));
  },
});
