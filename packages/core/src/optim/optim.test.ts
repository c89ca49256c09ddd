import { describe, expect, it } from 'vitest';
import { languageModelLoss } from '../autograd/losses.js';
import { randomParam, randomTokens, tinyModel } from '../autograd/testing.js';
import { valueAndGrad } from '../autograd/value-and-grad.js';
import { JsBackend } from '../backend/js/js-backend.js';
import type { Parameter } from '../nn/parameter.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { AdamW } from './adamw.js';
import { clipGradNorm, GradientAccumulator, gradNorm } from './clip.js';
import { namedParameters } from './optimizer.js';
import { lrSchedule } from './schedule.js';
import { SGD } from './sgd.js';

const f32 = Math.fround;

describe('learning-rate schedules', () => {
  it('linear warmup then cosine decay to minLr', () => {
    const s = lrSchedule({ lr: 1, warmupSteps: 4, totalSteps: 14, minLr: 0.1 });
    expect([0, 1, 2, 3].map(s)).toEqual([0.25, 0.5, 0.75, 1]);
    expect(s(4)).toBe(1);
    expect(s(9)).toBeCloseTo(0.55, 12); // halfway: min + (lr − min)/2
    expect(s(14)).toBeCloseTo(0.1, 12);
    expect(s(100)).toBeCloseTo(0.1, 12);
  });

  it('linear and constant decay; bad settings throw', () => {
    const lin = lrSchedule({ lr: 2, totalSteps: 10, decay: 'linear' });
    expect([0, 5, 10].map(lin)).toEqual([2, 1, 0]);
    const c = lrSchedule({ lr: 3, warmupSteps: 2, totalSteps: 10, decay: 'constant' });
    expect([0, 1, 2, 9].map(c)).toEqual([1.5, 3, 3, 3]);
    expect(() => lrSchedule({ lr: 1, warmupSteps: 20, totalSteps: 10 })).toThrow(RangeError);
  });
});

describe('gradient clipping and accumulation', () => {
  it('clips by global norm like clip_grad_norm_', () => {
    const a = randomParam([3], 1);
    const b = randomParam([2], 2);
    const grads = new Map<Parameter, Float32Array>([
      [a, Float32Array.from([3, 0, 0])],
      [b, Float32Array.from([0, 4])],
    ]);
    expect(clipGradNorm(grads, 10)).toBe(5); // below the limit: unchanged
    expect([...grads.get(a)!]).toEqual([3, 0, 0]);
    expect(clipGradNorm(grads, 1)).toBe(5);
    expect(gradNorm(grads)).toBeCloseTo(1, 5);
    expect(grads.get(b)![1]).toBeCloseTo(0.8, 5);
    grads.get(a)![0] = Number.NaN;
    expect(clipGradNorm(grads, 1)).toBeNaN();
    expect(grads.get(b)![1]).toBeCloseTo(0.8, 5); // untouched
  });

  it('token-weighted accumulation over micro-batches equals the full batch', async () => {
    const js = new JsBackend();
    const model = tinyModel();
    const params = [...namedParameters(model).values()];
    const tokens = randomTokens(4 * 6, 11, 5);
    const full = await valueAndGrad(js, (o) => languageModelLoss(o, model, tokens, 4), params);
    const acc = new GradientAccumulator();
    for (let i = 0; i < 2; i++) {
      const mb = tokens.subarray(i * 12, (i + 1) * 12);
      const { grads } = await valueAndGrad(js, (o) => languageModelLoss(o, model, mb, 2), params);
      acc.add(grads, 2 * 5); // tokens scored in the micro-batch
    }
    expect(acc.size).toBe(2);
    const mean = acc.take();
    expect(acc.size).toBe(0);
    for (const p of params) {
      const g = full.grads.get(p)!;
      const m = mean.get(p)!;
      let err = 0;
      let scale = 0;
      for (let i = 0; i < g.length; i++) {
        err = Math.max(err, Math.abs(g[i]! - m[i]!));
        scale = Math.max(scale, Math.abs(g[i]!));
      }
      expect(err).toBeLessThan(1e-5 * Math.max(1, scale));
    }
  });
});

/** Two named parameters, a matrix and a vector. */
function fixture() {
  const w = randomParam([2, 3], 10);
  const b = randomParam([3], 11);
  const g1 = new Map<Parameter, Float32Array>([
    [w, Float32Array.from([0.1, -0.2, 0.3, 0.05, 0, -1])],
    [b, Float32Array.from([0.5, -0.5, 2])],
  ]);
  const g2 = new Map<Parameter, Float32Array>([
    [w, Float32Array.from([-0.3, 0.1, 0.2, 0.4, -0.1, 0.5])],
    [b, Float32Array.from([0.1, 0.2, -0.3])],
  ]);
  return {
    w,
    b,
    named: new Map([
      ['w', w],
      ['b', b],
    ]),
    steps: [g1, g2],
  };
}

