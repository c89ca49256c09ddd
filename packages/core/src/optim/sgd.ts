import type { Parameter } from '../nn/parameter.js';
import {
  checkGrads,
  type Grads,
  loadBuffer,
  type Optimizer,
  type OptimizerState,
  stateTensor,
  toNamed,
  valuesOf,
  writeBack,
} from './optimizer.js';
import type { ParamOptions } from './param-groups.js';

export interface SgdOptions {
  lr: number;
  /** Momentum μ (default 0: plain SGD). */
  momentum?: number;
  /** Dampening of the gradient in the momentum buffer (default 0). */
  dampening?: number;
  nesterov?: boolean;
  /** L2 penalty added to the gradient (g ← g + λ·p), default 0. */
  weightDecay?: number;
  /** Per-parameter settings (parameter groups): a learning-rate multiplier, a weight decay of its own. */
  paramOptions?: (name: string, p: Parameter) => ParamOptions | undefined;
}

/**
 * SGD with momentum, PyTorch's update: g ← g + λ·p; b ← g on the first step, else μ·b + (1 − dampening)·g;
 * g ← g + μ·b (Nesterov) or b; p ← p − lr·g. The momentum buffers (f32) are the state.
 */
export class SGD implements Optimizer {
  private readonly params: Map<string, Parameter>;
  private readonly buf = new Map<string, Float32Array>();
  private t = 0;
  readonly lr: number;
  private readonly mu: number;
  private readonly damp: number;
  private readonly nesterov: boolean;
  private readonly wd: number;
  private readonly per = new Map<string, ParamOptions>();

  constructor(params: ReadonlyMap<string, Parameter> | Iterable<[string, Parameter]>, o: SgdOptions) {
    this.params = toNamed(params);
    this.lr = o.lr;
    this.mu = o.momentum ?? 0;
    this.damp = o.dampening ?? 0;
    this.nesterov = o.nesterov ?? false;
    this.wd = o.weightDecay ?? 0;
    if (this.nesterov && (this.mu <= 0 || this.damp !== 0))
      throw new RangeError('SGD: Nesterov momentum needs momentum > 0 and no dampening');
    for (const [name, p] of this.params) {
      const po = o.paramOptions?.(name, p);
      if (po) this.per.set(name, po);
    }
  }

  get stepCount(): number {
    return this.t;
  }

  step(grads: Grads, lr = this.lr, gradScale = 1): void {
    checkGrads(this.params, grads);
    this.t++;
    const { mu, damp } = this;
    for (const [name, p] of this.params) {
      const g = grads.get(p);
      if (!g) continue;
      const po = this.per.get(name);
      const lrP = po?.lrScale === undefined ? lr : lr * po.lrScale;
      const wd = po?.weightDecay ?? this.wd;
      const w = valuesOf(p);
      const n = g.length;
      let b = this.buf.get(name);
      const first = !b;
      if (mu !== 0 && !b) {
        b = new Float32Array(n);
        this.buf.set(name, b);
      }
      for (let i = 0; i < n; i++) {
        let d = Math.fround(Math.fround(g[i]! * gradScale) + wd * w[i]!);
        if (b) {
          const bi = first ? d : Math.fround(mu * b[i]! + (1 - damp) * d);
          b[i] = bi;
          d = this.nesterov ? Math.fround(d + mu * bi) : bi;
        }
        w[i] = w[i]! - lrP * d;
      }
      writeBack(p, w);
    }
  }

  state(): OptimizerState {
    const tensors = new Map();
    for (const [name, p] of this.params) {
      const b = this.buf.get(name);
      if (b) tensors.set(`${name}.momentum_buffer`, stateTensor(b, p.shape));
    }
    return { step: this.t, tensors };
  }

  loadState(s: OptimizerState): void {
    this.buf.clear();
    for (const [name, p] of this.params) {
      const b = loadBuffer(s, `${name}.momentum_buffer`, p.value.size);
      if (b) this.buf.set(name, b);
    }
    this.t = s.step;
  }
}
