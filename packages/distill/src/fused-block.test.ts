import { createOnnxruntimeBackend } from '@lineage/backend-onnxruntime';
import {
  type Backend,
  type FusedTraining,
  initModel,
  type LlamaModel,
  llamaConfig,
  loadModel,
  Ops,
  type Parameter,
  valueAndGrad,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fusedBlock } from './fused-block.js';
import { perturbLinearWeights } from './init.js';
import { forwardFinal, type StepLossOptions, stepLoss } from './losses.js';

/*
 * The tape wiring of the fused decoder blocks (the graphs themselves are checked against the per-op block
 * and finite differences in backend-onnxruntime's fused-block.test.ts): a whole distillation objective on
 * onnxruntime with fused blocks against the same backend with the per-op blocks (its fused KD head kept),
 * on the real stories260K teacher and a damaged copy as the student: loss, metrics and every parameter's
 * gradient, with the hidden-state loss reading block outputs and with frozen weights.
 */

const B = 2;
const T = 64;

async function batch(model: LlamaModel) {
  const V = model.config.vocabSize;
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % V);
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + 5) % V);
  return { ids, targets };
}

/** The step's objective and gradients on `be` (the teacher's final hidden states on the same backend). */
async function step(
  be: Backend,
  teacher: LlamaModel,
  student: LlamaModel,
  o: StepLossOptions,
  params: Parameter[],
) {
  const { ids, targets } = await batch(teacher);
  const tops = new Ops(be);
  const t = await tops.tidy(() => forwardFinal(tops, teacher, ids, B, [1, 3]));
  try {
    return await valueAndGrad(
      be,
      (g) => stepLoss(g, student, ids, targets, B, { ...t, model: teacher }, o),
      params,
    );
  } finally {
    be.dispose(t.final);
    for (const h of t.hidden) be.dispose(h);
  }
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

function maxRel(got: Float32Array, want: Float32Array): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i]! - want[i]!));
    s = Math.max(s, Math.abs(want[i]!));
  }
  return s === 0 ? d : d / s;
}

describe('fused decoder blocks in the distillation step (onnxruntime cpu)', () => {
  let fusedBe: Backend;
  let perOpBe: Backend;
  let teacher: LlamaModel;
  let blockCalls = 0;
  let perOpFull: FusedTraining | undefined;
  beforeAll(async () => {
    teacher = (await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'))).model;
    fusedBe = await createOnnxruntimeBackend({ device: 'cpu' });
    const ft = fusedBe.fusedTraining!;
    const fwd = ft.blockForward!.bind(ft);
    ft.blockForward = async (i) => {
      blockCalls++;
      return fwd(i);
    };
    perOpBe = await createOnnxruntimeBackend({ device: 'cpu' });
    const kd = perOpBe.fusedTraining!;
    perOpFull = kd;
    // the per-op blocks, the same fused KD head
    (perOpBe as { fusedTraining: FusedTraining }).fusedTraining = { kdHead: kd.kdHead.bind(kd) };
  });
  afterAll(async () => {
    await fusedBe?.close?.();
    (perOpBe as { fusedTraining?: FusedTraining }).fusedTraining = perOpFull;
    await perOpBe?.close?.();
  });

  const cases: [string, Partial<StepLossOptions>, (p: Parameter, name: string) => boolean][] = [
    ['KL', {}, () => true],
    [
      'KL + hidden-state loss, attention weights of block 2 frozen',
      { studentLayers: [1, 3], hiddenWeight: 0.5 },
      (_, n) => !(n.includes('layers.2.') && n.includes('self_attn')),
    ],
  ];
  for (const [label, extra, trains] of cases) {
    it(`loss and every gradient agree with the per-op blocks: ${label}`, async () => {
      const student = perturbLinearWeights(teacher.clone(), 0.3, 2);
      const named = [...student.namedParameters()];
      for (const [n, p] of named) p.trainable = trains(p, n);
      const params = named.map(([, p]) => p);
      const o: StepLossOptions = {
        loss: 'kl',
        temperature: 1,
        ceWeight: 1,
        hiddenWeight: 1,
        studentLayers: [],
        ...extra,
      };
      const calls = blockCalls;
      const f = await step(fusedBe, teacher, student, o, params);
      // the teacher's and the student's blocks all ran fused
      expect(blockCalls - calls).toBe(2 * teacher.blocks.length);
      const r = await step(perOpBe, teacher, student, o, params);
      expect(r.loss).toBeGreaterThan(1e-3);
      expect(rel(f.loss, r.loss)).toBeLessThan(1e-5);
      for (const k of Object.keys(r.metrics)) expect(rel(f.metrics[k]!, r.metrics[k]!), k).toBeLessThan(1e-5);
      expect([...f.grads.keys()].length).toBe([...r.grads.keys()].length);
      for (const [n, p] of named) {
        const want = r.grads.get(p);
        if (!p.trainable) {
          expect(f.grads.has(p), n).toBe(false);
          continue;
        }
        expect(want, n).toBeDefined();
        expect(maxRel(f.grads.get(p)!, want!), n).toBeLessThan(1e-4);
      }
      student.release();
    });
  }

  it('leaves blocks it cannot serve to the per-op path: biased projections, a RoPE offset', async () => {
    const base = llamaConfig({
      dim: 32,
      layers: 1,
      heads: 4,
      kvHeads: 2,
      hidden: 48,
      vocab: 64,
      context: 32,
    });
    const ops = new Ops(fusedBe);
    const x = ops.upload(new Float32Array(2 * 8 * 32).fill(0.1), [2, 8, 32]);
    const plain = initModel(base, { seed: 1 });
    const y = await fusedBlock(ops, plain, 0, x, plain.rope(ops, 8));
    expect(y?.shape).toEqual([2, 8, 32]);
    expect(await fusedBlock(ops, plain, 0, x, plain.rope(ops, 8, 3))).toBeUndefined();
    const biased = initModel({ ...base, qkvBias: true }, { seed: 1 });
    expect(await fusedBlock(ops, biased, 0, x, biased.rope(ops, 8))).toBeUndefined();
  });
});
