import type {
  AttentionOptions,
  Backend,
  BinaryOp,
  MatmulOptions,
  ReduceOp,
  Tensor,
  UnaryOp,
} from '../backend/backend.js';
import { Ops } from '../backend/ops.js';
import type { Parameter } from '../nn/parameter.js';
import type { Shape } from '../tensor/host-tensor.js';
import { type BackwardOptions, Tape } from './tape.js';

/**
 * `Ops` that record a tape while computing. Layers take `ops` as an argument, so running
 * `model.forward(gradOps, …)` records the forward pass with no change to the layers; `backward(loss)`
 * then replays it. Tensors the tape saved for the backward pass outlive their `tidy` scope (or an
 * explicit `dispose`) until the backward pass consumed them; everything else is freed as usual.
 *
 * Fused attention is recorded as one node whose gradient recomputes the probabilities (see
 * gradients.ts), whether or not the backend has a fused kernel.
 */
export class GradOps extends Ops {
  readonly tape: Tape;

  constructor(backend: Backend, tape?: Tape) {
    super(backend);
    this.tape = tape ?? new Tape(backend);
  }

  /**
   * Watches a parameter (its device tensor on this backend) or a tensor. Frozen parameters
   * (`trainable = false`) are not watched: returns undefined for them.
   */
  watch(x: Parameter | Tensor): Tensor | undefined {
    if ('trainable' in x) {
      if (!x.trainable) return undefined;
      const t = x.tensor(this.backend);
      this.tape.watch(t);
      return t;
    }
    this.tape.watch(x);
    return x;
  }

  /** Backpropagates from `loss` (see Tape.backward). */
  backward(loss: Tensor, options?: BackwardOptions): Promise<Map<Tensor, Tensor>> {
    return this.tape.backward(loss, options);
  }

  /** A copy of t that the tape treats as a constant (no gradient flows through it). */
  stopGradient(t: Tensor): Promise<Tensor> {
    return this.tape.untaped(() => super.scale(t, 1));
  }

  /**
   * Runs `forward` untaped and records it as one node of op key `op` over `inputs`, whose gradient is
   * the one registered with `registerGradient(op, …)` (e.g. a straight-through estimator).
   */
  async custom(op: string, inputs: readonly Tensor[], forward: () => Promise<Tensor>, attrs: unknown = null) {
    const y = await this.tape.untaped(forward);
    this.tape.record(op, inputs, y, attrs);
    return y;
  }

  protected override free(t: Tensor): void {
    if (!this.tape.defer(t)) super.free(t);
  }

  override async matmul(a: Tensor, b: Tensor, o?: MatmulOptions) {
    const y = await super.matmul(a, b, o);
    this.tape.record('matmul', [a, b], y, {
      transposeA: o?.transposeA === true,
      transposeB: o?.transposeB === true,
    });
    return y;
  }
  override async binary(op: BinaryOp, a: Tensor, b: Tensor) {
    const y = await super.binary(op, a, b);
    this.tape.record(`binary.${op}`, [a, b], y, null);
    return y;
  }
  override async unary(op: UnaryOp, x: Tensor) {
    const y = await super.unary(op, x);
    this.tape.record(`unary.${op}`, [x], y, null);
    return y;
  }
  override async scale(x: Tensor, mul: number, add = 0) {
    const y = await super.scale(x, mul, add);
    this.tape.record('scale', [x], y, { mul, add });
    return y;
  }
  override async reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims = false) {
    const y = await super.reduce(op, x, axes, keepDims);
    this.tape.record(`reduce.${op}`, [x], y, { axes: [...axes], keepDims });
    return y;
  }
  override async softmax(x: Tensor) {
    const y = await super.softmax(x);
    this.tape.record('softmax', [x], y, null);
    return y;
  }
  override async logSoftmax(x: Tensor) {
    const y = await super.logSoftmax(x);
    this.tape.record('logSoftmax', [x], y, null);
    return y;
  }
  override async rmsNorm(x: Tensor, w: Tensor, eps: number) {
    const y = await super.rmsNorm(x, w, eps);
    this.tape.record('rmsNorm', [x, w], y, { eps });
    return y;
  }
  override async rope(x: Tensor, cos: Tensor, sin: Tensor) {
    const y = await super.rope(x, cos, sin);
    this.tape.record('rope', [x, cos, sin], y, null);
    return y;
  }
  override async gather(table: Tensor, ids: Tensor) {
    const y = await super.gather(table, ids);
    this.tape.record('gather', [table, ids], y, null);
    return y;
  }
  override async crossEntropy(logits: Tensor, targets: Tensor) {
    const y = await super.crossEntropy(logits, targets);
    this.tape.record('crossEntropy', [logits, targets], y, null);
    return y;
  }
  override async reshape(x: Tensor, shape: Shape) {
    const y = await super.reshape(x, shape);
    this.tape.record('reshape', [x], y, null);
    return y;
  }
  override async transpose(x: Tensor, perm: readonly number[]) {
    const y = await super.transpose(x, perm);
    this.tape.record('transpose', [x], y, { perm: [...perm] });
    return y;
  }
  override async slice(x: Tensor, begin: readonly number[], size: readonly number[]) {
    const y = await super.slice(x, begin, size);
    this.tape.record('slice', [x], y, { begin: [...begin], size: [...size] });
    return y;
  }
  override async concat(xs: readonly Tensor[], axis: number) {
    const y = await super.concat(xs, axis);
    this.tape.record('concat', xs, y, { axis });
    return y;
  }
  override async attention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions) {
    const y = await this.tape.untaped(() => super.attention(q, k, v, o));
    this.tape.record('attention', [q, k, v], y, { ...o });
    return y;
  }
}
