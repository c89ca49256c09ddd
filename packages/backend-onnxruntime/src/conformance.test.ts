import { describeBackendConformance } from '@lineage/core/testing';
import { createOnnxruntimeBackend } from './base.js';

describeBackendConformance('onnxruntime cpu', () => createOnnxruntimeBackend({ device: 'cpu' }));
describeBackendConformance('onnxruntime cpu, every op on onnxruntime', () =>
  createOnnxruntimeBackend({ device: 'cpu', smallOpThreshold: 0 }),
);
