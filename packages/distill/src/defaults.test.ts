import { JsBackend, type LlamaModel, loadModel, namedParameters, Ops, TextDataset } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULTS,
  defaultBatchSize,
  defaultEvalEvery,
  defaultWarmup,
  LR_ANCHORS,
  LR_WIDTH_EXPONENT,
  widthLr,
} from './defaults.js';
import { initLike, perturbLinearWeights } from './init.js';
import type { StepRecord } from './log.js';
import { lrRangeTest } from './lr-range.js';
import { planBatches, planOptimizer, type Setup } from './train-config.js';
import { distill } from './trainer.js';
import { splitValidation, trySplitValidation } from './validation.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const js = new JsBackend();

describe('the width rule of the peak learning rate', () => {
  it('lands on both anchors and falls with the width between them', () => {
    expect(widthLr(LR_ANCHORS.large.width)).toBeCloseTo(1e-4, 10);
    expect(widthLr(LR_ANCHORS.small.width)).toBeCloseTo(LR_ANCHORS.small.lr, 10);
    expect(LR_WIDTH_EXPONENT).toBeGreaterThan(0.5);
    expect(LR_WIDTH_EXPONENT).toBeLessThan(1);
    // stories42M (dim 512) between the two; 70B-class (8192) below Model Optimizer's 8B rate
    expect(widthLr(512)).toBeGreaterThan(1e-4);
    expect(widthLr(512)).toBeLessThan(LR_ANCHORS.small.lr);
    expect(widthLr(8192)).toBeLessThan(1e-4);
    expect(widthLr(64, 'train')).toBeCloseTo(3 * widthLr(64), 10);
  });
});

describe('batch, warmup and evaluation from the budget', () => {
  it('keeps enough steps for small budgets and the batch of 8 for large ones', () => {
    expect(defaultBatchSize(300_000, 256)).toBe(4);
    expect(defaultBatchSize(20_000, 256)).toBe(1);
    expect(defaultBatchSize(10_000_000, 256)).toBe(DEFAULTS.batchSize);
    expect(defaultWarmup(292)).toBe(14);
    expect(defaultWarmup(10_000)).toBe(100);
    expect(defaultEvalEvery(292)).toBe(37);
    expect(defaultEvalEvery(3)).toBe(1);
  });

  it('derives them from the model and the budget; explicit options win', async () => {
    const { model } = await loadModel(MODEL);
    const s: Setup = {
      kind: 'distill',
      model,
      loss: 'kl',
      temperature: 1,
      ceWeight: 1,
      hiddenPairs: [],
      hiddenWeight: 1,
    };
    const b = planBatches(s, { data: TRAIN, tokens: 300_000 });
    expect([b.batchSize, b.seqLen, b.totalSteps]).toEqual([4, 256, 292]);
    const p = planOptimizer(s, { data: TRAIN, tokens: 300_000 }, b.totalSteps);
    expect(p.lr).toBe(widthLr(64));
    expect(p.minLr).toBeCloseTo(p.lr / 10, 12);
    expect(p.warmup).toBe(14);
    const given = { data: TRAIN, tokens: 300_000, lr: 1e-4, batchSize: 8, warmup: 3 };
    const b8 = planBatches(s, given);
    expect(b8.batchSize).toBe(8);
    const p8 = planOptimizer(s, given, b8.totalSteps);
    expect([p8.lr, p8.warmup]).toEqual([1e-4, 3]);
    expect(planOptimizer({ ...s, kind: 'train' }, { data: TRAIN, tokens: 300_000 }, 292).lr).toBe(
      widthLr(64, 'train'),
    );
  });
});

