import type { Tensor } from '../backend/backend.js';
import type { Ops } from '../backend/ops.js';
import type { Parameter } from '../nn/parameter.js';
import { LineageError } from '../util/errors.js';

/**
 * Which parameters, by checkpoint name (`model.layers.2.mlp.up_proj.weight`): a glob (`*` any run of
 * characters, `?` one; it matches the whole name or a tail of it after a dot, so `mlp.*` and
 * `layers.2.mlp.*` both work), a RegExp (tested against the name), a list of those, or a predicate.
 */
export type ParamSelector =
  | string
  | RegExp
  | readonly (string | RegExp)[]
  | ((name: string, p: Parameter) => boolean);

/**
 * A parameter group (PyTorch style): its parameters train with their own learning rate and weight decay.
 * `lr` is the group's peak learning rate (it follows the run's schedule, scaled); `lrScale` multiplies the
 * run's. Give at most one of them.
 */
export interface ParamGroup {
  params: ParamSelector;
  lr?: number;
  lrScale?: number;
  /** Decoupled weight decay λ of the group, applied to all its parameters (norms included). */
  weightDecay?: number;
}

/**
 * An extra term of the training objective, computed on the autodiff tape so its gradient flows like the
 * loss's: `weight · fn(ops, tensors)`, where `tensors` are the device tensors of the selected parameters
 * (default: the parameters that train), in name order.
 */
export interface Regularizer {
  /** Reported beside the loss terms (must differ from kl, ce, hidden and the other regularisers). */
  name: string;
  weight: number;
  params?: ParamSelector;
  /** A scalar (or a tensor, summed) from the parameters' tensors. */
  fn: (ops: Ops, tensors: readonly Tensor[], names: readonly string[]) => Promise<Tensor>;
}

/** A glob as an anchored RegExp that also matches a tail of the name after a dot. */
export function globToRegExp(glob: string): RegExp {
  const body = glob
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  return new RegExp(`^(?:.*\\.)?${body}$`);
}

function describe(part: string | RegExp): string {
  return typeof part === 'string' ? `'${part}'` : String(part);
}

/**
 * The parameters a selector picks, in the map's order. Every glob or RegExp of it must match some
 * parameter (a typo is a one-line error naming it, with an example of the names), as must a predicate.
 */
export function selectParameters(
  params: ReadonlyMap<string, Parameter>,
  selector: ParamSelector,
  what = 'the parameter selector',
): Map<string, Parameter> {
  const example = [...params.keys()].find((n) => n.includes('.layers.0.')) ?? [...params.keys()][0];
  const hint = example ? ` (names look like '${example}')` : '';
  let test: (name: string, p: Parameter) => boolean;
  if (typeof selector === 'function') test = selector;
  else {
    const parts = typeof selector === 'string' || selector instanceof RegExp ? [selector] : [...selector];
    if (!parts.length) throw new LineageError(`${what} is empty`);
    const res = parts.map((s) => {
      if (typeof s === 'string') {
        if (!s.trim()) throw new LineageError(`${what} has an empty pattern`);
        return globToRegExp(s.trim());
      }
      return s;
    });
    res.forEach((re, i) => {
      if (![...params.keys()].some((n) => re.test(n)))
        throw new LineageError(`${what}: ${describe(parts[i]!)} matches no parameter${hint}`);
    });
    test = (name) => res.some((re) => re.test(name));
  }
  const out = new Map<string, Parameter>();
  for (const [name, p] of params) if (test(name, p)) out.set(name, p);
  if (!out.size) throw new LineageError(`${what} selects no parameter${hint}`);
  return out;
}

/** Per-parameter optimiser settings (a parameter group's): learning-rate multiplier and weight decay. */
export interface ParamOptions {
  /** Multiplies the step's learning rate (default 1). */
  lrScale?: number;
  /** Replaces the optimiser's weight decay for this parameter (applied whatever its shape). */
  weightDecay?: number;
}
