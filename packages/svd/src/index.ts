/**
 * @lineage/svd: the float64 decomposition engine (`linalg`, re-exported from @lineage/linalg), the `low_rank` layer kind, rank allocation,
 * and the `svd` (one-shot) and `plrd` (progressive family) methods. Importing it registers the layer kind
 * and the methods.
 */
import './register.js';

export * as linalg from '@lineage/linalg';
export * from './allocation.js';
export * from './basis/basis-linear.js';
export * from './basis/decompose-bases.js';
export * from './basis/method.js';
export * from './basis/prune-plan.js';
export * from './decompose-model.js';
export * from './factorize.js';
export * from './low-rank-linear.js';
export * from './methods.js';
