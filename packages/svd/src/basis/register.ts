import { defineMethod, registerMethod } from '@lineage/core';
import { fractionSizes } from '../methods.js';
import { basisFamily, basisOptions, basisSelection } from './method.js';

registerMethod(
  defineMethod({
    name: 'basis',
    description:
      'Basis Selection: relearn the SVD bases’ coefficients on target data, prune the unneeded ones in rounds, add new bases; exports low_rank',
    package: '@lineage/svd',
    options: basisOptions,
    create: (o) => basisSelection(o),
    // members from the parent at each size, each with its own --tokens (--recover-tokens is not used)
    family: {
      replaces: ['params'],
      sizes: fractionSizes,
      create: (o, r) => basisFamily({ ...o, sizes: r.sizes }),
    },
  }),
);
