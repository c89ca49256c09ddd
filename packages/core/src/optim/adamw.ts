import type { Parameter } from '../nn/parameter.js';
import { adamwUpdate } from './adamw-update.js';
import {
  checkGrads,
  type Grads,
  loadBuffer,
  type Optimizer,
  type OptimizerState,
  stateTensor,
  toNamed,
  writeBack,
} from './optimizer.js';
import type { ParamOptions } from './param-groups.js';

export interface AdamWOptions {
  lr: number;
  /** (β1, β2), default (0.9, 0.999). */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay λ (p ← p − lr·λ·p), default 0.01 as PyTorch. */
  weightDecay?: number;
  /** Which parameters decay (default: matrices only, i.e. rank ≥ 2: not norms or biases). */
  decay?: (name: string, p: Parameter) => boolean;
  /** Per-parameter settings (parameter groups): a learning-rate multiplier, a weight decay of its own. */
  paramOptions?: (name: string, p: Parameter) => ParamOptions | undefined;
}

/**
 * AdamW (Loshchilov & Hutter), PyTorch's update: p ← p·(1 − lr·λ); m ← β1·m + (1−β1)·g;
 * v ← β2·v + (1−β2)·g²; p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε). Moments are f32 (the state), the
 * arithmetic float64 rounded to f32 per element: deterministic, so a seeded run is reproducible bit for bit.
 */
export class AdamW implements Optimizer {
  private readonly params: Map<string, Parameter>;
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  private t = 0;
  readonly lr: number;
  private readonly b1: number;
  private readonly b2: number;
  private readonly eps: number;
  private readonly wd: number;
  private readonly decays: (name: string, p: Parameter) => boolean;
  private readonly per = new Map<string, ParamOptions>();

  constructor(params: ReadonlyMap<string, Parameter> | Iterable<[string, Parameter]>, o: AdamWOptions) {
    this.params = toNamed(params);
    this.lr = o.lr;
    [this.b1, this.b2] = o.betas ?? [0.9, 0.999];
    this.eps = o.eps ?? 1e-8;
    this.wd = o.weightDecay ?? 0.01;
    this.decays = o.decay ?? ((_, p) => p.shape.length >= 2);
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
    const bc1 = 1 - this.b1 ** this.t;
    const sbc2 = Math.sqrt(1 - this.b2 ** this.t);
    const { b1, b2, eps } = this;
    for (const [name, p] of this.params) {
      const g = grads.get(p);
      if (!g) continue;
      const n = g.length;
      let m = this.m.get(name);
      let v = this.v.get(name);
      if (!m || !v) {
        m = new Float32Array(n);
        v = new Float32Array(n);
        this.m.set(name, m);
        this.v.set(name, v);
      }
      // In place into the array this optimiser wrote last step when it has not escaped since (no clone,
      // state dict or read of p.value shares it); otherwise the stored values are read and a fresh array
      // written. The arithmetic is the same either way.
      const own = p.mutableValues();
      const w0 = own ?? p.value.toF32();
      const w = own ?? new Float32Array(n);
      const po = this.per.get(name);
      const lrP = po?.lrScale === undefined ? lr : lr * po.lrScale;
      const wd = po?.weightDecay ?? (this.decays(name, p) ? this.wd : undefined);
      const shrink = wd === undefined ? 1 : 1 - lrP * wd;
      adamwUpdate(w0, w, g, m, v, b1, b2, shrink, lrP / bc1, sbc2, eps, gradScale);
      writeBack(p, w, true);
    }
  }

  state(): OptimizerState {
    const tensors = new Map();
    for (const [name, p] of this.params) {
      const m = this.m.get(name);
      const v = this.v.get(name);
      if (!m || !v) continue;
      tensors.set(`${name}.exp_avg`, stateTensor(m, p.shape));
      tensors.set(`${name}.exp_avg_sq`, stateTensor(v, p.shape));
    }
    return { step: this.t, tensors };
  }

  loadState(s: OptimizerState): void {
    this.m.clear();
    this.v.clear();
    for (const [name, p] of this.params) {
      const m = loadBuffer(s, `${name}.exp_avg`, p.value.size);
      const v = loadBuffer(s, `${name}.exp_avg_sq`, p.value.size);
      if (!m !== !v) throw new Error(`optimizer state for '${name}' has only one of exp_avg, exp_avg_sq`);
      if (m && v) {
        this.m.set(name, m);
        this.v.set(name, v);
      }
    }
    this.t = s.step;
  }
}
