import type { DType } from '../tensor/dtype.js';
import type { HostTensor, Shape } from '../tensor/host-tensor.js';

/** dtype and shape of a stored tensor, known without reading its data. */
export interface TensorInfo {
  dtype: DType;
  shape: Shape;
}

/**
 * Random access to a checkpoint's tensors, one at a time, so a model never has to be in memory twice.
 * Implemented by SafetensorsFile, ShardedSafetensors and the llama2.c reader.
 */
export interface TensorSource {
  /** The file (or index file) this source reads. */
  readonly path: string;
  names(): string[];
  /** Throws a LineageError for an unknown name. */
  info(name: string): TensorInfo;
  read(name: string): Promise<HostTensor>;
  close(): Promise<void>;
  /** The file that holds tensor `name` (a shard of a sharded checkpoint), for errors about its values. */
  fileOf?(name: string): string;
}

export function isTensorSource(x: unknown): x is TensorSource {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as TensorSource).names === 'function' &&
    typeof (x as TensorSource).info === 'function' &&
    typeof (x as TensorSource).read === 'function'
  );
}