describe('the hidden-state loss by default', () => {
  let teacher: LlamaModel;
  beforeAll(async () => {
    teacher = (await loadModel(MODEL)).model;
  });
  const run = async (student: LlamaModel, extra: { hidden?: false } = {}) => {
    const lines: string[] = [];
    const steps: StepRecord[] = [];
    await distill({
      data: TRAIN,
      teacher,
      student,
      tokens: 2 * 32,
      seqLen: 32,
      batchSize: 2,
      backend: js,
      teacherBackend: js,
      onStep: (r) => steps.push(r),
      log: { info: (m) => lines.push(m), warn: () => {}, debug: () => {} },
      ...extra,
    });
    return { lines, hidden: steps[0]!.hidden };
  };

  it('is on for a same-width student, off for another width or with hidden: false, and the log says so', async () => {
    const same = await run(perturbLinearWeights((await loadModel(MODEL)).model, 0.3, 1));
    expect(same.hidden).toBeGreaterThan(0);
    expect(same.lines.some((l) => /hidden-state loss on \(same width 64/.test(l))).toBe(true);

    const narrow = await run(initLike(teacher, { dim: 32, heads: 4, kvHeads: 4 }));
    expect(narrow.hidden).toBeUndefined();
    expect(
      narrow.lines.some((l) => /hidden-state loss off: the student's width \(32\) differs/.test(l)),
    ).toBe(true);

    const off = await run(perturbLinearWeights((await loadModel(MODEL)).model, 0.3, 1), { hidden: false });
    expect(off.hidden).toBeUndefined();
  });
});

describe('the validation split for early stopping', () => {
  it('splits the last dataset once: documents from the end, the others untouched', async () => {
    const head = await TextDataset.open(TRAIN);
    const dev = await TextDataset.open(DEV, { separator: '<|endoftext|>' });
    const { train, validation } = splitValidation([head, dev]);
    expect(train[0]).toBe(head);
    expect(validation.length).toBe(16); // 2% of 800 stories
    expect(train[1]!.length + validation.length).toBe(dev.length);
    expect(validation.documents()[15]).toBe(dev.documents()[799]);
    const reasons: string[] = [];
    const one = TextDataset.fromText('one short document', { path: 'tiny.txt', separator: '<|endoftext|>' });
    expect(trySplitValidation([one], (r) => reasons.push(r))).toBeUndefined();
    expect(reasons[0]).toMatch(/cannot hold out/);
  });
});

describe("lr: 'auto', the learning-rate range test", () => {
  it('sweeps a copy (the model is untouched), logs the curve, and the run uses the rate it picked', async () => {
    const teacher = (await loadModel(MODEL)).model;
    const student = perturbLinearWeights((await loadModel(MODEL)).model, 0.3, 1);
    const before = [...namedParameters(student).values()].map((p) => p.value.toF32().slice());
    const lines: string[] = [];
    const log = { info: (m: string) => lines.push(m), warn: () => {}, debug: () => {} };
    const r = await lrRangeTest({
      model: student,
      step: {
        backend: js,
        teacher: { model: teacher, ops: new Ops(js), layers: [] },
        loss: { loss: 'kl', temperature: 1, ceWeight: 1, hiddenWeight: 0, studentLayers: [] },
        seqLen: 32,
        batchSize: 2,
        micro: 2,
        clip: 1,
      },
      options: { data: TRAIN, tokens: 0 },
      weightDecay: 0,
      betas: [0.9, 0.95],
      tokens: Int32Array.from({ length: 4000 }, (_, i) => (i * 7919) % 512),
      seed: 0,
      name: 'synthetic',
      log,
      range: { steps: 12, min: 1e-4, max: 1e-1 },
    });
    expect(r.curve.length).toBeGreaterThanOrEqual(5);
    expect(r.lr).toBeGreaterThanOrEqual(1e-4);
    expect(r.lr).toBeLessThanOrEqual(1e-1);
    expect(
      lines.some((l) => /^lr range test \(\d+ steps on a copy\): .*steepest descent at lr/.test(l)),
    ).toBe(true);
    const after = [...namedParameters(student).values()].map((p) => p.value.toF32());
    expect(after.every((a, i) => a.every((v: number, j: number) => v === before[i]![j]))).toBe(true);

    const run: string[] = [];
    await distill({
      data: TRAIN,
      teacher,
      student,
      tokens: 2 * 32,
      seqLen: 32,
      batchSize: 2,
      lr: 'auto',
      lrRange: { steps: 6, min: 1e-4, max: 1e-2 },
      hidden: false,
      backend: js,
      teacherBackend: js,
      log: { info: (m) => run.push(m), warn: () => {}, debug: () => {} },
    });
    const picked = /steepest descent at lr ([\d.e+-]+)/.exec(run.join('\n'))![1]!;
    expect(run.join('\n')).toContain(`lr ${Number(Number(picked).toPrecision(3))} cosine`);
  }, 60_000);
});
