import { describeBackendConformance } from '@lineage/core/testing';
import { describe, it } from 'vitest';
import { createOnnxruntimeBackend } from './base.js';

// WebGPU correctness without a GPU: onnxruntime's WebGPU provider (Dawn) on Vulkan, which CI provides with
// Mesa's lavapipe (scripts/setup-vulkan.sh). Without an adapter the suite is reported as skipped, with why.
let reason: string | undefined;
try {
  const b = await createOnnxruntimeBackend({ device: 'webgpu' });
  await b.close?.();
} catch (e) {
  reason = (e as Error).message;
}

if (reason) {
  console.warn(`onnxruntime webgpu conformance skipped: ${reason}`);
  describe.skip(`backend conformance: onnxruntime webgpu (skipped: ${reason})`, () => {
    it('needs a WebGPU adapter', () => {});
  });
} else {
  describeBackendConformance('onnxruntime webgpu', () => createOnnxruntimeBackend({ device: 'webgpu' }), {
    tolerance: 1,
  });
}
