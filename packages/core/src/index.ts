// Tensors

// Backends
export * from './backend/backend.js';
export { createJsBackend, JsBackend } from './backend/js/js-backend.js';
export { Ops } from './backend/ops.js';
export * from './backend/registry.js';
export * from './checkpoint/load-model.js';
export * from './checkpoint/save-model.js';
// Compression methods
export * from './compress/method.js';
export * from './compress/registry.js';
// Evaluation
export * from './eval/documents.js';
export * from './eval/generate.js';
export * from './eval/perplexity.js';
// Checkpoints
export * from './io/index.js';
// Models and layers
export * from './nn/config.js';
export * from './nn/init.js';
export * from './nn/layer.js';
export { Linear } from './nn/linear.js';
export * from './nn/llama.js';
export * from './nn/parameter.js';
export * from './nn/rope.js';
export * from './tensor/dtype.js';
export * from './tensor/half.js';
export * from './tensor/host-tensor.js';
export * from './tensor/packed.js';
// Tokenizers
export * from './tokenizer/index.js';
// Utilities
export { fail, LineageError } from './util/errors.js';
export { Random } from './util/random.js';
export { readTextFile } from './util/text-file.js';
