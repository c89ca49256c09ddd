// The main entry is for users of models, backends and methods. Elsewhere:
// - `@lineage/core/backend` (src/backend/index.ts): for backend and gradient authors: the shape checks of
//   backend/shapes.ts, getGradient, oneHot, sumToShape;
// - `@lineage/core/testing` (src/testing/index.ts): test-only: the conformance and gradient suites,
//   checkGradients, F64Backend, resetBackends, tempDir.

// Tensors

// Autodiff and training
export { GradOps } from './autograd/grad-ops.js';
export * from './autograd/losses.js';
export { type GradientSpec, type GradNode, registerGradient, type Saved } from './autograd/registry.js';
export { type BackwardOptions, Tape } from './autograd/tape.js';
export * from './autograd/value-and-grad.js';
// Backends
export * from './backend/backend.js';
export * from './backend/fused-training.js';
export { createJsBackend, JsBackend } from './backend/js/js-backend.js';
export { Ops } from './backend/ops.js';
export { getBackend, listBackends, registerBackend, useBackend } from './backend/registry.js';
export * from './checkpoint/load-model.js';
export * from './checkpoint/save-model.js';
// Compression methods
export * from './compress/family.js';
export * from './compress/family-record.js';
export * from './compress/method.js';
export * from './compress/options.js';
export * from './compress/registry.js';
// Text datasets
export * from './data/text-dataset.js';
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
export * from './nn/shape.js';
export * from './nn/surgery.js';
export * from './optim/adamw.js';
export { adamwUpdate, adamwUpdateJs } from './optim/adamw-update.js';
export * from './optim/clip.js';
export * from './optim/optimizer.js';
export * from './optim/param-groups.js';
export * from './optim/schedule.js';
export * from './optim/sgd.js';
export * from './tensor/dtype.js';
export * from './tensor/finite.js';
export * from './tensor/half.js';
export * from './tensor/host-tensor.js';
export * from './tensor/packed.js';
export * from './tensor/select.js';
// Tokenizers
export * from './tokenizer/index.js';
// Utilities
export { fail, LineageError } from './util/errors.js';
export { Random } from './util/random.js';
export { sharedDir, sharedPath } from './util/shared-data.js';
export {
  DEFAULT_MAX_DATA_BYTES,
  getMaxDataBytes,
  type ReadTextOptions,
  readTextFile,
  STDIN_PATH,
  setMaxDataBytes,
} from './util/text-file.js';
