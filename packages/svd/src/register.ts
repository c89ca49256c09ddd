import './basis/register.js';
import { defineMethod, registerMethod } from '@lineage/core';
import { caldera, calderaFamily, calderaOptions, calderaSizes } from './caldera/method.js';
import { fractionSizes, plrd, plrdOptions, svd, svdFamily, svdOptions } from './methods.js';

// Each method's options are its schema (methods.ts): flags, help and validation all come from there; a
// family's sizes (`lineage family --schedule`) are checked by its `sizes` schema, the one its factory uses.

registerMethod(
  defineMethod({
    name: 'svd',
    description:
      'one-shot truncated SVD of every block linear to a target fraction of its parameters (the baseline)',
    package: '@lineage/svd',
    options: svdOptions,
    create: (o) => svd(o),
    family: {
      replaces: ['params', 'rank'],
      sizes: fractionSizes,
      create: (o, r) => svdFamily({ ...o, sizes: r.sizes, recoverTokens: r.recoverTokens }),
    },
  }),
);

registerMethod(
  defineMethod({
    name: 'plrd',
    description:
      'progressive low-rank decomposition: a family, ranks lowered step by step with recovery between steps',
    package: '@lineage/svd',
    options: plrdOptions,
    create: (o) => plrd(o),
    family: {
      replaces: ['schedule', 'recoverTokens'],
      sizes: fractionSizes,
      create: (o, r) => plrd({ ...o, schedule: r.sizes, recoverTokens: r.recoverTokens }),
    },
  }),
);

registerMethod(
  defineMethod({
    name: 'caldera',
    description:
      'CALDERA: every block linear as Q + L·R (Q low-bit by LDLQ on calibration Hessians, L and R low-rank and low-bit), optionally with its 16-bit ranks fine-tuned by distillation',
    package: '@lineage/svd',
    options: calderaOptions,
    create: (o) => caldera(o),
    family: {
      replaces: ['qBits', 'recoverTokens'],
      sizes: calderaSizes,
      create: (o, r) => calderaFamily({ ...o, sizes: r.sizes, recoverTokens: r.recoverTokens }),
    },
  }),
);
