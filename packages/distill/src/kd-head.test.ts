import {
  type Backend,
  crossEntropyLoss,
  type FusedTraining,
  GradOps,
  HostTensor,
  JsBackend,
  type KdHeadInputs,
  klDivergence,
  type LlamaModel,
  loadModel,
  namedParameters,
  Parameter,
  valueAndGrad,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { perturbLinearWeights } from './init.js';
import { canFuseKdHead } from './kd-head.js';
import { forwardCapture, forwardFinal, type StepLossOptions, stepLoss } from './losses.js';

/*
 * The autodiff wiring of the fused distillation head (the onnxruntime graph itself is checked against
 * the composite ops in backend-onnxruntime's fused-train.test.ts): a js backend given a FusedTraining
 * that computes the head with its own tape stands in for onnxruntime, and the step's loss, metrics and
 * every parameter's gradient must match the composite path on the plain js backend — real stories260K
 * teacher, a damaged copy as the student.
 */

/** A js backend with a kdHead computed by a separate tape over copies of its inputs. */
class FusedJs extends JsBackend {
  calls = 0;
  readonly fusedTraining: FusedTraining = {
    kdHead: async (i: KdHeadInputs) => {
      this.calls++;
      const param = async (t: KdHeadInputs['hidden']) =>
        new Parameter(new HostTensor('f32', t.shape, (await this.read(t)) as Float32Array));
      const [ph, pw] = [await param(i.hidden), await param(i.weight)];
      let ce = 0;
      const r = await valueAndGrad(
        this,
        async (ops) => {
          const zs = await ops.matmul(ph.tensor(this), pw.tensor(this), { transposeB: true });
          const zt = await ops.tape.untaped(() =>
            ops.matmul(i.teacherHidden, i.teacherWeight, { transposeB: true }),
          );
          ce = (await ops.readF32(await ops.tape.untaped(() => crossEntropyLoss(ops, zs, i.targets))))[0]!;
          return klDivergence(ops, zt, zs, { temperature: i.temperature });
        },
        [ph, pw],
      );
      ph.release();
      pw.release();
      return {
        kl: this.upload(Float32Array.of(r.loss), []),
        ce: this.upload(Float32Array.of(ce), []),
        dHidden: this.upload(r.grads.get(ph)!, i.hidden.shape),
        dWeight: this.upload(r.grads.get(pw)!, i.weight.shape),
      };
    },
  };
}

const opts = (over: Partial<StepLossOptions> = {}): StepLossOptions => ({
  loss: 'kl',
  temperature: 1,
  ceWeight: 1,
  hiddenWeight: 1,
  studentLayers: [],
  ...over,
});

let teacher: LlamaModel;
let student: LlamaModel;
let ids: Int32Array;
let targets: Int32Array;
const B = 2;
const T = 12;
beforeAll(async () => {
  teacher = (await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'))).model;
  student = perturbLinearWeights(
    (await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'))).model,
    0.3,
    1,
  );
  const text =
    'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.';
  const tok = teacher.tokenizer!.encode(text, { bos: true });
  ids = Int32Array.from({ length: B * T }, (_, i) => tok[i % tok.length]!);
  targets = Int32Array.from({ length: B * T }, (_, i) => tok[(i + 1) % tok.length]!);
});

/** Loss, metrics and gradients of stepLoss on `be`, the teacher given as final hidden states or logits. */
async function step(be: Backend, o: StepLossOptions, teacherAs: 'final' | 'logits', layers: number[] = []) {
  const params = [...namedParameters(student).values()];
  const tops = new GradOps(be);
  const t =
    teacherAs === 'final'
      ? { ...(await forwardFinal(tops, teacher, ids, B, layers)), model: teacher }
      : await forwardCapture(tops, teacher, ids, B, layers);
  const r = await valueAndGrad(be, (ops) => stepLoss(ops, student, ids, targets, B, t, o), params);
  for (const p of params) p.release();
  return { ...r, params };
}

describe('fused KD head in the distillation step', () => {
  it('can fuse only where the backend offers it and both heads are plain matrices on it', () => {
    const fj = new FusedJs();
    expect(canFuseKdHead(new GradOps(fj), student, teacher, new GradOps(fj))).toBe(true);
    expect(canFuseKdHead(new GradOps(new JsBackend()), student, teacher, new GradOps(new JsBackend()))).toBe(
      false,
    );
    expect(canFuseKdHead(new GradOps(fj), student, teacher, new GradOps(new FusedJs()))).toBe(false);
  });

  for (const [name, o, layers] of [
    ['KL at T = 1', opts(), []],
    [
      'KL at T = 2 with the hidden-state loss on two layer pairs',
      opts({ temperature: 2, studentLayers: [1, 3] }),
      [1, 3],
    ],
  ] as const) {
    it(`${name}: loss, metrics and every gradient as the composite path`, async () => {
      const fj = new FusedJs();
      const fused = await step(fj, o, 'final', [...layers]);
      expect(fj.calls).toBe(1);
      const ref = await step(new JsBackend(), o, 'logits', [...layers]);
      expect(Math.abs(fused.loss - ref.loss)).toBeLessThanOrEqual(1e-5 * ref.loss);
      for (const k of Object.keys(ref.metrics))
        expect(Math.abs(fused.metrics[k]! - ref.metrics[k]!), k).toBeLessThanOrEqual(
          1e-5 * Math.abs(ref.metrics[k]!) + 1e-7,
        );
      expect(Object.keys(fused.metrics).sort()).toEqual(Object.keys(ref.metrics).sort());
      expect(fused.grads.size).toBe(ref.grads.size);
      for (const p of ref.params) {
        const a = ref.grads.get(p)!;
        const b = fused.grads.get(p)!;
        let scale = 0;
        let d = 0;
        for (let i = 0; i < a.length; i++) {
          scale = Math.max(scale, Math.abs(a[i]!));
          d = Math.max(d, Math.abs(a[i]! - b[i]!));
        }
        expect(d).toBeLessThanOrEqual(1e-4 * scale + 1e-7);
      }
    });
  }

  it('the teacher as final hidden states on a backend without the capability: the composite path, bit for bit', async () => {
    const a = await step(new JsBackend(), opts(), 'final');
    const b = await step(new JsBackend(), opts(), 'logits');
    expect(a.loss).toBe(b.loss);
    for (const p of a.params) expect(a.grads.get(p)).toEqual(b.grads.get(p));
  });
});
