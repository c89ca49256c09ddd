// Test-only helpers of the core modules (kept out of the main entry).
export {
  checkGradients,
  F64Backend,
  type GradCheckOptions,
  type GradCheckResult,
} from '../autograd/grad-check.js';
export { resetBackends } from '../backend/registry.js';
export {
  type ConformanceOptions,
  describeBackendConformance,
  expectClose,
  randomF32,
  refAttention,
  refBinary,
  refMatmul,
  refReduce,
  refRmsNorm,
  refRope,
  refSoftmaxRow,
  refTranspose,
  seededRandom,
  TOLERANCES,
  type ToleranceKind,
  unaryRef,
} from './conformance.js';
export { countingTokenizer } from './counting-tokenizer.js';
export {
  builtinGradientOps,
  compareGradients,
  describeGradientAgreement,
  expectGradientsAgree,
  GRADIENT_AGREEMENT_TOLERANCE,
  type GradientAgreementOptions,
  type GradientCase,
  type GradientComparison,
  type GradientDifference,
  layerGradientCases,
  opGradientCases,
  probeLoss,
  randomParam,
  randomTokens,
  recordedOps,
  type TinyModelOptions,
  tinyModel,
  uniform,
} from './gradients.js';
export { describeLayerKind, type LayerKindOptions } from './layer-kind.js';
export { describeMethod, type MethodSuiteOptions } from './method-suite.js';
export {
  type DenseTensor,
  type DenseWeights,
  denseWeightsOf,
  type PrunePlan,
  pruneByHand,
  referenceLogits,
} from './reference-llama.js';
export { sharedDir, sharedPath } from './shared.js';
export {
  applyPlan,
  describeSurgery,
  relativeError,
  type SurgerySuiteOptions,
  seededChoice,
  stories260KPlan,
} from './surgery-suite.js';
export { tempDir } from './temp-dir.js';
