import {
  crossEntropyLoss,
  type GradOps,
  klDivergence,
  LineageError,
  type LlamaModel,
  mseLoss,
  type Ops,
  type Tensor,
} from '@lineage/core';
import { fusedBlock } from './fused-block.js';
import { fusedKdHead } from './kd-head.js';

/** What the student is trained on: forward KL to the teacher's logits, next-token cross-entropy, or both. */
export type DistillLoss = 'kl' | 'ce' | 'kl+ce';

/**
 * Intermediate hidden-state loss (for depth-pruned students): the mean over mapped layer pairs of the MSE
 * between the student's and the teacher's block outputs (the residual stream, before the final norm).
 */
export interface HiddenLossOptions {
  /** [studentLayer, teacherLayer] pairs, or 'uniform': student layer i ↔ teacher ⌊(i+1)·Lt/Ls⌋ − 1. */
  layers: 'uniform' | readonly (readonly [number, number])[];
  /** Weight of the hidden loss in the total (default 1). */
  weight?: number;
}

/** The [student, teacher] layer pairs of a hidden-loss mapping, checked against both models. */
export function layerPairs(
  student: LlamaModel,
  teacher: LlamaModel,
  layers: HiddenLossOptions['layers'],
): [number, number][] {
  const Ls = student.config.numLayers;
  const Lt = teacher.config.numLayers;
  const pairs: [number, number][] =
    layers === 'uniform'
      ? Array.from({ length: Ls }, (_, i) => [i, Math.floor(((i + 1) * Lt) / Ls) - 1] as [number, number])
      : layers.map(([s, t]) => [s, t] as [number, number]);
  if (!pairs.length) throw new LineageError('the hidden-state loss needs at least one layer pair');
  if (student.config.hiddenSize !== teacher.config.hiddenSize) {
    throw new LineageError(
      `the hidden-state loss needs the same width in both models: student ${student.config.hiddenSize}, teacher ${teacher.config.hiddenSize}`,
    );
  }
  const seen = new Set<number>();
  for (const [s, t] of pairs) {
    if (!(Number.isInteger(s) && s >= 0 && s < Ls))
      throw new LineageError(`hidden-state layer pair [${s}, ${t}]: the student has layers 0..${Ls - 1}`);
    if (!(Number.isInteger(t) && t >= 0 && t < Lt))
      throw new LineageError(`hidden-state layer pair [${s}, ${t}]: the teacher has layers 0..${Lt - 1}`);
    if (seen.has(s)) throw new LineageError(`hidden-state mapping names student layer ${s} twice`);
    seen.add(s);
  }
  return pairs;
}

export interface ForwardCapture {
  /** [B·T, V] */
  logits: Tensor;
  /** Block outputs [B, T, D] of the requested layers, in the order requested. */
  hidden: Tensor[];
}

/** The model's final hidden states (after the final norm) as rows, and the outputs of some blocks. */
export interface FinalCapture {
  /** [B·T, D] */
  final: Tensor;
  /** Block outputs [B, T, D] of the requested layers, in the order requested. */
  hidden: Tensor[];
}

/**
 * The model's forward pass up to the final norm (as LlamaModel.hidden) that also returns the outputs of
 * some blocks. Works on plain Ops (teacher) and on GradOps (student, recorded for the backward pass). Dense
 * blocks run on the backend's fused block graphs when it has them (see fusedBlock).
 */
export async function forwardFinal(
  ops: Ops,
  model: LlamaModel,
  ids: Int32Array,
  batch: number,
  layers: readonly number[] = [],
): Promise<FinalCapture> {
  const T = ids.length / batch;
  return ops.tidy(async () => {
    const rope = model.rope(ops, T);
    let x = await model.embedTokens(ops, ids, batch);
    const hidden: (Tensor | undefined)[] = layers.map(() => undefined);
    for (let l = 0; l < model.blocks.length; l++) {
      // the backend's fused block graphs where they serve this block, else the per-op reference
      x = (await fusedBlock(ops, model, l, x, rope)) ?? (await model.block(ops, l, x, rope));
      layers.forEach((want, i) => {
        if (want === l) hidden[i] = x;
      });
    }
    const h = await model.finalNorm(ops, x);
    return { final: await ops.reshape(h, [batch * T, model.config.hiddenSize]), hidden: hidden as Tensor[] };
  });
}

/**
 * The model's forward pass (as LlamaModel.forward) that also returns the outputs of some blocks. Works
 * on plain Ops (teacher) and on GradOps (student, recorded for the backward pass).
 */
export async function forwardCapture(
  ops: Ops,
  model: LlamaModel,
  ids: Int32Array,
  batch: number,
  layers: readonly number[] = [],
): Promise<ForwardCapture> {
  return ops.tidy(async () => {
    const f = await forwardFinal(ops, model, ids, batch, layers);
    return { logits: await model.logits(ops, f.final), hidden: f.hidden };
  });
}

