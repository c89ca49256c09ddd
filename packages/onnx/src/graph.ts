// The model builder alone (no layer exporters, nothing registered): what the onnxruntime backend's kernels use.
export * from './graph-builder.js';
