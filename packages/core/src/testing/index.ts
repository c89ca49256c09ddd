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
export { sharedDir, sharedPath } from './shared.js';
