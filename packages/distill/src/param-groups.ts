import { createHash } from 'node:crypto';
import {
  LineageError,
  type LlamaModel,
  namedParameters,
  type Parameter,
  type ParamGroup,
  type ParamOptions,
  type ParamSelector,
  selectParameters,
} from '@lineage/core';
import type { RunConfig } from './checkpoint.js';

/** Which parameters of a run train, and in which group (index into `groups`, −1: none). */
export interface TrainedParameters {
  /** Every parameter of the model by name. */
  all: Map<string, Parameter>;
  /** Those that train, in the model's order. */
  trained: Map<string, Parameter>;
  /** The group of each trained parameter that is in one. */
  groupOf: Map<string, number>;
}

/** A short fingerprint of a set of parameter names (recorded in the run config). */
export function namesHash(names: Iterable<string>): string {
  return createHash('sha256')
    .update([...names].join('\n'))
    .digest('hex')
    .slice(0, 16);
}

function checkGroup(g: ParamGroup, i: number): void {
  const what = `parameter group ${i + 1}`;
  if (!g || g.params === undefined) throw new LineageError(`${what} has no params selector`);
  if (g.lr !== undefined && g.lrScale !== undefined)
    throw new LineageError(`${what}: give lr or lrScale, not both`);
  for (const [k, v] of [
    ['lr', g.lr],
    ['lrScale', g.lrScale],
    ['weightDecay', g.weightDecay],
  ] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0))
      throw new LineageError(`${what}: ${k} must be a non-negative number, got ${v}`);
  }
}

/**
 * The parameters that train: those whose `trainable` flag is set, narrowed to `trainable` when given,
 * else to the union of the groups when there are groups. A parameter may be in one group only, and a
 * group may only hold parameters that train.
 */
export function trainedParameters(
  model: LlamaModel,
  o: { trainable?: ParamSelector; groups?: readonly ParamGroup[] },
): TrainedParameters {
  const all = namedParameters(model);
  const groups = o.groups ?? [];
  groups.forEach(checkGroup);
  const members = groups.map((g, i) => selectParameters(all, g.params, `parameter group ${i + 1}`));
  let chosen: ReadonlyMap<string, Parameter> = all;
  if (o.trainable !== undefined) chosen = selectParameters(all, o.trainable, 'trainable');
  else if (groups.length) chosen = new Map(members.flatMap((m) => [...m]));
  const trained = new Map([...all].filter(([n, p]) => chosen.has(n) && p.trainable));
  const groupOf = new Map<string, number>();
  members.forEach((m, i) => {
    for (const name of m.keys()) {
      const prev = groupOf.get(name);
      if (prev !== undefined)
        throw new LineageError(`parameter '${name}' is in parameter groups ${prev + 1} and ${i + 1}`);
      if (!trained.has(name))
        throw new LineageError(
          `parameter group ${i + 1} holds '${name}', which does not train (${all.get(name)!.trainable ? 'not selected by trainable' : 'frozen'})`,
        );
      groupOf.set(name, i);
    }
  });
  return { all, trained, groupOf };
}

/**
 * The optimiser's per-parameter settings: a group's absolute `lr` becomes a multiplier of the run's
 * peak `lr`, so the group follows the run's warmup and decay scaled to its own peak.
 */
export function groupOptions(
  groups: readonly ParamGroup[],
  t: TrainedParameters,
  lr: number,
): Map<string, ParamOptions> {
  const out = new Map<string, ParamOptions>();
  for (const [name, i] of t.groupOf) {
    const g = groups[i]!;
    const lrScale = g.lr !== undefined ? g.lr / lr : g.lrScale;
    out.set(name, {
      ...(lrScale !== undefined ? { lrScale } : {}),
      ...(g.weightDecay !== undefined ? { weightDecay: g.weightDecay } : {}),
    });
  }
  return out;
}

/** The run-config entries of a selection (absent when none was given, so older checkpoints resume). */
export function selectionConfig(
  o: { trainable?: ParamSelector; groups?: readonly ParamGroup[] },
  t: TrainedParameters,
  options: ReadonlyMap<string, ParamOptions>,
): RunConfig {
  if (o.trainable === undefined && !o.groups?.length) return {};
  const groups = (o.groups ?? []).map((_, i) => {
    const names = [...t.groupOf].filter(([, g]) => g === i).map(([n]) => n);
    const po = options.get(names[0]!) ?? {};
    return `${names.length} params ${namesHash(names)} lr×${po.lrScale ?? 1} wd ${po.weightDecay ?? 'default'}`;
  });
  return {
    trainable: `${t.trained.size} of ${t.all.size} params ${namesHash(t.trained.keys())}`,
    ...(groups.length ? { groups } : {}),
  };
}
