/**
 * `@lineage/core/backend`: helpers for authors of backends and of custom gradients, kept out of the main
 * entry (which is for users of models and methods). The backend contract itself (`Backend`, `Tensor`,
 * `registerBackend`, `Ops`) and `registerGradient` stay in `@lineage/core`.
 *
 * ```ts
 * import { registerBackend } from '@lineage/core';
 * import { checkUpload, matmulDims } from '@lineage/core/backend';
 * ```
 */

// Gradient lookup and helpers for writing gradients (registerGradient is in the main entry).
export { oneHot, sumToShape } from '../autograd/gradients.js';
export { getGradient } from '../autograd/registry.js';
// Shape arithmetic and argument checks every backend shares, so all throw the same errors.
export * from './shapes.js';
