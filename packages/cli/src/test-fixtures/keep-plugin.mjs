// A third-party method as a `--plugin` module: its options are one zod schema (from @lineage/core), which
// gives its flags, help, validation and, through `family`, the members `lineage family` builds.
import { defineMethod, registerMethod, z } from '@lineage/core';
import { svdFamily } from '@lineage/svd';

const options = z.object({
  keep: z.number().gt(0).lt(1).meta({ description: 'fraction to keep' }),
  mode: z
    .enum(['uniform', 'energy'])
    .default('uniform')
    .meta({ description: 'how to allocate', flag: 'alloc-mode' }),
});

registerMethod(
  defineMethod({
    name: 'keep',
    description: 'a plugin method (svd under another name)',
    package: 'test-plugin',
    options,
    create: () => {
      throw new Error('not used by the tests');
    },
    family: {
      replaces: ['keep'],
      create: (o, r) => svdFamily({ allocation: o.mode, sizes: r.sizes, recoverTokens: r.recoverTokens }),
    },
  }),
);
