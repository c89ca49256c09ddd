import { getBackend, listBackends, Ops } from '@lineage/core';
import { describeBackendConformance } from '@lineage/core/testing';
import * as tfCore from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createTfjsBackend,
  EngineMissingError,
  installCommand,
  TfjsBackend,
  type TfjsBackendOptions,
} from './base.js';
import { engineCandidates } from './load-engine.js';

/** No engine package but the pure-JS cpu one (the real tfjs-node/-gpu are not installed here either). */
const onlyCpu = {
  '@tensorflow/tfjs-node-gpu': null,
  '@tensorflow/tfjs-node': null,
  '@tensorflow/tfjs-backend-webgpu': null,
  webgpu: null,
  '@tensorflow/tfjs-backend-wasm': null,
};

describe('engine choice', () => {
  it('orders engines best first and maps devices', () => {
    expect(engineCandidates({})).toEqual({
      engines: ['node-gpu', 'node', 'webgpu', 'wasm', 'cpu'],
      forced: false,
    });
    expect(engineCandidates({ device: 'cpu' })).toEqual({ engines: ['node', 'wasm', 'cpu'], forced: false });
    expect(engineCandidates({ device: 'cuda' })).toEqual({ engines: ['node-gpu'], forced: true });
    expect(engineCandidates({ device: 'webgpu' })).toEqual({ engines: ['webgpu'], forced: true });
    expect(engineCandidates({ engine: 'wasm', device: 'cpu' })).toEqual({ engines: ['wasm'], forced: true });
    expect(() => engineCandidates({ device: 'tpu' })).toThrow(/no device 'tpu'/);
    expect(() => engineCandidates({ engine: 'wasm', device: 'webgpu' })).toThrow(/does not run on device/);
    expect(() => engineCandidates({ engine: 'metal' as never })).toThrow(/unknown tfjs engine 'metal'/);
  });

  it('picks the best engine that starts and records it', async () => {
    const wasm = await createTfjsBackend({
      modules: { ...onlyCpu, '@tensorflow/tfjs-backend-wasm': undefined },
    });
    expect(wasm).toBeInstanceOf(TfjsBackend);
    expect(wasm.engine).toBe('wasm');
    expect(wasm.device).toBe('cpu');
    expect(wasm.engineDescription).toMatch(/^wasm/);
    const cpu = await createTfjsBackend({ modules: onlyCpu });
    expect(cpu.engine).toBe('cpu');
    const viaDevice = await createTfjsBackend({ device: 'cpu', modules: onlyCpu });
    expect(viaDevice.engine).toBe('cpu');
  });

  it('a forced engine that is missing fails with the exact install command', async () => {
    const cases: [TfjsBackendOptions, RegExp][] = [
      [
        { engine: 'wasm', modules: onlyCpu },
        /^tfjs engine 'wasm' is not installed: pnpm add @tensorflow\/tfjs-backend-wasm@4\.22\.0 \(or npm i @tensorflow\/tfjs-backend-wasm@4\.22\.0\)$/,
      ],
      [
        { engine: 'webgpu', modules: onlyCpu },
        /^tfjs engine 'webgpu' is not installed: pnpm add @tensorflow\/tfjs-backend-webgpu@4\.22\.0 webgpu \(or npm i @tensorflow\/tfjs-backend-webgpu@4\.22\.0 webgpu\)$/,
      ],
      [{ device: 'webgpu', modules: onlyCpu }, /tfjs engine 'webgpu' is not installed: pnpm add/],
      [
        { device: 'cuda', modules: onlyCpu },
        /^tfjs engine 'node-gpu' is not installed: pnpm add @tensorflow\/tfjs-node-gpu@4\.22\.0 \(or npm i @tensorflow\/tfjs-node-gpu@4\.22\.0\)$/,
      ],
      // Not injected: the real import runs and does not find the package.
      [{ engine: 'node' }, /^tfjs engine 'node' is not installed: pnpm add @tensorflow\/tfjs-node@4\.22\.0 /],
      [
        { engine: 'node-gpu' },
        /^tfjs engine 'node-gpu' is not installed: pnpm add @tensorflow\/tfjs-node-gpu@4\.22\.0 /,
      ],
    ];
    for (const [options, message] of cases) {
      const err = (await createTfjsBackend(options).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(EngineMissingError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('when nothing starts, one error lists every engine', async () => {
    const err = (await createTfjsBackend({
      modules: { ...onlyCpu, '@tensorflow/tfjs-backend-cpu': null },
    }).catch((e: unknown) => e)) as Error;
    expect(err.message).toBe(
      'no tfjs engine could start (node-gpu: not installed; node: not installed; webgpu: not installed; wasm: not installed; cpu: not installed)',
    );
  });

  it('without tfjs-core the error names it', async () => {
    expect(installCommand(['@tensorflow/tfjs-core'])).toBe(
      'pnpm add @tensorflow/tfjs-core@4.22.0 (or npm i @tensorflow/tfjs-core@4.22.0)',
    );
    await expect(
      createTfjsBackend({ engine: 'cpu', modules: { '@tensorflow/tfjs-core': null } }),
    ).rejects.toThrow(/tfjs engine 'cpu' is not installed/);
  });

  it('rejects unknown devices and engines as one-line errors', async () => {
    await expect(createTfjsBackend({ device: 'tpu' })).rejects.toThrow(
      /no device 'tpu' \(it offers cpu, webgpu and cuda\)/,
    );
    await expect(createTfjsBackend({ engine: 'wasm', device: 'cuda' })).rejects.toThrow(
      /does not run on device 'cuda'/,
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// tfjs-node / tfjs-node-gpu cannot be installed here (their install downloads libtensorflow). They share
// the tfjs API: a module that re-exports tfjs and registers a 'tensorflow' backend. This stand-in does
// exactly that with the cpu kernels, so the adapter's node code path runs for real.

async function fakeTfjsNode(gpu: boolean): Promise<typeof tfCore> {
  const cpu = await import('@tensorflow/tfjs-backend-cpu');
  for (const k of tfCore.getKernelsForBackend('cpu')) {
    if (!tfCore.getKernel(k.kernelName, 'tensorflow'))
      tfCore.registerKernel({ ...k, backendName: 'tensorflow' });
  }
  if (tfCore.findBackend('tensorflow') || tfCore.findBackendFactory('tensorflow'))
    tfCore.removeBackend('tensorflow');
  tfCore.registerBackend(
    'tensorflow',
    () => Object.assign(new cpu.MathBackendCPU(), { isUsingGpuDevice: gpu }),
    0,
  );
  return { ...tfCore };
}

describe('node engines through the tfjs API (stand-in module)', () => {
  afterAll(() => {
    if (tfCore.findBackendFactory('tensorflow')) tfCore.removeBackend('tensorflow');
  });

  it('tfjs-node: picked first when present, runs on the cpu', async () => {
    const tfjsNode = await fakeTfjsNode(false);
    const be = await createTfjsBackend({ modules: { ...onlyCpu, '@tensorflow/tfjs-node': tfjsNode } });
    expect(be.engine).toBe('node');
    expect(be.device).toBe('cpu');
    expect(be.engineDescription).toBe('TensorFlow C++ (CPU)');
    const ops = new Ops(be);
    const y = await ops.tidy(async () =>
      ops.readF32(
        await ops.matmul(
          ops.upload(Float32Array.from([1, 2, 3, 4]), [2, 2]),
          ops.upload(Float32Array.from([1, 1, 0, 1]), [2, 2]),
          { transposeB: true },
        ),
      ),
    );
    expect(Array.from(y)).toEqual([3, 2, 7, 4]);
  });

  it('tfjs-node-gpu: device cuda when TensorFlow sees a GPU, an error when it does not', async () => {
    const noGpu = await fakeTfjsNode(false);
    await expect(
      createTfjsBackend({ device: 'cuda', modules: { ...onlyCpu, '@tensorflow/tfjs-node-gpu': noGpu } }),
    ).rejects.toThrow(/tfjs engine 'node-gpu' failed to start: tfjs-node-gpu found no usable CUDA device/);
    const withGpu = await fakeTfjsNode(true);
    const be = await createTfjsBackend({ modules: { ...onlyCpu, '@tensorflow/tfjs-node-gpu': withGpu } });
    expect(be.engine).toBe('node-gpu');
    expect(be.device).toBe('cuda');
  });
});

describeBackendConformance('tfjs node path (stand-in on cpu kernels)', async () =>
  createTfjsBackend({ engine: 'node', modules: { '@tensorflow/tfjs-node': await fakeTfjsNode(false) } }),
);

describe('registry', () => {
  it("importing the package registers 'tfjs' at priority 5", async () => {
    await import('./index.js');
    expect(listBackends()).toContainEqual({ name: 'tfjs', priority: 5 });
    const be = await getBackend('tfjs', { engine: 'wasm' });
    expect(be.name).toBe('tfjs');
    expect((be as TfjsBackend).engine).toBe('wasm');
    await expect(getBackend('tfjs', { engine: 'webgpu', modules: onlyCpu })).rejects.toThrow(
      /backend 'tfjs' failed to initialise: tfjs engine 'webgpu' is not installed: pnpm add/,
    );
  });
});
