import { defineMethod, registerMethod } from '@lineage/core';
import { minitron, minitronFamily, minitronOptions, minitronSizes } from './methods.js';

// The method's options are its schema (methods.ts): flags, help and validation all come from there.
registerMethod(
  defineMethod({
    name: 'minitron',
    description:
      'Minitron structured pruning: heads, KV groups, FFN, hidden and layers by activation importance, to a shape or a --params budget (architecture search), distilled from the parent',
    package: '@lineage/prune',
    options: minitronOptions,
    create: (o) => minitron(o),
    family: {
      replaces: ['params', 'shape', 'recoverTokens'],
      sizes: minitronSizes,
      create: (o, r) => minitronFamily({ ...o, sizes: r.sizes, recoverTokens: r.recoverTokens }),
    },
  }),
);
