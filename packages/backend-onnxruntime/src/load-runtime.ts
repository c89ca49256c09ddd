// The one file that touches onnxruntime-node (as in onnxruntime's js/node/lib/binding.ts): it is loaded by
// dynamic import() on first use, or injected by the caller (`options.ort`), so importing this package costs
// nothing until a backend is created, and a missing runtime fails with the command that installs it.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { LineageError } from '@lineage/core';
import type * as OrtNode from 'onnxruntime-node';
import pkg from '../package.json' with { type: 'json' };

/** The onnxruntime-node module (or a compatible object injected through `options.ort`). */
export type OrtModule = typeof OrtNode;
export type OrtTensor = OrtNode.Tensor;
export type OrtSession = OrtNode.InferenceSession;
export type OrtSessionOptions = OrtNode.InferenceSession.SessionOptions;

/** The version this package is built and tested against: its pinned dependency (package.json). */
export const ORT_VERSION: string = pkg.dependencies['onnxruntime-node'];

export const INSTALL_COMMAND = `npm install onnxruntime-node@${ORT_VERSION}`;

function isModule(m: unknown): m is OrtModule {
  const o = m as Partial<OrtModule> | null;
  return (
    !!o &&
    typeof o === 'object' &&
    typeof o.InferenceSession?.create === 'function' &&
    typeof o.Tensor === 'function'
  );
}

/** Whether an import failure (or an error it wraps) says the package is not installed. */
function notFound(e: unknown, depth = 0): boolean {
  if (!e || typeof e !== 'object' || depth > 4) return false;
  const { code, message, cause } = e as { code?: string; message?: string; cause?: unknown };
  if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return true;
  if (/Cannot find (module|package) '?onnxruntime-node/.test(message ?? '')) return true;
  return notFound(cause, depth + 1);
}

/**
 * Returns onnxruntime-node: `injected` when given (validated), else the installed package. Fails with a
 * one-line LineageError naming the exact install command when it is missing or broken.
 */
export async function loadRuntime(injected?: unknown): Promise<OrtModule> {
  if (injected !== undefined) {
    const m = (injected as { default?: unknown }).default ?? injected;
    if (!isModule(m)) {
      throw new LineageError(
        'options.ort is not the onnxruntime-node module (it needs InferenceSession.create and Tensor)',
      );
    }
    return m;
  }
  // onnxruntime-node 1.30's Linux build starts Microsoft's telemetry SDK with every process: it leaves an
  // empty mat-debug-<pid>.log (and a .ses file) in the temp directory per run and would upload events where
  // it finds a CA bundle. A local compression tool should do neither unless asked, so it is off unless the
  // user sets ORT_DISABLE_TELEMETRY themselves (read when the runtime creates its environment).
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
  let mod: unknown;
  try {
    mod = await import('onnxruntime-node');
  } catch (e) {
    const missing = notFound(e);
    throw new LineageError(
      missing
        ? `onnxruntime-node is not installed; install it with: ${INSTALL_COMMAND}`
        : `onnxruntime-node failed to load (${(e as Error).message?.split('\n')[0]}); reinstall it with: ${INSTALL_COMMAND}`,
      undefined,
      { cause: e },
    );
  }
  const m = (mod as { default?: unknown }).default ?? mod;
  if (!isModule(m))
    throw new LineageError(`onnxruntime-node did not load correctly; reinstall it with: ${INSTALL_COMMAND}`);
  return m;
}

/** The execution providers the loaded onnxruntime build knows, with whether their libraries are present. */
export function supportedProviders(ort: OrtModule): { name: string; bundled: boolean }[] {
  const list = (ort as { listSupportedBackends?: () => { name: string; bundled: boolean }[] })
    .listSupportedBackends;
  return typeof list === 'function' ? list() : [{ name: 'cpu', bundled: true }];
}

/**
 * Folder of onnxruntime-node's native binaries (where its install script puts the CUDA/TensorRT provider
 * libraries), or undefined when the package cannot be resolved (an injected module, say).
 */
export function nativeBinFolder(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const pkg = require.resolve('onnxruntime-node/package.json');
    return join(dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** onnxruntime-node's package folder, for the CUDA opt-in command. */
export function packageFolder(): string | undefined {
  const bin = nativeBinFolder();
  return bin ? join(bin, '..', '..', '..', '..') : undefined;
}
