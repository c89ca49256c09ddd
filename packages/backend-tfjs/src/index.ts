/**
 * @lineage/backend-tfjs: importing this entry point registers the `tfjs` backend with Lineage's registry
 * (priority 5). Nothing heavy loads until the backend is first requested; use `./base` for the
 * side-effect-free API.
 */
import { registerBackend } from '@lineage/core';
import { createTfjsBackend } from './base.js';

registerBackend('tfjs', createTfjsBackend, 5);

export {
  createTfjsBackend,
  ENGINE_ORDER,
  ENGINE_PACKAGES,
  EngineMissingError,
  type EngineName,
  installCommand,
  TfjsBackend,
  type TfjsBackendOptions,
} from './base.js';
export type { EngineModuleName, EngineModules, LoadedEngine } from './load-engine.js';
