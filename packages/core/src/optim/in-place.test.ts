import { describe, expect, it } from 'vitest';
import { loadModel } from '../checkpoint/load-model.js';
import type { LlamaModel } from '../nn/llama.js';
import type { Parameter } from '../nn/parameter.js';
import { sharedPath } from '../testing/shared.js';
import { Random } from '../util/random.js';
import { AdamW } from './adamw.js';
import { clipCoefficient, clipGradNorm } from './clip.js';

// AdamW writes each step's values into the array it wrote the step before, unless that array escaped
// (a read of p.value, a clone, a state dict): the values must be exactly those of fresh arrays, and
// nothing that shares a tensor may see it change.

const load = async () =>
  (await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'))).model as LlamaModel;

/** Deterministic gradients for every parameter, different each step. */
function gradients(params: Parameter[], step: number): Map<Parameter, Float32Array> {
  const rng = new Random(100 + step);
  return new Map(
    params.map((p) => [p, Float32Array.from({ length: p.size }, () => (rng.next() - 0.5) * 1e-2)]),
  );
}

async function run(steps: number, escapeEachStep: boolean) {
  const teacher = await load();
  const student = teacher.clone(); // shares every stored tensor with the teacher
  const teacherBefore = new Map([...teacher.namedParameters()].map(([n, p]) => [n, p.value.toF32().slice()]));
  const named = student.namedParameters();
  const params = [...named.values()];
  const opt = new AdamW(named, { lr: 1e-3, weightDecay: 0.1, betas: [0.9, 0.95] });
  const reused: boolean[] = [];
  for (let s = 0; s < steps; s++) {
    const before = params.map((p) => p.mutableValues());
    opt.step(gradients(params, s));
    reused.push(params.every((p, i) => before[i] !== undefined && p.mutableValues() === before[i]));
    if (escapeEachStep) for (const p of params) void p.value;
  }
  return { teacher, teacherBefore, student, params, reused };
}

describe('AdamW in place on the real stories260K', () => {
  it('reuses its own arrays from the second step on, with values identical to fresh arrays', async () => {
    const inPlace = await run(4, false);
    const fresh = await run(4, true);
    // the first step allocates (the stored tensors are the teacher's); later steps write in place
    expect(inPlace.reused).toEqual([false, true, true, true]);
    expect(fresh.reused).toEqual([false, false, false, false]);
    for (let i = 0; i < inPlace.params.length; i++)
      expect(inPlace.params[i]!.value.toF32()).toEqual(fresh.params[i]!.value.toF32());
    // the teacher, which shared every tensor with the student at the start, is untouched
    for (const [n, p] of inPlace.teacher.namedParameters())
      expect(p.value.toF32()).toEqual(inPlace.teacherBefore.get(n));
    // and the student did move
    const [name, p] = [...inPlace.student.namedParameters()].find(([, q]) => q.shape.length === 2)!;
    expect(p.value.toF32()).not.toEqual(inPlace.teacherBefore.get(name));
  }, 60_000);

  it('a clone or a read value taken between steps keeps its values', async () => {
    const { student, params } = await run(2, false);
    const snapshot = student.clone();
    const held = params[0]!.value; // escapes: the next step must write a fresh array
    const heldCopy = held.toF32().slice();
    const snapCopy = new Map([...snapshot.namedParameters()].map(([n, p]) => [n, p.value.toF32().slice()]));
    const opt = new AdamW(student.namedParameters(), { lr: 1e-3 });
    opt.step(gradients(params, 9));
    expect(held.toF32()).toEqual(heldCopy);
    for (const [n, p] of snapshot.namedParameters()) expect(p.value.toF32()).toEqual(snapCopy.get(n));
    expect(params[0]!.value.toF32()).not.toEqual(heldCopy);
  }, 60_000);
});

describe('AdamW with the clipping coefficient applied on the fly', () => {
  it('equals clipping the gradients in place first, bit for bit, and leaves them unchanged', async () => {
    const a = await load();
    const b = await load();
    const pa = [...a.namedParameters().values()];
    const pb = [...b.namedParameters().values()];
    const oa = new AdamW(a.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
    const ob = new AdamW(b.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
    for (let s = 0; s < 3; s++) {
      const ga = gradients(pa, s);
      const gb = new Map(pb.map((p, i) => [p, ga.get(pa[i]!)!.slice()]));
      const norm = clipGradNorm(gb, 0.05); // scales gb in place
      const coef = clipCoefficient(norm, 0.05);
      expect(coef).toBeLessThan(1);
      const before = pa.map((p) => ga.get(p)!.slice());
      oa.step(ga, 1e-3, coef);
      ob.step(gb, 1e-3);
      for (let i = 0; i < pa.length; i++) expect(ga.get(pa[i]!)).toEqual(before[i]);
    }
    for (let i = 0; i < pa.length; i++) expect(pa[i]!.value.toF32()).toEqual(pb[i]!.value.toF32());
  }, 60_000);
});
