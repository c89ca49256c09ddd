/**
 * @lineage/svd: the float64 decomposition engine (`linalg`, re-exported from @lineage/linalg), the `low_rank` and `qlr` layer kinds, rank allocation,
 * the `svd` (one-shot), `plrd` (progressive family) and `caldera` (Q + L·R) methods. Importing it registers
 * the layer kinds and the methods.
 */
import './register.js';

export * as linalg from '@lineage/linalg';
export * from './allocation.js';
export * from './basis/basis-linear.js';
export * from './basis/decompose-bases.js';
export * from './basis/method.js';
export * from './basis/prune-plan.js';
export * from './caldera/decompose.js';
export * from './caldera/layer.js';
export * from './caldera/method.js';
export * from './caldera/qlr-linear.js';
export * from './caldera/quantizers.js';
export * from './decompose-model.js';
export * from './factorize.js';
export * from './low-rank-linear.js';
export * from './methods.js';
