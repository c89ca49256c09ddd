import { uniform } from '../autograd/testing.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { describeLayerKind } from '../testing/layer-kind.js';
import { Linear } from './linear.js';

const dense =
  (dtype: 'f32' | 'bf16') =>
  ({ out, in: inp, bias, seed }: { out: number; in: number; bias: boolean; seed: number }) =>
    new Linear(
      HostTensor.fromF32(uniform([out, inp], seed), [out, inp], dtype),
      bias ? HostTensor.fromF32(uniform([out], seed + 1), [out], dtype) : undefined,
    );

describeLayerKind('linear', { make: dense('f32') });
// Stored bf16: loading, select and saving keep the bits; the forward computes in f32.
describeLayerKind('linear', { make: dense('bf16'), label: 'bf16 storage' });