describe('AdamW', () => {
  it('matches the PyTorch update (decoupled decay on matrices only) step by step', () => {
    const { w, b, named, steps } = fixture();
    const lr = 0.01;
    const [b1, b2, eps, wd] = [0.9, 0.999, 1e-8, 0.1];
    const ref = new Map([...named].map(([n, p]) => [n, Float64Array.from(p.value.toF32())]));
    const m = new Map([...named].map(([n, p]) => [n, new Float64Array(p.value.size)]));
    const v = new Map([...named].map(([n, p]) => [n, new Float64Array(p.value.size)]));
    const opt = new AdamW(named, { lr, weightDecay: wd });
    steps.forEach((g, k) => {
      opt.step(g);
      const t = k + 1;
      for (const [n, p] of named) {
        const x = ref.get(n)!;
        const gs = g.get(p)!;
        const decay = n === 'w' ? wd : 0;
        for (let i = 0; i < x.length; i++) {
          x[i] = x[i]! * (1 - lr * decay);
          m.get(n)![i] = 0.9 * m.get(n)![i]! + 0.1 * gs[i]!;
          v.get(n)![i] = b2 * v.get(n)![i]! + (1 - b2) * gs[i]! ** 2;
          const mh = m.get(n)![i]! / (1 - b1 ** t);
          const vh = v.get(n)![i]! / (1 - b2 ** t);
          x[i] = x[i]! - (lr * mh) / (Math.sqrt(vh) + eps);
        }
        const got = p.value.toF32();
        for (let i = 0; i < x.length; i++) expect(got[i]).toBeCloseTo(x[i]!, 6);
      }
    });
    expect(opt.stepCount).toBe(2);
    expect(w.value.dtype).toBe('f32');
    expect(b.value.size).toBe(3);
  });

  it('writes back to the parameter, refreshes device copies and never mutates the stored array', () => {
    const js = new JsBackend();
    const { w, named, steps } = fixture();
    const stored = w.value.data as Float32Array;
    const before = stored.slice();
    const dev = w.tensor(js);
    new AdamW(named, { lr: 0.1 }).step(steps[0]!);
    expect([...stored]).toEqual([...before]);
    expect(w.tensor(js)).not.toBe(dev);
    expect(js.liveTensors()).toBe(1); // the stale copy was freed
  });

  it('skips parameters without gradients and rejects foreign ones', () => {
    const { w, b, named, steps } = fixture();
    const bBefore = b.value.toF32().slice();
    const opt = new AdamW(named, { lr: 0.1 });
    opt.step(new Map([[w, steps[0]!.get(w)!]]));
    expect([...b.value.toF32()]).toEqual([...bBefore]);
    expect([...opt.state().tensors.keys()]).toEqual(['w.exp_avg', 'w.exp_avg_sq']);
    const stranger = randomParam([2], 3);
    expect(() => opt.step(new Map([[stranger, new Float32Array(2)]]))).toThrow(/does not own/);
  });

  it('state round trip resumes exactly; mismatched state throws', () => {
    const a = fixture();
    const optA = new AdamW(a.named, { lr: 0.05 });
    optA.step(a.steps[0]!);
    const state = optA.state();
    const snapshot = new Map([...a.named].map(([n, p]) => [n, p.value.toF32().slice()]));
    optA.step(a.steps[1]!);

    const b = fixture();
    for (const [n, p] of b.named) p.value = new HostTensor('f32', p.shape, snapshot.get(n)!.slice());
    const optB = new AdamW(b.named, { lr: 0.05 });
    optB.loadState(state);
    expect(optB.stepCount).toBe(1);
    const g2 = new Map([...b.named].map(([n, p]) => [p, a.steps[1]!.get(a.named.get(n)!)!]));
    optB.step(g2);
    for (const [n, p] of b.named) expect([...p.value.toF32()]).toEqual([...a.named.get(n)!.value.toF32()]);

    const bad = { step: 1, tensors: new Map([['w.exp_avg', HostTensor.zeros('f32', [5])]]) };
    expect(() => new AdamW(b.named, { lr: 1 }).loadState(bad)).toThrow(RangeError);
  });
});

describe('SGD', () => {
  for (const [label, o] of [
    ['plain', { momentum: 0 }],
    ['momentum + dampening + L2', { momentum: 0.9, dampening: 0.1, weightDecay: 0.01 }],
    ['nesterov', { momentum: 0.8, nesterov: true }],
  ] as const) {
    it(`${label} matches the PyTorch update`, () => {
      const { named, steps } = fixture();
      const lr = 0.1;
      const mu = o.momentum;
      const damp = 'dampening' in o ? o.dampening : 0;
      const wd = 'weightDecay' in o ? o.weightDecay : 0;
      const nesterov = 'nesterov' in o;
      const ref = new Map([...named].map(([n, p]) => [n, Float64Array.from(p.value.toF32())]));
      const buf = new Map<string, Float64Array>();
      const opt = new SGD(named, { lr, ...o });
      steps.forEach((g) => {
        opt.step(g);
        for (const [n, p] of named) {
          const x = ref.get(n)!;
          const gs = g.get(p)!;
          const first = !buf.has(n);
          const bb = buf.get(n) ?? new Float64Array(x.length);
          buf.set(n, bb);
          for (let i = 0; i < x.length; i++) {
            let d = gs[i]! + wd * x[i]!;
            if (mu) {
              bb[i] = first ? d : mu * bb[i]! + (1 - damp) * d;
              d = nesterov ? d + mu * bb[i]! : bb[i]!;
            }
            x[i] = x[i]! - lr * d;
          }
          const got = p.value.toF32();
          for (let i = 0; i < x.length; i++) expect(got[i]).toBeCloseTo(f32(x[i]!), 6);
        }
      });
      expect(opt.state().tensors.size).toBe(mu ? 2 : 0);
    });
  }
});
