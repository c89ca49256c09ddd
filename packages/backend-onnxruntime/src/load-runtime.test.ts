import { getBackend, listBackends } from '@lineage/core';
import { resetBackends } from '@lineage/core/testing';
import { describe, expect, it, vi } from 'vitest';
import { createOnnxruntimeBackend } from './base.js';
import { INSTALL_COMMAND, loadRuntime, nativeBinFolder } from './load-runtime.js';

describe('loading onnxruntime-node', () => {
  it('uses an injected module (options.ort) instead of importing one', async () => {
    const real = await loadRuntime();
    const create = vi.fn(real.InferenceSession.create.bind(real.InferenceSession));
    const injected = { ...real, InferenceSession: { ...real.InferenceSession, create } };
    const b = await createOnnxruntimeBackend({ ort: injected, smallOpThreshold: 0 });
    const x = b.upload(Float32Array.from([1, 2, 3]), [3]);
    expect(Array.from(await b.read(await b.unary('neg', x)))).toEqual([-1, -2, -3]);
    expect(create).toHaveBeenCalled();
    await b.close?.();
  });

  it('accepts a module namespace with a default export', async () => {
    const real = await loadRuntime();
    expect(await loadRuntime({ default: real })).toBe(real);
  });

  it('rejects an injected object that is not onnxruntime-node', async () => {
    await expect(createOnnxruntimeBackend({ ort: { foo: 1 } })).rejects.toThrow(
      /options\.ort is not the onnxruntime-node module/,
    );
  });

  it('validates the device and threads', async () => {
    await expect(createOnnxruntimeBackend({ device: 'tpu' })).rejects.toThrow(
      /cpu, webgpu, cuda or tensorrt/,
    );
    await expect(createOnnxruntimeBackend({ threads: 0 })).rejects.toThrow(/threads/);
    await expect(createOnnxruntimeBackend({ threads: 1.5 })).rejects.toThrow(/threads/);
  });

  it('names the install command in its constant', () => {
    expect(INSTALL_COMMAND).toBe('npm install onnxruntime-node@1.30.0');
  });
});

describe('cuda and tensorrt without onnxruntime GPU binaries', () => {
  const bin = nativeBinFolder();
  const cudaPresent = false; // this package never downloads them; the check below is what a user sees
  for (const device of ['cuda', 'tensorrt'] as const) {
    it(`device '${device}' fails in one line saying how to install the binaries`, async (ctx) => {
      const { existsSync } = await import('node:fs');
      const lib = `${bin}/libonnxruntime_providers_${device}.so`;
      if (cudaPresent || (bin && existsSync(lib))) ctx.skip(); // the binaries are installed here
      const err = await createOnnxruntimeBackend({ device }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err).toBeInstanceOf(Error);
      const msg = err!.message;
      expect(msg).not.toContain('\n');
      if (process.platform === 'linux' && process.arch === 'x64') {
        expect(msg).toMatch(/provider binaries are not installed/);
        expect(msg).toContain('ONNXRUNTIME_NODE_INSTALL=cuda12 node script/install');
      } else {
        expect(msg).toMatch(/Linux x64 only/);
      }
    });
  }
});

describe('registration', () => {
  it('importing the package registers onnxruntime above js', async () => {
    await import('./index.js');
    const names = listBackends();
    expect(names.find((b) => b.name === 'onnxruntime')?.priority).toBe(10);
    expect(names[0]?.name).not.toBe('js');
    resetBackends();
    const b = await getBackend('onnxruntime');
    expect(b.name).toBe('onnxruntime');
    expect(b.device).toBe('cpu');
    expect(await getBackend('onnxruntime')).toBe(b); // initialised once
    await expect(getBackend('onnxruntime', { device: 'cuda' })).rejects.toThrow(
      /onnxruntime' failed to initialise/,
    );
  });

  it('close() releases the sessions; later ops fail clearly', async () => {
    const b = await createOnnxruntimeBackend({ smallOpThreshold: 0 });
    const x = b.upload(new Float32Array(8).fill(2), [8]);
    await b.unary('sqrt', x);
    await b.close?.();
    await expect(b.unary('sqrt', x)).rejects.toThrow(/closed/);
  });
});
