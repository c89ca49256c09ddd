import { byteSize, type DType, isPacked, type Storage } from './dtype.js';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from './half.js';
import { packInts, unpackInts } from './packed.js';

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function storageFor(dtype: DType, n: number): Storage {
  if (isPacked(dtype)) return new Uint8Array(byteSize(dtype, n));
  switch (dtype) {
    case 'f32':
      return new Float32Array(n);
    case 'f16':
    case 'bf16':
    case 'u16':
      return new Uint16Array(n);
    case 'i8':
      return new Int8Array(n);
    case 'u8':
      return new Uint8Array(n);
    case 'i32':
      return new Int32Array(n);
    case 'f64':
      return new Float64Array(n);
  }
}

function expectedCtor(dtype: DType): string {
  if (isPacked(dtype)) return 'Uint8Array';
  return {
    f32: 'Float32Array',
    f16: 'Uint16Array',
    bf16: 'Uint16Array',
    u16: 'Uint16Array',
    i8: 'Int8Array',
    u8: 'Uint8Array',
    i32: 'Int32Array',
    f64: 'Float64Array',
  }[dtype];
}

/**
 * A tensor in host memory, in its stored form: contiguous, row-major, little-endian. This is what
 * checkpoints hold and what layers store; backends compute on their own `Tensor`s (see backend/).
 * f16/bf16 data are raw bit patterns in a Uint16Array; packed sub-byte types are a Uint8Array bit stream.
 */
export class HostTensor {
  readonly size: number;

  constructor(
    readonly dtype: DType,
    readonly shape: Shape,
    readonly data: Storage,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new RangeError(`HostTensor: bad dimension ${d} in [${shape}]`);
    }
    this.size = sizeOf(shape);
    if (data.constructor.name !== expectedCtor(dtype)) {
      throw new TypeError(
        `HostTensor: ${dtype} needs a ${expectedCtor(dtype)}, got ${data.constructor.name}`,
      );
    }
    const need = isPacked(dtype) ? byteSize(dtype, this.size) : this.size;
    if (data.length !== need) {
      throw new RangeError(
        `HostTensor: ${dtype}[${shape}] needs ${need} storage elements, got ${data.length}`,
      );
    }
  }

  static zeros(dtype: DType, shape: Shape): HostTensor {
    return new HostTensor(dtype, shape, storageFor(dtype, sizeOf(shape)));
  }

  /** Builds a tensor of `dtype` from f32 values (rounding to f16/bf16; integers must be exact for int types). */
  static fromF32(values: Float32Array, shape: Shape, dtype: DType = 'f32'): HostTensor {
    if (values.length !== sizeOf(shape))
      throw new RangeError(`fromF32: ${values.length} values for shape [${shape}]`);
    if (isPacked(dtype)) return new HostTensor(dtype, shape, packInts(values, dtype));
    switch (dtype) {
      case 'f32':
        return new HostTensor(dtype, shape, values);
      case 'f16':
        return new HostTensor(dtype, shape, f32ArrayToF16(values));
      case 'bf16':
        return new HostTensor(dtype, shape, f32ArrayToBf16(values));
      case 'i8':
        return new HostTensor(dtype, shape, Int8Array.from(values));
      case 'u8':
        return new HostTensor(dtype, shape, Uint8Array.from(values));
      case 'u16':
        return new HostTensor(dtype, shape, Uint16Array.from(values));
      case 'i32':
        return new HostTensor(dtype, shape, Int32Array.from(values));
      case 'f64':
        return new HostTensor(dtype, shape, Float64Array.from(values));
    }
  }

  /** Reinterprets little-endian bytes (e.g. a safetensors payload) as a tensor; copies to get alignment. */
  static fromBytes(dtype: DType, shape: Shape, bytes: Uint8Array): HostTensor {
    const n = sizeOf(shape);
    const need = byteSize(dtype, n);
    if (bytes.byteLength !== need) {
      throw new RangeError(`fromBytes: ${dtype}[${shape}] needs ${need} bytes, got ${bytes.byteLength}`);
    }
    const data = storageFor(dtype, n);
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(bytes);
    return new HostTensor(dtype, shape, data);
  }

  /** The raw little-endian bytes (a view, no copy). */
  bytes(): Uint8Array {
    return new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength);
  }

  get byteLength(): number {
    return this.data.byteLength;
  }

  /** Values as f32 (a fresh array, except for f32 where the storage itself is returned). */
  toF32(): Float32Array {
    if (isPacked(this.dtype))
      return Float32Array.from(unpackInts(this.data as Uint8Array, this.dtype, this.size));
    switch (this.dtype) {
      case 'f32':
        return this.data as Float32Array;
      case 'f16':
        return f16ArrayToF32(this.data as Uint16Array);
      case 'bf16':
        return bf16ArrayToF32(this.data as Uint16Array);
      default:
        return Float32Array.from(
          this.data as Int8Array | Uint8Array | Uint16Array | Int32Array | Float64Array,
        );
    }
  }

  /** Integer values of an integer tensor (packed types are unpacked). */
  toInts(): Int32Array {
    if (isPacked(this.dtype)) return unpackInts(this.data as Uint8Array, this.dtype, this.size);
    if (this.dtype === 'i32') return this.data as Int32Array;
    if (this.dtype === 'i8' || this.dtype === 'u8' || this.dtype === 'u16')
      return Int32Array.from(this.data as Int8Array | Uint8Array | Uint16Array);
    throw new TypeError(`toInts: ${this.dtype} is not an integer type`);
  }

  /** Converts to another dtype via f32 (lossy for narrower types). */
  cast(dtype: DType): HostTensor {
    if (dtype === this.dtype) return this;
    return HostTensor.fromF32(this.toF32(), this.shape, dtype);
  }

  reshape(shape: Shape): HostTensor {
    if (sizeOf(shape) !== this.size)
      throw new RangeError(`reshape: [${this.shape}] -> [${shape}] changes size`);
    return new HostTensor(this.dtype, shape, this.data);
  }
}
