import { existsSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type HostTensor,
  LineageError,
  type LlamaModel,
  modelFingerprint,
  namedParameters,
  type Optimizer,
  type OptimizerState,
  SafetensorsFile,
  writeDirAtomic,
  writeSafetensors,
} from '@lineage/core';
import type { SamplerState, WindowSampler } from './data.js';
import type { TrainState } from './train-state.js';

export const CHECKPOINT_FORMAT = 'lineage-train-checkpoint';
export const STATE_FILE = 'state.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';

/** A held-out evaluation during a run. */
export interface EvalRecord {
  step: number;
  tokens: number;
  ppl: number;
  nll: number;
  /** Scored tokens. */
  scored: number;
}

/**
 * Everything that determines a run's trajectory. A checkpoint resumes only under an equal config (the
 * learning-rate schedule, the sampler and the loss all depend on it).
 */
export type RunConfig = Record<string, string | number | boolean | null | (string | number)[] | number[][]>;

export interface CheckpointState {
  format: typeof CHECKPOINT_FORMAT;
  version: 1;
  kind: 'train' | 'distill';
  /** Optimiser updates done (the next step's index). */
  step: number;
  /** Training tokens consumed so far. */
  tokens: number;
  sampler: SamplerState;
  /** Fingerprint of the student (or trained model) as the run started. */
  studentFingerprint: string;
  teacherFingerprint: string | null;
  /** Fingerprint of the weights stored in this checkpoint (checked on load). */
  weightsFingerprint: string;
  config: RunConfig;
  evals: EvalRecord[];
  early: { bestNll: number | null; bestStep: number | null; sinceBest: number };
  skippedSteps: number;
  /** Training wall time so far (seconds), for throughput and ETA after a resume. */
  seconds: number;
  backend: { name: string; device: string };
}

export interface LoadedCheckpoint {
  state: CheckpointState;
  weights: Map<string, HostTensor>;
  optimizer: OptimizerState;
}

/** Writes a checkpoint directory atomically (replacing the previous one only once the new one is complete). */
export async function saveCheckpoint(
  dir: string,
  model: LlamaModel,
  optimizer: OptimizerState,
  state: CheckpointState,
): Promise<void> {
  await writeDirAtomic(
    dir,
    async (tmp) => {
      await writeSafetensors(join(tmp, WEIGHTS_FILE), model.stateDict(), { format: 'pt' });
      await writeSafetensors(join(tmp, OPTIMIZER_FILE), optimizer.tensors, {
        format: 'pt',
        'lineage.optimizer_step': String(optimizer.step),
      });
      await writeFile(join(tmp, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
    },
    { overwrite: true },
  );
}

/** True when `dir` holds a checkpoint (its state file). */
export function hasCheckpoint(dir: string): boolean {
  return existsSync(join(dir, STATE_FILE));
}

async function readAll(
  file: string,
): Promise<{ tensors: Map<string, HostTensor>; meta: Record<string, string> }> {
  const f = await SafetensorsFile.open(file);
  try {
    const tensors = new Map<string, HostTensor>();
    for (const name of f.names()) tensors.set(name, await f.read(name));
    return { tensors, meta: { ...f.metadata } };
  } finally {
    await f.close();
  }
}

/** Reads and validates a checkpoint directory (nothing is applied to any model here). */
export async function readCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  if (!existsSync(dir)) throw new LineageError('no such checkpoint directory', dir);
  if (!statSync(dir).isDirectory()) throw new LineageError('is not a checkpoint directory', dir);
  const stateFile = join(dir, STATE_FILE);
  if (!existsSync(stateFile)) throw new LineageError(`not a training checkpoint (no ${STATE_FILE})`, dir);
  let state: CheckpointState;
  try {
    state = JSON.parse(await readFile(stateFile, 'utf8')) as CheckpointState;
  } catch (e) {
    throw new LineageError(`invalid JSON: ${(e as Error).message}`, stateFile);
  }
  if (state?.format !== CHECKPOINT_FORMAT || state.version !== 1)
    throw new LineageError(`not a ${CHECKPOINT_FORMAT} version 1 state file`, stateFile);
  const weights = (await readAll(join(dir, WEIGHTS_FILE))).tensors;
  const opt = await readAll(join(dir, OPTIMIZER_FILE));
  const step = Number(opt.meta['lineage.optimizer_step']);
  if (!Number.isInteger(step) || step < 0)
    throw new LineageError('optimizer state has no valid lineage.optimizer_step', join(dir, OPTIMIZER_FILE));
  return { state, weights, optimizer: { step, tensors: opt.tensors } };
}

/** One line naming the first difference between a checkpoint's run config and this run's. */
export function configMismatch(saved: RunConfig, current: RunConfig): string | undefined {
  const keys = [...new Set([...Object.keys(saved), ...Object.keys(current)])];
  for (const k of keys) {
    const a = JSON.stringify(saved[k] ?? null);
    const b = JSON.stringify(current[k] ?? null);
    if (a !== b) return `${k} ${a} in the checkpoint, ${b} now`;
  }
  return undefined;
}

/** Replaces the model's parameter values with a checkpoint's (every parameter must be present, same shape). */
export function applyWeights(model: LlamaModel, weights: Map<string, HostTensor>, dir: string): void {
  const params = namedParameters(model);
  for (const [name, p] of params) {
    const t = weights.get(name);
    if (!t) throw new LineageError(`checkpoint has no tensor '${name}'`, dir);
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
      throw new LineageError(`checkpoint tensor '${name}' is [${t.shape}], the model's is [${p.shape}]`, dir);
  }
  for (const name of weights.keys())
    if (!params.has(name)) throw new LineageError(`checkpoint tensor '${name}' is not in the model`, dir);
  for (const [name, p] of params) p.value = weights.get(name)!;
}

/** What a run's checkpoint holds besides its progress. */
export interface RunSnapshot {
  kind: 'train' | 'distill';
  model: LlamaModel;
  optimizer: Optimizer;
  sampler: WindowSampler;
  studentFingerprint: string;
  teacherFingerprint: string | null;
  config: RunConfig;
  backend: { name: string; device: string };
}

/** Writes the checkpoint of a run at its current step. */
export async function checkpointRun(dir: string, run: RunSnapshot, state: TrainState): Promise<void> {
  const p = state.progress();
  const st: CheckpointState = {
    format: CHECKPOINT_FORMAT,
    version: 1,
    kind: run.kind,
    step: p.step,
    tokens: p.tokens,
    sampler: run.sampler.state(),
    studentFingerprint: run.studentFingerprint,
    teacherFingerprint: run.teacherFingerprint,
    weightsFingerprint: modelFingerprint(run.model),
    config: run.config,
    evals: p.evals,
    early: p.early,
    skippedSteps: p.skippedSteps,
    seconds: p.seconds,
    backend: { name: run.backend.name, device: run.backend.device },
  };
  await saveCheckpoint(dir, run.model, run.optimizer.state(), st);
}
