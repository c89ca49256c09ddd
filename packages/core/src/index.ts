// Tensors

// Autodiff and training
export {
  checkGradients,
  F64Backend,
  type GradCheckOptions,
  type GradCheckResult,
} from './autograd/grad-check.js';
export { GradOps } from './autograd/grad-ops.js';
export { oneHot, sumToShape } from './autograd/gradients.js';
export * from './autograd/losses.js';
export {
  type GradientSpec,
  type GradNode,
  getGradient,
  registerGradient,
  type Saved,
} from './autograd/registry.js';
export { type BackwardOptions, Tape } from './autograd/tape.js';
export * from './autograd/value-and-grad.js';
// Backends
export * from './backend/backend.js';
export { createJsBackend, JsBackend } from './backend/js/js-backend.js';
export { Ops } from './backend/ops.js';
export * from './backend/registry.js';
export * from './backend/shapes.js';
export * from './checkpoint/load-model.js';
export * from './checkpoint/save-model.js';
// Compression methods
export * from './compress/family.js';
export * from './compress/family-record.js';
export * from './compress/method.js';
export * from './compress/options.js';
export * from './compress/registry.js';
// Evaluation
export * from './eval/documents.js';
export * from './eval/generate.js';
export * from './eval/perplexity.js';
// Checkpoints
export * from './io/index.js';
// Models and layers
export * from './nn/config.js';
export * from './nn/fingerprint.js';
export * from './nn/init.js';
export * from './nn/layer.js';
export { Linear } from './nn/linear.js';
export * from './nn/llama.js';
export * from './nn/parameter.js';
export * from './nn/rope.js';
export * from './optim/adamw.js';
export * from './optim/clip.js';
export * from './optim/optimizer.js';
export * from './optim/schedule.js';
export * from './optim/sgd.js';
export * from './tensor/dtype.js';
export * from './tensor/half.js';
export * from './tensor/host-tensor.js';
export * from './tensor/packed.js';
// Tokenizers
export * from './tokenizer/index.js';
// Utilities
export { fail, LineageError } from './util/errors.js';
export { Random } from './util/random.js';
export { sharedDir, sharedPath } from './util/shared-data.js';
export { readTextFile } from './util/text-file.js';
