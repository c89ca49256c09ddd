import { registerBackend } from '@lineage/core';
import { createOnnxruntimeBackend } from './base.js';

export * from './base.js';
export { OrtFusedEvaluation } from './fused.js';

/** Registered at priority 10: above the reference `js` backend (0). */
registerBackend('onnxruntime', createOnnxruntimeBackend, 10);
