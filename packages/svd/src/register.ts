import { LineageError, type MethodOption, registerMethod } from '@lineage/core';
import type { Allocation } from './allocation.js';
import { plrd, svd } from './methods.js';

const common: MethodOption[] = [
  {
    name: 'allocation',
    type: 'string',
    description:
      "rank allocation: 'uniform' (same ratio per layer) or 'energy' (global budget by singular-value energy)",
    default: 'uniform',
  },
  {
    name: 'data-aware',
    type: 'boolean',
    description:
      'whiten by calibration Grams (SVD-LLM): minimise the output error; Grams from --stats, or calibrated on the first --data file',
    default: false,
  },
  {
    name: 'include-head',
    type: 'boolean',
    description: 'also decompose an untied output head',
    default: false,
  },
];

function allocation(v: unknown): Allocation {
  if (v === undefined) return 'uniform';
  if (v === 'uniform' || v === 'energy') return v;
  throw new LineageError(`--allocation must be 'uniform' or 'energy', got '${String(v)}'`);
}

registerMethod({
  name: 'svd',
  description:
    'one-shot truncated SVD of every block linear to a target fraction of its parameters (the baseline)',
  package: '@lineage/svd',
  options: [
    {
      name: 'params',
      type: 'number',
      description: 'target fraction of the decomposable parameters, in (0, 1)',
    },
    { name: 'rank', type: 'number', description: 'or one rank for every layer (instead of --params)' },
    ...common,
  ],
  create: (o) =>
    svd({
      ...(o.params !== undefined ? { params: o.params as number } : {}),
      ...(o.rank !== undefined ? { rank: o.rank as number } : {}),
      allocation: allocation(o.allocation),
      dataAware: o['data-aware'] === true,
      includeHead: o['include-head'] === true,
    }),
});

registerMethod({
  name: 'plrd',
  description:
    'progressive low-rank decomposition: a family, ranks lowered step by step with recovery between steps',
  package: '@lineage/svd',
  options: [
    {
      name: 'schedule',
      type: 'numbers',
      description: 'decreasing fractions of the decomposable parameters, e.g. 0.8,0.6,0.45,0.3',
      required: true,
    },
    {
      name: 'recover-tokens',
      type: 'number',
      description: 'recovery tokens after each step (distillation from the parent; 0: none)',
      default: 0,
    },
    {
      name: 'teacher',
      type: 'string',
      description: "recovery teacher: 'parent' or 'previous' member",
      default: 'parent',
    },
    ...common,
  ],
  create: (o) => {
    const teacher = o.teacher ?? 'parent';
    if (teacher !== 'parent' && teacher !== 'previous')
      throw new LineageError(`--teacher must be 'parent' or 'previous', got '${String(teacher)}'`);
    return plrd({
      schedule: o.schedule as number[],
      recoverTokens: (o['recover-tokens'] as number | undefined) ?? 0,
      teacher,
      allocation: allocation(o.allocation),
      dataAware: o['data-aware'] === true,
      includeHead: o['include-head'] === true,
    });
  },
});
