import type { Tensor } from '../backend/backend.js';
import type { Ops } from '../backend/ops.js';
import { isFloat } from '../tensor/dtype.js';
import type { HostTensor } from '../tensor/host-tensor.js';
import { takeAlong } from '../tensor/select.js';
import { LineageError } from '../util/errors.js';
import {
  carryTrainable,
  checkSelection,
  type Json,
  type LayerStats,
  type LinearLayer,
  registerLinearKind,
  type Selection,
  storedStats,
} from './layer.js';
import { Parameter } from './parameter.js';

/** Dense y = x·Wᵀ + b with W [out, in] (HF layout), stored in any float dtype. */
export class Linear implements LinearLayer {
  readonly kind = 'linear';
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;

  /** From stored tensors, or from Parameters (kept as they are: e.g. a model's embedding table). */
  constructor(weight: HostTensor | Parameter, bias?: HostTensor | Parameter) {
    this.weight = weight instanceof Parameter ? weight : new Parameter(weight);
    this.bias = bias === undefined || bias instanceof Parameter ? bias : new Parameter(bias);
    const w = this.weight.shape;
    if (w.length !== 2) throw new RangeError(`Linear: weight must be 2-D, got [${w}]`);
    const b = this.bias?.shape;
    if (b && (b.length !== 1 || b[0] !== w[0])) {
      throw new RangeError(`Linear: bias [${b}] does not match weight [${w}]`);
    }
  }

  get outFeatures(): number {
    return this.weight.shape[0]!;
  }
  get inFeatures(): number {
    return this.weight.shape[1]!;
  }

  forward(ops: Ops, x: Tensor): Promise<Tensor> {
    const b = ops.backend;
    return ops.linear(x, this.weight.tensor(b), this.bias?.tensor(b));
  }

  /** Rows of W for token ids: the dense embedding table's gather. */
  lookup(ops: Ops, ids: Tensor): Promise<Tensor> {
    return ops.gather(this.weight.tensor(ops.backend), ids);
  }

  parameters(): ReadonlyMap<string, Parameter> {
    const m = new Map<string, Parameter>([['weight', this.weight]]);
    if (this.bias) m.set('bias', this.bias);
    return m;
  }

  stats(): LayerStats {
    return storedStats(this.parameters());
  }

  meta(): Json {
    return null;
  }

  denseWeight(): Float32Array {
    return this.weight.value.toF32();
  }

  denseBias(): Float32Array | undefined {
    return this.bias?.value.toF32();
  }

  select(selection: Selection): Linear {
    const { rows, cols } = checkSelection(
      selection,
      [this.outFeatures, this.inFeatures],
      `a ${this.kind} layer`,
    );
    let w = this.weight.value;
    if (rows) w = takeAlong(w, 0, rows);
    if (cols) w = takeAlong(w, 1, cols);
    const b = this.bias && rows ? takeAlong(this.bias.value, 0, rows) : this.bias?.value;
    const out = new Linear(w, b);
    carryTrainable(this, out);
    return out;
  }
}

registerLinearKind({
  kind: 'linear',
  load(tensors, _meta, where, [out, inp]) {
    const w = tensors.get('weight');
    if (!w) throw new LineageError(`missing tensor '${where}.weight'`);
    // A dense weight stored as integers would be used as numbers: refuse it (quantized kinds have their own).
    for (const [n, t] of [['weight', w] as const, ['bias', tensors.get('bias')] as const]) {
      if (t && !isFloat(t.dtype))
        throw new LineageError(
          `tensor '${where}.${n}' is ${t.dtype}, but a dense layer's ${n} must be a float type`,
        );
    }
    if (w.shape.length !== 2 || w.shape[0] !== out || w.shape[1] !== inp) {
      throw new LineageError(
        `tensor '${where}.weight' has shape [${w.shape}], the config implies [${out}, ${inp}]`,
      );
    }
    return new Linear(w, tensors.get('bias'));
  },
});
