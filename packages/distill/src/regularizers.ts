import {
  LineageError,
  type Ops,
  type Parameter,
  type ParamSelector,
  type Regularizer,
  selectParameters,
  type Tensor,
} from '@lineage/core';
import type { RunConfig } from './checkpoint.js';
import { namesHash } from './param-groups.js';

/** Metric names of the objective's own parts, which a regulariser may not take. */
const RESERVED = new Set(['kl', 'ce', 'hidden', 'loss']);

/** Prefix of a regulariser's term among the step's metrics. */
export const REGULARIZER_METRIC = 'reg.';

/** A regulariser with its parameters found. */
export interface ResolvedRegularizer {
  name: string;
  weight: number;
  names: string[];
  params: Parameter[];
  fn: Regularizer['fn'];
}

async function sumAll(ops: Ops, t: Tensor): Promise<Tensor> {
  return t.shape.length ? ops.reduce('sum', t, [...t.shape.keys()]) : t;
}

async function sumOver(ops: Ops, ts: readonly Tensor[], f: (t: Tensor) => Promise<Tensor>): Promise<Tensor> {
  let total: Tensor | undefined;
  for (const t of ts) {
    const s = await sumAll(ops, await f(t));
    total = total ? await ops.add(total, s) : s;
  }
  if (!total) throw new LineageError('a regulariser got no parameters');
  return total;
}

/** L1 penalty `weight · Σ|w|` over the selected parameters (default: those that train); it drives weights to zero. */
export function l1(weight: number, params?: ParamSelector): Regularizer {
  return {
    name: 'l1',
    weight,
    ...(params !== undefined ? { params } : {}),
    fn: (ops, ts) => sumOver(ops, ts, (t) => ops.unary('abs', t)),
  };
}

/** L2 penalty `weight · Σw²` over the selected parameters (default: those that train). */
export function l2(weight: number, params?: ParamSelector): Regularizer {
  return {
    name: 'l2',
    weight,
    ...(params !== undefined ? { params } : {}),
    fn: (ops, ts) => sumOver(ops, ts, (t) => ops.unary('square', t)),
  };
}

/** Checks regularisers and finds their parameters (default: the trained ones). */
export function resolveRegularizers(
  regs: readonly Regularizer[],
  all: ReadonlyMap<string, Parameter>,
  trained: ReadonlyMap<string, Parameter>,
): ResolvedRegularizer[] {
  const seen = new Set<string>();
  return regs.map((r, i) => {
    const what = `regularizer ${i + 1}${r?.name ? ` '${r.name}'` : ''}`;
    if (!r || typeof r.name !== 'string' || !/^[\w.-]+$/.test(r.name))
      throw new LineageError(`${what} needs a name of letters, digits, '_', '.' or '-'`);
    if (RESERVED.has(r.name) || seen.has(r.name))
      throw new LineageError(`${what}: the name is taken (${[...RESERVED, ...seen].join(', ')})`);
    seen.add(r.name);
    if (!(Number.isFinite(r.weight) && r.weight >= 0))
      throw new LineageError(`${what}: weight must be a non-negative number, got ${r.weight}`);
    if (typeof r.fn !== 'function') throw new LineageError(`${what} has no fn`);
    const chosen = r.params === undefined ? trained : selectParameters(all, r.params, what);
    return {
      name: r.name,
      weight: r.weight,
      names: [...chosen.keys()],
      params: [...chosen.values()],
      fn: r.fn,
    };
  });
}

/**
 * The weighted terms `weight · fn(tensors)`, computed with `ops` (on a GradOps they are taped, so their
 * gradients flow into the parameters like the loss's).
 */
export async function regularizerTerms(
  ops: Ops,
  regs: readonly ResolvedRegularizer[],
): Promise<{ name: string; term: Tensor }[]> {
  const out: { name: string; term: Tensor }[] = [];
  for (const r of regs) {
    const value = await sumAll(
      ops,
      await r.fn(
        ops,
        r.params.map((p) => p.tensor(ops.backend)),
        r.names,
      ),
    );
    out.push({ name: r.name, term: r.weight === 1 ? value : await ops.scale(value, r.weight) });
  }
  return out;
}

/** Adds the regularisers' terms to a step's objective and reports each among its metrics. */
export async function addRegularizers(
  ops: Ops,
  out: { loss: Tensor; metrics: Record<string, Tensor> },
  regs: readonly ResolvedRegularizer[],
): Promise<{ loss: Tensor; metrics: Record<string, Tensor> }> {
  let loss = out.loss;
  const metrics = { ...out.metrics };
  for (const { name, term } of await regularizerTerms(ops, regs)) {
    loss = await ops.add(loss, term);
    metrics[`${REGULARIZER_METRIC}${name}`] = term;
  }
  return { loss, metrics };
}

/** Run-config entries of the regularisers (their functions are known by name only). */
export function regularizerConfig(regs: readonly ResolvedRegularizer[]): RunConfig {
  return regs.length
    ? {
        regularizers: regs.map(
          (r) => `${r.name} ×${r.weight} on ${r.names.length} params ${namesHash(r.names)}`,
        ),
      }
    : {};
}
