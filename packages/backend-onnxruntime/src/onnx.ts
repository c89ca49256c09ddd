// The ONNX model builder moved to @lineage/onnx (shared with `lineage export`); kernels import it from here.
export * from '@lineage/onnx/graph';
