import {
  type Backend,
  type HostTensor,
  LineageError,
  type LlamaModel,
  type Logger,
  modelFingerprint,
  namedParameters,
  type Optimizer,
  type Parameter,
} from '@lineage/core';
import { applyWeights, configMismatch, hasCheckpoint, type RunConfig, readCheckpoint } from './checkpoint.js';
import type { WindowSampler } from './data.js';
import type { TrainState } from './train-state.js';

export interface ResumeTarget {
  kind: 'train' | 'distill';
  dir: string;
  model: LlamaModel;
  studentFingerprint: string;
  teacherFingerprint: string | null;
  config: RunConfig;
  optimizer: Optimizer;
  sampler: WindowSampler;
  state: TrainState;
  backend: Backend;
  log: Logger;
}

/** Refuses to overwrite an earlier run's checkpoint unless told to resume it or start over. */
export function refuseExistingCheckpoint(dir: string | undefined, resume?: boolean, restart?: boolean): void {
  if (dir && !resume && !restart && hasCheckpoint(dir)) {
    throw new LineageError(
      'holds a checkpoint of an earlier run: resume it (--resume) or start over (--restart)',
      dir,
    );
  }
}

/**
 * Restores a run from its checkpoint: weights, optimiser, sampler and progress. Refused (one line, nothing
 * touched) unless the checkpoint was made from the same models under the same config; a failure while
 * applying it puts the model's weights back.
 */
export async function resumeRun(t: ResumeTarget): Promise<void> {
  const { dir, kind, model } = t;
  const ck = await readCheckpoint(dir);
  const st = ck.state;
  if (st.kind !== kind) throw new LineageError(`is a checkpoint of a '${st.kind}' run, not '${kind}'`, dir);
  if (st.studentFingerprint !== t.studentFingerprint) {
    throw new LineageError(
      `was made from a different ${kind === 'distill' ? 'student' : 'model'} (fingerprint ${st.studentFingerprint.slice(0, 19)}…, this one is ${t.studentFingerprint.slice(0, 19)}…)`,
      dir,
    );
  }
  if (st.teacherFingerprint !== t.teacherFingerprint) {
    throw new LineageError(
      `was made with a different teacher (fingerprint ${String(st.teacherFingerprint).slice(0, 19)}…, this one is ${String(t.teacherFingerprint).slice(0, 19)}…)`,
      dir,
    );
  }
  const diff = configMismatch(st.config, t.config);
  if (diff) throw new LineageError(`was made with different settings: ${diff}`, dir);
  const before = new Map<Parameter, HostTensor>(
    [...namedParameters(model).values()].map((p) => [p, p.value]),
  );
  try {
    applyWeights(model, ck.weights, dir);
    if (modelFingerprint(model) !== st.weightsFingerprint)
      throw new LineageError(
        'weights do not match the fingerprint recorded with them (corrupt checkpoint)',
        dir,
      );
    t.optimizer.loadState(ck.optimizer);
    t.sampler.load(st.sampler);
  } catch (e) {
    for (const [p, v] of before) p.value = v;
    if (e instanceof LineageError) throw e;
    throw new LineageError(`cannot restore: ${(e as Error).message}`, dir);
  }
  t.state.restore(st);
  const b = t.backend;
  if (st.backend.name !== b.name || st.backend.device !== b.device)
    t.log.warn(
      `checkpoint was written on ${st.backend.name} (${st.backend.device}); resuming on ${b.name} (${b.device})`,
    );
}
