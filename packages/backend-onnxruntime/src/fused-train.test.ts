import {
  type Backend,
  crossEntropyLoss,
  HostTensor,
  JsBackend,
  klDivergence,
  Parameter,
  Random,
  valueAndGrad,
} from '@lineage/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOnnxruntimeBackend } from './base.js';

/*
 * The fused distillation head (one onnxruntime graph: both models' logits, KL, CE, and the KL's gradients
 * w.r.t. the student's hidden states and head) against the composite ops on the js reference backend,
 * recorded on the tape (whose gradients core checks against float64 finite differences): values and
 * gradients within float32 tolerance, at T = 1 and T = 2, with the teacher wider than the student.
 */
const N = 24;
const D = 16;
const Dt = 24;
const V = 300;

function rand(seed: number, n: number, scale: number): Float32Array {
  const r = new Random(seed);
  return Float32Array.from({ length: n }, () => (r.next() * 2 - 1) * scale);
}

const h = rand(1, N * D, 1);
const w = rand(2, V * D, 0.5);
const th = rand(3, N * Dt, 1);
const tw = rand(4, V * Dt, 0.5);
const targets = Int32Array.from({ length: N }, (_, i) => (i * 37) % V);

/** The reference: composite ops on the js backend, gradients by the tape. */
async function reference(T: number) {
  const be = new JsBackend();
  const ph = new Parameter(new HostTensor('f32', [N, D], h.slice()));
  const pw = new Parameter(new HostTensor('f32', [V, D], w.slice()));
  let ce = 0;
  const r = await valueAndGrad(
    be,
    async (ops) => {
      const zs = await ops.matmul(ph.tensor(be), pw.tensor(be), { transposeB: true });
      const zt = await ops.tape.untaped(() =>
        ops.matmul(ops.upload(th.slice(), [N, Dt]), ops.upload(tw.slice(), [V, Dt]), { transposeB: true }),
      );
      ce = (await ops.readF32(await ops.tape.untaped(() => crossEntropyLoss(ops, zs, targets))))[0]!;
      return klDivergence(ops, zt, zs, { temperature: T });
    },
    [ph, pw],
  );
  return { kl: r.loss, ce, dh: r.grads.get(ph)!, dw: r.grads.get(pw)! };
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

function expectClose(name: string, got: Float32Array, want: Float32Array) {
  expect(got.length).toBe(want.length);
  let d = 0;
  for (let i = 0; i < got.length; i++) d = Math.max(d, Math.abs(got[i]! - want[i]!));
  const scale = maxAbs(want);
  expect(scale, `${name}: reference is all zeros`).toBeGreaterThan(0);
  expect(d, `${name}: max |Δ| ${d} vs max |g| ${scale}`).toBeLessThanOrEqual(1e-4 * scale + 1e-7);
}

describe('onnxruntime fused KD head (Backend.fusedTraining.kdHead)', () => {
  let be: Backend;
  beforeAll(async () => {
    be = await createOnnxruntimeBackend({ device: 'cpu' });
  });
  afterAll(async () => {
    await be.close?.();
  });

  for (const T of [1, 2]) {
    it(`agrees with the composite KL on the js reference, values and gradients (T = ${T})`, async () => {
      const ref = await reference(T);
      const inputs = {
        hidden: be.upload(h.slice(), [N, D]),
        weight: be.upload(w.slice(), [V, D]),
        teacherHidden: be.upload(th.slice(), [N, Dt]),
        teacherWeight: be.upload(tw.slice(), [V, Dt]),
        targets,
        temperature: T,
      };
      const r = await be.fusedTraining!.kdHead(inputs);
      if ('unsupported' in r) throw new Error(r.unsupported);
      const read = async (t: (typeof r)['kl']) => (await be.read(t)) as Float32Array;
      const kl = (await read(r.kl))[0]!;
      const ce = (await read(r.ce))[0]!;
      expect(r.kl.shape).toEqual([]);
      expect(r.dHidden.shape).toEqual([N, D]);
      expect(r.dWeight.shape).toEqual([V, D]);
      expect(ref.kl).toBeGreaterThan(0.01);
      expect(Math.abs(kl - ref.kl)).toBeLessThanOrEqual(1e-5 * ref.kl + 1e-6);
      expect(Math.abs(ce - ref.ce)).toBeLessThanOrEqual(1e-5 * ref.ce + 1e-6);
      expectClose('d kl / d hidden', await read(r.dHidden), ref.dh);
      expectClose('d kl / d weight', await read(r.dWeight), ref.dw);
      for (const t of [r.kl, r.ce, r.dHidden, r.dWeight, inputs.hidden, inputs.weight]) be.dispose(t);
      be.dispose(inputs.teacherHidden);
      be.dispose(inputs.teacherWeight);
    });
  }

  it('declines mismatched shapes and out-of-vocabulary targets (the caller falls back)', async () => {
    const hid = be.upload(h.slice(), [N, D]);
    const wt = be.upload(w.slice(), [V, D]);
    const bad = await be.fusedTraining!.kdHead({
      hidden: hid,
      weight: wt,
      teacherHidden: hid,
      teacherWeight: be.upload(new Float32Array(10 * D), [10, D]),
      targets,
      temperature: 1,
    });
    expect(bad).toMatchObject({ unsupported: expect.stringContaining('teacher') });
    const oov = await be.fusedTraining!.kdHead({
      hidden: hid,
      weight: wt,
      teacherHidden: hid,
      teacherWeight: wt,
      targets: new Int32Array(N).fill(V),
      temperature: 1,
    });
    expect(oov).toMatchObject({ unsupported: expect.stringContaining('vocabulary') });
  });
});