/**
 * The teacher's outputs for the fused distillation head: its final hidden states and the model (its head
 * is applied inside the fused call), with the mapped block outputs.
 */
export interface TeacherFinal extends FinalCapture {
  model: LlamaModel;
}

export interface StepLossOptions {
  loss: DistillLoss;
  temperature: number;
  ceWeight: number;
  hiddenWeight: number;
  studentLayers: readonly number[];
}

/**
 * The training objective of one micro-batch on the student's recording ops. `teacher` holds the teacher's
 * logits and mapped block outputs on the student's backend (undefined for plain LM training). Returns the
 * loss and its parts as metrics (parts not in the loss, e.g. the CE under 'kl', are computed untaped).
 */
export async function stepLoss(
  ops: GradOps,
  student: LlamaModel,
  ids: Int32Array,
  targets: Int32Array,
  batch: number,
  teacher: ForwardCapture | TeacherFinal | undefined,
  o: StepLossOptions,
): Promise<{ loss: Tensor; metrics: Record<string, Tensor> }> {
  if (teacher && 'final' in teacher) return fusedStepLoss(ops, student, ids, targets, batch, teacher, o);
  const s = await forwardCapture(ops, student, ids, batch, o.studentLayers);
  return composite(ops, s, targets, teacher, o);
}

/**
 * stepLoss with the teacher's final hidden states: the KL head on the backend's fused capability when it
 * serves this pair (loss 'kl'), else both models' logits and the composite loss.
 */
async function fusedStepLoss(
  ops: GradOps,
  student: LlamaModel,
  ids: Int32Array,
  targets: Int32Array,
  batch: number,
  teacher: TeacherFinal,
  o: StepLossOptions,
): Promise<{ loss: Tensor; metrics: Record<string, Tensor> }> {
  const s = await forwardFinal(ops, student, ids, batch, o.studentLayers);
  const fused =
    o.loss === 'kl'
      ? await fusedKdHead(ops, student, s.final, teacher.model, teacher.final, targets, o)
      : undefined;
  if (fused) {
    const terms = [fused.kl];
    const metrics: Record<string, Tensor> = { ce: fused.ce, kl: fused.kl };
    await hiddenTerm(ops, s.hidden, teacher.hidden, o, metrics, terms);
    return sumTerms(ops, terms, metrics);
  }
  const logits = await ops.tape.untaped(() => teacher.model.logits(ops, teacher.final));
  return composite(
    ops,
    { logits: await student.logits(ops, s.final), hidden: s.hidden },
    targets,
    { logits, hidden: teacher.hidden },
    o,
  );
}

async function hiddenTerm(
  ops: GradOps,
  student: readonly Tensor[],
  teacher: readonly Tensor[],
  o: StepLossOptions,
  metrics: Record<string, Tensor>,
  terms: Tensor[],
): Promise<void> {
  if (!student.length) return;
  let sum: Tensor | undefined;
  for (let i = 0; i < student.length; i++) {
    const m = await mseLoss(ops, student[i]!, teacher[i]!);
    sum = sum ? await ops.add(sum, m) : m;
  }
  const mean = await ops.scale(sum!, 1 / student.length);
  metrics.hidden = mean;
  terms.push(o.hiddenWeight === 1 ? mean : await ops.scale(mean, o.hiddenWeight));
}

async function sumTerms(
  ops: GradOps,
  terms: Tensor[],
  metrics: Record<string, Tensor>,
): Promise<{ loss: Tensor; metrics: Record<string, Tensor> }> {
  let loss = terms[0]!;
  for (let i = 1; i < terms.length; i++) loss = await ops.add(loss, terms[i]!);
  return { loss, metrics };
}

/** The objective from the student's logits (the reference path). */
async function composite(
  ops: GradOps,
  s: ForwardCapture,
  targets: Int32Array,
  teacher: ForwardCapture | undefined,
  o: StepLossOptions,
): Promise<{ loss: Tensor; metrics: Record<string, Tensor> }> {
  const metrics: Record<string, Tensor> = {};
  const terms: Tensor[] = [];
  const usesCe = !teacher || o.loss !== 'kl';
  const ce = usesCe
    ? await crossEntropyLoss(ops, s.logits, targets)
    : await ops.tape.untaped(() => crossEntropyLoss(ops, s.logits, targets));
  metrics.ce = ce;
  if (teacher) {
    if (o.loss !== 'ce') {
      const kl = await klDivergence(ops, teacher.logits, s.logits, { temperature: o.temperature });
      metrics.kl = kl;
      terms.push(kl);
    }
    if (o.loss !== 'kl') terms.push(o.ceWeight === 1 ? ce : await ops.scale(ce, o.ceWeight));
    await hiddenTerm(ops, s.hidden, teacher.hidden, o, metrics, terms);
  } else terms.push(ce);
  return sumTerms(ops, terms, metrics);
}
