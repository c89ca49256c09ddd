import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  crossEntropyLoss,
  JsBackend,
  LineageError,
  type LlamaModel,
  loadModel,
  namedParameters,
  type Parameter,
  SafetensorsFile,
  selectParameters,
} from '@lineage/core';
import { checkGradients, sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPTIMIZER_FILE } from './checkpoint.js';
import { perturbLinearWeights } from './init.js';
import type { StepRecord } from './log.js';
import { forwardCapture } from './losses.js';
import { RecoveryInterrupted, recoverCapability } from './recover.js';
import { l1, regularizerTerms, resolveRegularizers } from './regularizers.js';
import { type DistillOptions, distill, train } from './trainer.js';

/*
 * Training a chosen subset of stories260K's parameters (real model, real TinyStories text, js backend),
 * with an L1 penalty on them and with parameter groups.
 */
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const js = new JsBackend();
const tmp = mkdtempSync(join(tmpdir(), 'lineage-selective-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const LAYER2_MLP = [
  'model.layers.2.mlp.gate_proj.weight',
  'model.layers.2.mlp.up_proj.weight',
  'model.layers.2.mlp.down_proj.weight',
];

const stories = async () => (await loadModel(MODEL)).model;
const bitsOf = (p: Parameter) => new Uint32Array(p.value.toF32().slice().buffer);
const snapshot = (m: LlamaModel) => new Map([...namedParameters(m)].map(([n, p]) => [n, bitsOf(p)]));
const l1Norm = (ps: Parameter[]) =>
  ps.reduce((s, p) => s + p.value.toF32().reduce((a, v) => a + Math.abs(v), 0), 0);
const equalBits = (a: Uint32Array, b: Uint32Array) => a.length === b.length && a.every((v, i) => v === b[i]);

const small = {
  data: TRAIN,
  seqLen: 32,
  batchSize: 4,
  tokens: 4 * 128,
  lr: 3e-3,
  backend: js,
  teacherBackend: js,
} satisfies Partial<DistillOptions>;

let teacher: LlamaModel;
beforeAll(async () => {
  teacher = await stories();
});

describe('training a chosen subset of parameters with an L1 penalty on them', () => {
  it("distill trains only layer 2's MLP; every other parameter is bitwise unchanged; the L1 term is reported", async () => {
    const student = perturbLinearWeights(await stories(), 0.3, 1);
    const before = snapshot(student);
    const selected = LAYER2_MLP.map((n) => namedParameters(student).get(n)!);
    const l1Before = l1Norm(selected);
    const steps: StepRecord[] = [];
    const weight = 1e-4;
    const r = await distill({
      ...small,
      teacher,
      student,
      trainable: 'layers.2.mlp.*',
      regularizers: [l1(weight)],
      // the loss is KL + the L1 term alone, as the assertions below add it up
      hidden: false,
      onStep: (s) => steps.push(s),
    });
    expect(r.steps).toBe(4);
    let changed = 0;
    for (const [name, p] of namedParameters(student)) {
      const same = equalBits(bitsOf(p), before.get(name)!);
      if (LAYER2_MLP.includes(name)) expect(same, `${name} trained`).toBe(false);
      else expect(same, `${name} unchanged`).toBe(true);
      if (!same) changed++;
    }
    expect(changed).toBe(3);
    // the first step reports weight · Σ|w| of the selected weights as they were before it
    expect(steps[0]!.regularizers!.l1!).toBeCloseTo(weight * l1Before, 3);
    for (const s of steps) {
      expect(s.regularizers!.l1!).toBeGreaterThan(0);
      // the objective is the KL plus the penalty
      expect(s.loss).toBeCloseTo(s.kl! + s.regularizers!.l1!, 4);
    }
    // the penalty shrinks the weights it is on, compared with the same run without it
    const plain = perturbLinearWeights(await stories(), 0.3, 1);
    await distill({ ...small, teacher, student: plain, trainable: 'layers.2.mlp.*' });
    const strong = perturbLinearWeights(await stories(), 0.3, 1);
    await distill({ ...small, teacher, student: strong, trainable: 'layers.2.mlp.*', regularizers: [l1(1)] });
    const norm = (m: LlamaModel) => l1Norm(LAYER2_MLP.map((n) => namedParameters(m).get(n)!));
    // AdamW moves each weight by about lr per step when the penalty dominates its gradient: at least half
    // of that over the 4 steps
    const n = selected.reduce((a, p) => a + p.value.size, 0);
    expect(norm(strong)).toBeLessThan(norm(plain) - 0.5 * 4 * small.lr * n);
  }, 120_000);

  it('the L1 gradient (alone and in the objective) matches float64 finite differences', async () => {
    const model = await stories();
    const all = namedParameters(model);
    const params = selectParameters(all, 'layers.2.mlp.*');
    const [penalty] = resolveRegularizers([l1(0.01)], all, params);
    const alone = await checkGradients({
      backend: js,
      params,
      coords: 64,
      seed: 3,
      loss: async (ops) => (await regularizerTerms(ops, [penalty!]))[0]!.term,
    });
    const ids = Int32Array.from(
      model.tokenizer!.encode('Once upon a time, there was a', { bos: true }).slice(0, 8),
    );
    const inputs = ids.slice(0, -1);
    const targets = ids.slice(1);
    const objective = await checkGradients({
      backend: js,
      params,
      coords: 8,
      seed: 5,
      loss: async (ops) => {
        const { logits } = await forwardCapture(ops, model, inputs, 1);
        const ce = await crossEntropyLoss(ops, logits, targets);
        return ops.add(ce, (await regularizerTerms(ops, [penalty!]))[0]!.term);
      },
    });
    for (const r of [...alone, ...objective]) {
      expect(r.scale).toBeGreaterThan(0);
      expect(r.maxError, r.name).toBeLessThan(2e-3);
    }
    expect(alone.map((r) => r.name)).toEqual(LAYER2_MLP);
  }, 120_000);
});

describe('parameter groups', () => {
  it('a group at lr 0 stays bitwise unchanged, its neighbour trains, and no optimiser state exists outside the groups', async () => {
    const model = perturbLinearWeights(await stories(), 0.3, 2);
    const before = snapshot(model);
    const dir = join(tmp, 'groups');
    const r = await train({
      ...small,
      model,
      groups: [
        { params: 'layers.2.mlp.*', lr: 0 },
        { params: 'layers.3.mlp.*', lrScale: 2 },
      ],
      checkpointDir: dir,
      stopAfter: 2,
    });
    expect(r.stopped).toBe('stop-after');
    for (const [name, p] of namedParameters(model)) {
      const same = equalBits(bitsOf(p), before.get(name)!);
      expect(same, name).toBe(!name.startsWith('model.layers.3.mlp.'));
    }
    const f = await SafetensorsFile.open(join(dir, OPTIMIZER_FILE));
    const names = [...f.names()].map((n) => n.replace(/\.exp_avg(_sq)?$/, ''));
    await f.close();
    expect(new Set(names)).toEqual(
      new Set([...LAYER2_MLP, ...LAYER2_MLP.map((n) => n.replace('.2.', '.3.'))]),
    );
    // resuming under another selection is refused: the selection is part of the run's config
    const again = async () => perturbLinearWeights(await stories(), 0.3, 2);
    await expect(
      train({
        ...small,
        model: await again(),
        groups: [{ params: 'layers.3.mlp.*' }],
        checkpointDir: dir,
        resume: true,
      }),
    ).rejects.toThrow(/different settings: trainable/);
    // the same selection resumes
    const resumed = await again();
    const done = await train({
      ...small,
      model: resumed,
      groups: [
        { params: 'layers.2.mlp.*', lr: 0 },
        { params: 'layers.3.mlp.*', lrScale: 2 },
      ],
      checkpointDir: dir,
      resume: true,
    });
    expect(done.steps).toBe(4);
    expect(done.resumedFrom).toBe(2);
    for (const [name, p] of namedParameters(resumed)) {
      const same = equalBits(bitsOf(p), before.get(name)!);
      expect(same, name).toBe(!name.startsWith('model.layers.3.mlp.'));
    }
  }, 120_000);

  it('bad selections are one-line errors', async () => {
    const model = await stories();
    const bad = async (o: Partial<DistillOptions>, re: RegExp) => {
      const e = await train({ ...small, model, ...o }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(LineageError);
      expect((e as Error).message).toMatch(re);
      expect((e as Error).message).not.toContain('\n');
    };
    await bad(
      { trainable: ['layers.2.mlp.*', 'layers.9.*'] },
      /trainable: 'layers\.9\.\*' matches no parameter/,
    );
    await bad(
      { groups: [{ params: 'mlp.*' }, { params: 'layers.2.*' }] },
      /'model\.layers\.2\.mlp\.gate_proj\.weight' is in parameter groups 1 and 2/,
    );
    await bad({ trainable: 'mlp.*', groups: [{ params: 'norm.weight' }] }, /does not train \(not selected/);
    await bad({ groups: [{ params: 'mlp.*', lr: 1, lrScale: 2 }] }, /give lr or lrScale, not both/);
    await bad({ regularizers: [l1(1e-3), l1(1e-4)] }, /'l1': the name is taken/);
    await bad({ regularizers: [l1(-1)] }, /weight must be a non-negative number/);
  }, 60_000);
});

describe('the recover capability passes the selection through and stops cleanly on abort', () => {
  const options = { data: TRAIN, seqLen: 32, batchSize: 4, lr: 3e-3, backend: js } as const;
  const budget = { tokens: 4 * 128, trainable: 'layers.2.mlp.*', regularizers: [l1(1e-4)] };

  it('a method recovers only the parameters it names; an abort writes a checkpoint that resumes to the same weights', async () => {
    const fresh = async () => perturbLinearWeights(await stories(), 0.3, 3);
    const start = snapshot(await fresh());
    const steps: StepRecord[] = [];
    const whole = await recoverCapability({ ...options, onStep: (s) => steps.push(s) })(
      await fresh(),
      budget,
    );
    expect(steps.length).toBe(4);
    expect(steps.every((s) => s.regularizers!.l1! > 0)).toBe(true);
    for (const [name, p] of namedParameters(whole))
      expect(equalBits(bitsOf(p), start.get(name)!), name).toBe(!LAYER2_MLP.includes(name));

    // Ctrl-C after step 2: the call throws (the method must not go on with a half-trained model)
    const root = join(tmp, 'recover-abort');
    const abort = new AbortController();
    const interrupted = recoverCapability({
      ...options,
      checkpointRoot: root,
      signal: abort.signal,
      onStep: (s) => s.step === 2 && abort.abort(),
    });
    const e = await interrupted(await fresh(), budget).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RecoveryInterrupted);
    expect((e as RecoveryInterrupted).steps).toBe(2);
    expect((e as Error).message).toMatch(/^recovery 1 interrupted at step 2 of 4; checkpoint in .*recover-1/);
    // the re-run with resume continues the checkpoint and ends where the uninterrupted call ended
    const resumed = await recoverCapability({ ...options, checkpointRoot: root, resume: true })(
      await fresh(),
      budget,
    );
    for (const [name, p] of namedParameters(resumed))
      expect(equalBits(bitsOf(p), bitsOf(namedParameters(whole).get(name)!)), name).toBe(true);
  }, 120_000);
});
