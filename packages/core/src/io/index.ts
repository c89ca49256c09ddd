export {
  ByteSink,
  type FileWriter,
  type WriteDirOptions,
  writeDirAtomic,
  writeFileAtomic,
} from './atomic.js';
export {
  fileKind,
  MAX_SMALL_FILE_BYTES,
  openRegularFile,
  readRegularFile,
  readRegularFileSync,
  readStreamBounded,
} from './fs-util.js';
export { parseHFConfig, toHFConfig } from './hf-config.js';
export { findDuplicateKey } from './json-keys.js';
export {
  computeFreqCis,
  type Llama2cHeader,
  Llama2cSource,
  llama2cConfig,
  openLlama2c,
  permuteRopeRows,
  writeLlama2c,
} from './llama2c.js';
export {
  DEFAULT_MAX_SHARD_BYTES,
  INDEX_FILE_NAME,
  MAX_HEADER_BYTES,
  openSafetensors,
  PACKED_DTYPES_KEY,
  SafetensorsFile,
  type SafetensorsTensorInfo,
  ShardedSafetensors,
  SINGLE_FILE_NAME,
  type TensorEntries,
  type WriteShardedOptions,
  type WriteShardedResult,
  writeSafetensors,
  writeShardedSafetensors,
} from './safetensors.js';
export { isTensorSource, type TensorInfo, type TensorSource } from './tensor-source.js';
