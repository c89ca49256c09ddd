import { describe, expect, it } from 'vitest';
import { describeBackendConformance, expectClose, randomF32 } from '../../testing/conformance.js';
import type { Tensor } from '../backend.js';
import { createJsBackend, JsBackend } from './js-backend.js';

// Every op of the contract against float64 references: the suite every backend runs.
describeBackendConformance('js', async () => new JsBackend());

// ---------------------------------------------------------------------------------------------------
// js-specific behaviour: error messages, i32 semantics, float64 accumulation, speed

const be = new JsBackend();

function up(data: Float32Array | number[], shape: readonly number[]): Tensor {
  return be.upload(Array.isArray(data) ? Float32Array.from(data) : data, shape);
}

const ints = (data: number[], shape: readonly number[]) => be.upload(Int32Array.from(data), shape);

async function vals(t: Tensor): Promise<number[]> {
  return Array.from(await be.read(t));
}

describe('js backend: specifics', () => {
  it('createJsBackend is cpu-only', async () => {
    const b = await createJsBackend({});
    expect(b.name).toBe('js');
    expect(b.device).toBe('cpu');
    await expect(createJsBackend({ device: 'cuda' })).rejects.toThrow(/cpu only/);
  });

  it('names the problem in tensor errors', async () => {
    const t = up([1, 2], [2]);
    be.dispose(t);
    await expect(be.read(t)).rejects.toThrow(/disposed/);
    await expect(be.unary('exp', t)).rejects.toThrow(/disposed/);
    expect(() => up([1, 2, 3], [2, 2])).toThrow(/needs 4/);
    expect(() => up([], [-1])).toThrow(/bad dimension/);
    const i = ints([1, 2], [2]);
    await expect(be.reshape(i, [3])).rejects.toThrow(/size/);
    await expect(be.reshape(i, [-1, -1])).rejects.toThrow(/infer/);
  });

  it('i32 division truncates toward zero; unary needs f32 except neg/abs/square/relu', async () => {
    const d = await be.binary('div', ints([7, -7, 3], [3]), ints([2], [1]));
    expect(d.dtype).toBe('i32');
    expect(await vals(d)).toEqual([3, -3, 1]);
    expect(await vals(await be.unary('square', ints([3, -4], [2])))).toEqual([9, 16]);
    expect(await vals(await be.unary('relu', ints([3, -4], [2])))).toEqual([3, 0]);
    await expect(be.unary('exp', ints([1], [1]))).rejects.toThrow(/f32/);
  });

  it('binary errors name dtypes and shapes', async () => {
    await expect(be.binary('add', ints([1], [1]), up([1], [1]))).rejects.toThrow(/dtypes differ/);
    await expect(be.binary('add', up(randomF32([2, 3]), [2, 3]), up(randomF32([2]), [2]))).rejects.toThrow(
      /broadcast/,
    );
  });

  it('reduce: empty mean is NaN, empty max throws, i32 mean is f32, axis errors', async () => {
    const e = up([], [0, 3]);
    expectClose(await vals(await be.reduce('mean', e, [0])), [Number.NaN, Number.NaN, Number.NaN]);
    await expect(be.reduce('max', e, [0])).rejects.toThrow(/zero-size/);
    const i = ints([1, 2, 3, 4], [2, 2]);
    expect((await be.reduce('mean', i, [0, 1])).dtype).toBe('f32');
    await expect(be.reduce('sum', i, [2])).rejects.toThrow(/out of range/);
    await expect(be.reduce('sum', i, [0, -2])).rejects.toThrow(/repeated/);
  });

  it('sum accumulates in float64', async () => {
    const x = new Float32Array(1 << 20).fill(0.1);
    const [s] = await vals(await be.reduce('sum', up(x, [x.length]), [0]));
    expect(Math.abs(s! - 0.1 * x.length * (Math.fround(0.1) / 0.1))).toBeLessThan(1e-2);
  });

  it('rmsNorm and rope errors name the operand', async () => {
    await expect(be.rmsNorm(up(randomF32([2, 3]), [2, 3]), up(randomF32([2]), [2]), 1e-5)).rejects.toThrow(
      /weight/,
    );
    const x = up(randomF32([2, 3, 4, 6]), [2, 3, 4, 6]);
    await expect(be.rope(x, up(randomF32([3, 3]), [3, 3]), up(randomF32([3, 6]), [3, 6]))).rejects.toThrow(
      /sin/,
    );
    await expect(
      be.rope(up(randomF32([2, 3, 5]), [2, 3, 5]), up([], [2, 0]), up([], [2, 0])),
    ).rejects.toThrow(/odd/);
  });

  it('gather and crossEntropy errors name the id/target and range', async () => {
    const t = up(randomF32([5, 3]), [5, 3]);
    await expect(be.gather(t, ints([1, 5], [2]))).rejects.toThrow(/id 5 .*\[0, 5\)/);
    await expect(be.gather(t, ints([-1], [1]))).rejects.toThrow(/id -1 .*\[0, 5\)/);
    await expect(be.gather(t, up([1], [1]))).rejects.toThrow(/i32/);
    const wide = randomF32([3, 40], 15); // the block-copy path
    expect(await vals(await be.gather(up(wide, [3, 40]), ints([2], [1])))).toEqual(
      Array.from(wide.subarray(80, 120)),
    );
    const x = up(randomF32([6, 33]), [6, 33]);
    await expect(be.crossEntropy(x, ints([0, 0, 0, 0, 0, 33], [6]))).rejects.toThrow(/target 33 .*\[0, 33\)/);
    await expect(be.crossEntropy(x, ints([0], [1]))).rejects.toThrow(/targets/);
  });

  it('data-movement errors', async () => {
    await expect(be.transpose(up(randomF32([2, 3]), [2, 3]), [0, 0])).rejects.toThrow(/permutation/);
    await expect(be.transpose(up(randomF32([2, 3]), [2, 3]), [0])).rejects.toThrow(/rank/);
    const x = up(randomF32([4, 5, 40]), [4, 5, 40]);
    await expect(be.slice(x, [0, 0, 30], [1, 1, 11])).rejects.toThrow(/out of bounds/);
    await expect(
      be.concat([up(randomF32([2, 3]), [2, 3]), up(randomF32([3, 3]), [3, 3])], 1),
    ).rejects.toThrow(/does not match/);
    await expect(be.concat([], 0)).rejects.toThrow(/no tensors/);
  });

  it('matmul errors name the mismatch', async () => {
    await expect(be.matmul(up(randomF32([2, 3]), [2, 3]), up(randomF32([2, 3]), [2, 3]))).rejects.toThrow(
      /inner dimensions/,
    );
    await expect(be.matmul(up(randomF32([3]), [3]), up(randomF32([3, 2]), [3, 2]))).rejects.toThrow(/rank/);
    await expect(
      be.matmul(up(randomF32([2, 2, 3]), [2, 2, 3]), up(randomF32([3, 3, 2]), [3, 3, 2])),
    ).rejects.toThrow(/broadcast/);
  });

  it('fused attention rejects a head count that is not a multiple of the kv heads', async () => {
    await expect(
      be.attention(
        up(randomF32([1, 2, 3, 4]), [1, 2, 3, 4]),
        up(randomF32([1, 2, 2, 4]), [1, 2, 2, 4]),
        up(randomF32([1, 2, 2, 4]), [1, 2, 2, 4]),
        { scale: 1, causal: false },
      ),
    ).rejects.toThrow(/multiple/);
  });
});
