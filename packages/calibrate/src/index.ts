export {
  type CalibrateOptions,
  type CalibrationResult,
  calibrate,
  computeStats,
  type StatsOptions,
  sampleFromSequences,
  VERSION,
} from './calibrate.js';
export {
  type CalibrateFn,
  type CalibrationCapabilityOptions,
  type CalibrationWalkFn,
  calibrationCapability,
  withCalibration,
} from './capability.js';
export type { CalibrationStatsAccess } from './context.js';
export {
  type CalibrationSample,
  type DataFormat,
  type Dataset,
  type DatasetFile,
  type DatasetOptions,
  defaultProtocol,
  describeSequences,
  loadDataset,
  type SampleOptions,
  sampleSequences,
} from './dataset.js';
export { GramAccumulator } from './gram.js';
export {
  type SequentialBlock,
  type SequentialVisit,
  type SequentialWalkOptions,
  type SequentialWalkResult,
  sequentialWalk,
} from './sequential.js';
export {
  fromModel,
  isLayeredModel,
  type LayeredModel,
  type LayerView,
  openStreamedModel,
  readBlock,
  sourceFingerprint,
  toLayered,
} from './source.js';
export {
  parseStatistics,
  SHARED_INPUT,
  STATISTICS,
  type StatisticName,
  StatsCollector,
  statNames,
} from './statistics.js';
export {
  CalibrationStats,
  type InputStats,
  loadStats,
  readStatsInfo,
  STATS_METADATA_KEY,
  type StatsInfo,
  type StatsTarget,
  statsOf,
} from './stats.js';
export {
  type ActivationBatch,
  type LayerCapture,
  type LayerStep,
  type MicroBatchActivation,
  type TapName,
  type WalkOptions,
  type WalkProgress,
  type WalkResult,
  walkLayers,
} from './walk.js';
