import { describe, expect, it, vi } from 'vitest';

// The runtime is absent: importing it fails as Node does for a package that is not installed.
vi.mock('onnxruntime-node', () => {
  throw Object.assign(new Error("Cannot find package 'onnxruntime-node' imported from /app/x.js"), {
    code: 'ERR_MODULE_NOT_FOUND',
  });
});

describe('without onnxruntime-node installed', () => {
  it('fails with the exact install command', async () => {
    const { createOnnxruntimeBackend } = await import('./base.js');
    const err = await createOnnxruntimeBackend({}).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.name).toBe('LineageError');
    expect(err?.message).toBe(
      'onnxruntime-node is not installed; install it with: npm install onnxruntime-node@1.30.0',
    );
  });

  it('importing the package itself loads nothing (the runtime is imported on first use)', async () => {
    const mod = await import('./index.js');
    expect(typeof mod.createOnnxruntimeBackend).toBe('function');
  });
});
