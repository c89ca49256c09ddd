/**
 * @lineage/prune: Minitron structured pruning — importance (from @lineage/calibrate's statistics, or the
 * random and magnitude ablations), slicing to a target shape with core's surgery primitives, parameter
 * budgets and architecture search, and the `minitron` method (one model or a progressive family).
 * Importing it registers the method.
 */
import './register.js';

export * from './depth.js';
export * from './importance.js';
export * from './methods.js';
export * from './prune.js';
export * from './search.js';
export * from './shape.js';
