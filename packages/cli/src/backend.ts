import { type Backend, getBackend, LineageError, listBackends } from '@lineage/core';
import { UsageError } from './commands/common.js';
import { log, logSoon } from './output.js';

/** Optional backend packages the CLI loads when they are installed (each registers itself on import). */
const OPTIONAL_BACKENDS: Record<string, string> = {
  onnxruntime: '@lineage/backend-onnxruntime',
  tfjs: '@lineage/backend-tfjs',
};

async function loadOptionalBackends(): Promise<string[]> {
  const missing: string[] = [];
  for (const [name, pkg] of Object.entries(OPTIONAL_BACKENDS)) {
    try {
      await import(pkg);
    } catch {
      missing.push(name);
    }
  }
  return missing;
}

export interface BackendFlags {
  backend?: string;
  device?: string;
}

/** Resolves --backend/--device (default: the fastest available) and says on stderr which one runs. */
export async function selectBackend(flags: BackendFlags): Promise<Backend> {
  const missing = await loadOptionalBackends();
  if (flags.backend && missing.includes(flags.backend)) {
    throw new UsageError(
      '--backend',
      flags.backend,
      `not installed: pnpm add ${OPTIONAL_BACKENDS[flags.backend]} (or npm i)`,
    );
  }
  const options = flags.device ? { device: flags.device } : {};
  let backend: Backend;
  try {
    backend = await getBackend(flags.backend, options);
  } catch (e) {
    if (!(e instanceof LineageError)) throw e;
    // named by the flag at fault: a backend that does not exist, else the device none could run on
    if (flags.backend && !listBackends().some((b) => b.name === flags.backend))
      throw new UsageError('--backend', flags.backend, e.message);
    if (flags.device) throw new UsageError('--device', flags.device, e.message);
    if (flags.backend) throw new UsageError('--backend', flags.backend, e.message);
    throw e;
  }
  const hint =
    !flags.backend && backend.name === 'js' && missing.length
      ? ` (faster: install ${missing.map((m) => OPTIONAL_BACKENDS[m]).join(' or ')})`
      : '';
  logSoon(`backend: ${describeBackend(backend)}${hint}`);
  return backend;
}

/** 'tfjs (wasm engine, cpu)' — backends that run on several engines say which one started. */
export function describeBackend(backend: Backend): string {
  const engine = (backend as Backend & { engineDescription?: unknown }).engineDescription;
  return typeof engine === 'string' && engine
    ? `${backend.name} (${engine} engine, ${backend.device})`
    : `${backend.name} (${backend.device})`;
}

export function backendNames(): string[] {
  return [...new Set([...listBackends().map((b) => b.name), ...Object.keys(OPTIONAL_BACKENDS)])];
}
