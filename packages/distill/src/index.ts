export {
  applyWeights,
  CHECKPOINT_FORMAT,
  type CheckpointState,
  configMismatch,
  type EvalRecord,
  hasCheckpoint,
  type LoadedCheckpoint,
  type RunConfig,
  readCheckpoint,
  saveCheckpoint,
} from './checkpoint.js';
export {
  type DataInput,
  holdOut,
  type LoadedSource,
  loadSources,
  type SamplerState,
  type TextSource,
  tokenizeSources,
  tokensHash,
  WindowSampler,
} from './data.js';
export {
  DEFAULTS,
  defaultBatchSize,
  defaultEvalEvery,
  defaultWarmup,
  LR_ANCHORS,
  LR_WIDTH_EXPONENT,
  TRAIN_LR_FACTOR,
  widthLr,
} from './defaults.js';
export { matmulParams, type TrainingFlops, trainingFlops } from './flops.js';
export { fusedBlock } from './fused-block.js';
export {
  configLike,
  initLike,
  type ModelShape,
  perturbLinearWeights,
  type QuotedShape,
  toModelShape,
} from './init.js';
export { canFuseKdHead, denseHead, fusedKdHead } from './kd-head.js';
export { formatDuration, formatStep, formatTokens, JsonlLog, readJsonl, type StepRecord } from './log.js';
export {
  type DistillLoss,
  type FinalCapture,
  type ForwardCapture,
  forwardCapture,
  forwardFinal,
  type HiddenLossOptions,
  layerPairs,
  type StepLossOptions,
  stepLoss,
  type TeacherFinal,
} from './losses.js';
export {
  LR_RANGE_DEFAULTS,
  type LrRangeInput,
  type LrRangeOptions,
  type LrRangePoint,
  type LrRangeResult,
  lrRangeTest,
} from './lr-range.js';
export { groupOptions, namesHash, type TrainedParameters, trainedParameters } from './param-groups.js';
export {
  type RecoverFn,
  type RecoverOptions,
  RecoveryInterrupted,
  recoverCapability,
  withRecover,
} from './recover.js';
export {
  addRegularizers,
  l1,
  l2,
  type ResolvedRegularizer,
  regularizerTerms,
  resolveRegularizers,
} from './regularizers.js';
export {
  type CommonTrainOptions,
  type DistillOptions,
  distill,
  type Schedule,
  type StopReason,
  type TrainOptions,
  type TrainResult,
  train,
} from './trainer.js';
export { splitValidation, trySplitValidation, type ValidationSplit } from './validation.js';
