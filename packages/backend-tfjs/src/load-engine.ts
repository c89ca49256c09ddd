/**
 * Engine loading: the ONLY file that imports TensorFlow.js engine packages. Every import is a dynamic
 * `import()` on first use (so `import '@lineage/backend-tfjs'` stays cheap), every module can be injected
 * instead (`options.modules`, for tests and bundlers), and a missing package fails with the exact command
 * that installs it.
 *
 * Engines, best first: tfjs-node-gpu (TensorFlow C++ with CUDA) → tfjs-node (TensorFlow C++ on the CPU) →
 * WebGPU (tfjs-backend-webgpu on Dawn, the `webgpu` package) → wasm (XNNPACK, SIMD) → cpu (pure JS).
 */
import { existsSync, readdirSync } from 'node:fs';
import { LineageError } from '@lineage/core';
import type * as tfc from '@tensorflow/tfjs-core';
import pkg from '../package.json' with { type: 'json' };

/** The tfjs API namespace an engine runs on (tfjs-core, or tfjs-node's re-export of the whole API). */
export type Tf = typeof tfc;

export type EngineName = 'node-gpu' | 'node' | 'webgpu' | 'wasm' | 'cpu';

/** Automatic selection order. */
export const ENGINE_ORDER: readonly EngineName[] = ['node-gpu', 'node', 'webgpu', 'wasm', 'cpu'];

export type EngineModuleName =
  | '@tensorflow/tfjs-core'
  | '@tensorflow/tfjs-node-gpu'
  | '@tensorflow/tfjs-node'
  | '@tensorflow/tfjs-backend-webgpu'
  | 'webgpu'
  | '@tensorflow/tfjs-backend-wasm'
  | '@tensorflow/tfjs-backend-cpu';

/** Injected modules by package name; `null` marks a package as not installed, `undefined` imports it. */
export type EngineModules = Partial<Record<EngineModuleName, unknown>>;

export interface EngineOptions {
  /** Force one engine (no fallback). */
  engine?: EngineName;
  /** 'cuda' → node-gpu, 'webgpu' → webgpu, 'cpu' → the best CPU engine (node → wasm → cpu). */
  device?: string;
  /** Modules to use instead of importing them (`null`: behave as if the package were missing). */
  modules?: EngineModules;
  /** Dawn backends tried in order for WebGPU (default: vulkan, then opengles on Linux; the platform default elsewhere). */
  dawnBackends?: readonly string[];
  /** Let automatic selection take a software WebGPU adapter (lavapipe, llvmpipe, SwiftShader); default false. */
  allowSoftwareAdapter?: boolean;
}

export interface LoadedEngine {
  tf: Tf;
  engine: EngineName;
  /** Where kernels run: 'cuda', 'webgpu' or 'cpu'. */
  device: 'cuda' | 'webgpu' | 'cpu';
  /** The tfjs backend name the engine registers ('tensorflow', 'webgpu', 'wasm', 'cpu'). */
  tfBackend: string;
  /** Human-readable details (SIMD, GPU adapter and Dawn backend, …). */
  description: string;
  /** The first GPU error reported since the last call (validation errors make results garbage). */
  takeError?: () => string | undefined;
}

/** The npm package(s) each engine needs. */
export const ENGINE_PACKAGES: Record<EngineName, readonly string[]> = {
  'node-gpu': ['@tensorflow/tfjs-node-gpu'],
  node: ['@tensorflow/tfjs-node'],
  webgpu: ['@tensorflow/tfjs-backend-webgpu', 'webgpu'],
  wasm: ['@tensorflow/tfjs-backend-wasm'],
  cpu: ['@tensorflow/tfjs-backend-cpu'],
};

/**
 * tfjs packages are versioned together; engines must match the tfjs-core in use. The version this package is
 * built and tested against is its pinned tfjs-backend-cpu dependency (package.json).
 */
const TFJS_VERSION: string = pkg.dependencies['@tensorflow/tfjs-backend-cpu'];

/** The exact install command for packages (tfjs ones pinned to the tfjs-core version in use). */
export function installCommand(packages: readonly string[], tfjsVersion = TFJS_VERSION): string {
  const spec = packages.map((p) => (p.startsWith('@tensorflow/') ? `${p}@${tfjsVersion}` : p)).join(' ');
  return `pnpm add ${spec} (or npm i ${spec})`;
}

/** An engine that is not installed (as opposed to one that failed to start). */
export class EngineMissingError extends LineageError {
  constructor(
    readonly engine: EngineName,
    readonly packages: readonly string[],
    tfjsVersion?: string,
  ) {
    super(`tfjs engine '${engine}' is not installed: ${installCommand(packages, tfjsVersion)}`);
  }
}

class ModuleMissing extends Error {
  constructor(readonly pkg: string) {
    super(`${pkg} is not installed`);
  }
}

/**
 * Whether an import failed because the package itself is absent: Node's ERR_MODULE_NOT_FOUND, or a
 * bundler's stand-in for a missing optional peer (Vite: `Could not resolve "pkg" … Is it installed?`).
 */
function isNotFound(e: unknown, pkg: string): boolean {
  const err = e as { code?: string; message?: string } | undefined;
  const message = typeof err?.message === 'string' ? err.message : '';
  // The package itself, quoted: a missing file inside an installed package (a native binding) is not this.
  if (!message.includes(`'${pkg}'`) && !message.includes(`"${pkg}"`)) return false;
  return (
    err?.code === 'ERR_MODULE_NOT_FOUND' ||
    err?.code === 'MODULE_NOT_FOUND' ||
    /could not resolve|cannot find (package|module)/i.test(message)
  );
}

/** Export probed to tell a module namespace from a CommonJS `default` wrapper. */
const PROBE: Partial<Record<EngineModuleName, string>> = {
  '@tensorflow/tfjs-core': 'tensor',
  '@tensorflow/tfjs-node': 'tensor',
  '@tensorflow/tfjs-node-gpu': 'tensor',
  '@tensorflow/tfjs-backend-webgpu': 'WebGPUBackend',
  webgpu: 'create',
};

/** The namespace itself, or module.exports when a CommonJS package's named exports were not detected. */
function unwrap<T>(m: unknown, probe: string | undefined): T {
  const o = m as Record<string, unknown>;
  if (probe && o && !(probe in o)) {
    const d = o.default as Record<string, unknown> | undefined;
    if (d && typeof d === 'object' && probe in d) return d as T;
  }
  return m as T;
}

async function load<T>(pkg: EngineModuleName, modules: EngineModules | undefined): Promise<T> {
  const m = modules?.[pkg];
  if (m === null) throw new ModuleMissing(pkg);
  if (m !== undefined) return m as T;
  try {
    return unwrap<T>(await import(/* @vite-ignore */ pkg), PROBE[pkg]);
  } catch (e) {
    if (isNotFound(e, pkg)) throw new ModuleMissing(pkg);
    throw new Error(`${pkg} failed to load: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

/** Engines to try for the options, in order, and whether the choice was forced (no silent fallback). */
export function engineCandidates(options: EngineOptions): { engines: EngineName[]; forced: boolean } {
  const { engine, device } = options;
  let byDevice: EngineName[] | undefined;
  if (device !== undefined) {
    if (device === 'cuda' || device === 'gpu') byDevice = ['node-gpu'];
    else if (device === 'webgpu') byDevice = ['webgpu'];
    else if (device === 'cpu') byDevice = ['node', 'wasm', 'cpu'];
    else {
      throw new LineageError(`the tfjs backend has no device '${device}' (it offers cpu, webgpu and cuda)`);
    }
  }
  if (engine !== undefined) {
    if (!ENGINE_ORDER.includes(engine)) {
      throw new LineageError(`unknown tfjs engine '${String(engine)}' (engines: ${ENGINE_ORDER.join(', ')})`);
    }
    if (byDevice && !byDevice.includes(engine)) {
      throw new LineageError(`tfjs engine '${engine}' does not run on device '${device}'`);
    }
    return { engines: [engine], forced: true };
  }
  if (byDevice) return { engines: byDevice, forced: device !== 'cpu' };
  return { engines: [...ENGINE_ORDER], forced: false };
}

/**
 * Loads and activates the best available engine (or the forced one). Automatic selection skips missing
 * engines silently and software WebGPU adapters deliberately; a forced engine that is missing fails with
 * the install command. When nothing starts, one error lists every engine's reason.
 */
export async function loadEngine(options: EngineOptions = {}): Promise<LoadedEngine> {
  const { engines, forced } = engineCandidates(options);
  const failures: string[] = [];
  for (const engine of engines) {
    try {
      return await startEngine(engine, options, forced);
    } catch (e) {
      if (e instanceof ModuleMissing) {
        const err = new EngineMissingError(engine, ENGINE_PACKAGES[engine], await tfjsVersion(options));
        if (forced) throw err;
        failures.push(`${engine}: not installed`);
        continue;
      }
      if (forced) {
        throw new LineageError(`tfjs engine '${engine}' failed to start: ${firstLine(e)}`, undefined, {
          cause: e,
        });
      }
      failures.push(`${engine}: ${firstLine(e)}`);
    }
  }
  throw new LineageError(`no tfjs engine could start (${failures.join('; ')})`);
}

async function tfjsVersion(options: EngineOptions): Promise<string> {
  try {
    const tf = await load<Tf>('@tensorflow/tfjs-core', options.modules);
    return tf.version_core ?? TFJS_VERSION;
  } catch {
    return TFJS_VERSION;
  }
}

async function activate(tf: Tf, name: string): Promise<void> {
  if (tf.getBackend() === name) return;
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`tfjs could not initialise its '${name}' backend`);
}

async function startEngine(
  engine: EngineName,
  options: EngineOptions,
  forced: boolean,
): Promise<LoadedEngine> {
  switch (engine) {
    case 'node-gpu':
    case 'node':
      return startNode(engine, options);
    case 'webgpu':
      return startWebgpu(options, forced);
    case 'wasm': {
      const tf = await load<Tf>('@tensorflow/tfjs-core', options.modules);
      await load('@tensorflow/tfjs-backend-wasm', options.modules); // registers the 'wasm' backend
      await activate(tf, 'wasm');
      const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
      return { tf, engine, device: 'cpu', tfBackend: 'wasm', description: `wasm${simd ? ' (SIMD)' : ''}` };
    }
    case 'cpu': {
      const tf = await load<Tf>('@tensorflow/tfjs-core', options.modules);
      await load('@tensorflow/tfjs-backend-cpu', options.modules); // registers the 'cpu' backend
      await activate(tf, 'cpu');
      // The cpu engine greets Node users on first write with a hint to install tfjs-node; we say that ourselves.
      const be = tf.backend() as { firstUse?: boolean };
      if ('firstUse' in be) be.firstUse = false;
      return { tf, engine, device: 'cpu', tfBackend: 'cpu', description: 'cpu (pure JavaScript)' };
    }
  }
}

/**
 * tfjs-node and tfjs-node-gpu: TensorFlow's C++ runtime. Each package re-exports the whole tfjs API and
 * registers the 'tensorflow' backend, so its module is the namespace we run on.
 */
async function startNode(engine: 'node' | 'node-gpu', options: EngineOptions): Promise<LoadedEngine> {
  const pkg = engine === 'node-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
  const tf = await load<Tf>(pkg, options.modules);
  await activate(tf, 'tensorflow');
  const gpu = (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice === true;
  if (engine === 'node-gpu' && !gpu) {
    throw new Error('tfjs-node-gpu found no usable CUDA device (check the CUDA/cuDNN install)');
  }
  return {
    tf,
    engine,
    device: gpu ? 'cuda' : 'cpu',
    tfBackend: 'tensorflow',
    description: `TensorFlow C++ (${gpu ? 'CUDA' : 'CPU'})`,
  };
}

// ---------------------------------------------------------------------------------------------------
// WebGPU through Dawn (the `webgpu` package)

/** The few WebGPU shapes used here (no dependency on @webgpu/types). */
interface GpuAdapterInfo {
  vendor?: string;
  architecture?: string;
  description?: string;
  device?: string;
}
interface GpuAdapter {
  info?: GpuAdapterInfo;
  limits: Record<string, number>;
  features: { has(name: string): boolean };
  requestDevice(descriptor?: object): Promise<GpuDevice>;
}
interface GpuDevice {
  destroy(): void;
  lost?: Promise<unknown>;
  onuncapturederror?: ((event: { error?: { message?: string } }) => void) | null;
}
interface Gpu {
  requestAdapter(options?: object): Promise<GpuAdapter | null>;
}
interface DawnModule {
  create(flags: string[]): Gpu;
  globals: Record<string, unknown>;
}
interface WebgpuBackendModule {
  WebGPUBackend: new (device: GpuDevice, adapterInfo?: GpuAdapterInfo) => tfc.KernelBackend;
}

interface DawnState {
  errors: string[];
  adapter: GpuAdapter;
  device: GpuDevice;
  dawnBackend: string;
  description: string;
  software: boolean;
}

/** One Dawn device per process and tfjs-core, shared by every backend instance on the webgpu engine. */
const dawnStates = new WeakMap<object, Promise<DawnState>>();

function defaultDawnBackends(): string[] {
  return process.platform === 'linux' ? ['vulkan', 'opengles'] : [''];
}

function describeAdapter(info: GpuAdapterInfo | undefined): string {
  const parts = [info?.description, info?.device, info?.vendor].filter((s): s is string => !!s);
  return parts[0] ?? 'unknown adapter';
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|software/i;

async function openDawn(dawn: DawnModule, options: EngineOptions): Promise<DawnState> {
  const g = globalThis as Record<string, unknown>;
  const tried: string[] = [];
  for (const backend of options.dawnBackends ?? defaultDawnBackends()) {
    // Mesa's EGL needs a platform without a display server for the OpenGL ES backend.
    if (backend === 'opengles' || backend === 'opengl') process.env.EGL_PLATFORM ??= 'surfaceless';
    let adapter: GpuAdapter | null = null;
    let gpu: Gpu;
    try {
      gpu = dawn.create(backend ? [`backend=${backend}`] : []);
      // OpenGL ES only offers WebGPU's compatibility feature level.
      adapter = await gpu.requestAdapter(
        backend === 'opengles' || backend === 'opengl'
          ? { featureLevel: 'compatibility' }
          : { powerPreference: 'high-performance' },
      );
    } catch (e) {
      tried.push(`${backend || 'default'}: ${firstLine(e)}`);
      continue;
    }
    if (!adapter) {
      tried.push(`${backend || 'default'}: no adapter`);
      continue;
    }
    const limits = adapter.limits;
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
        maxBufferSize: limits.maxBufferSize,
        maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      },
    });
    const errors: string[] = [];
    device.onuncapturederror = (event) => {
      if (errors.length < 8) errors.push((event.error?.message ?? 'unknown GPU error').split('\n')[0]!);
    };
    // tfjs-backend-webgpu checks navigator.gpu when it constructs its backend.
    g.navigator ??= {};
    const nav = g.navigator as Record<string, unknown>;
    nav.gpu ??= gpu;
    const name = describeAdapter(adapter.info);
    return {
      errors,
      adapter,
      device,
      dawnBackend: backend || 'default',
      description: `${name} via Dawn ${backend || 'default'}`,
      software: SOFTWARE.test(`${name} ${adapter.info?.architecture ?? ''}`),
    };
  }
  throw new Error(
    `no WebGPU adapter (${tried.join('; ')}); on Linux without a GPU run scripts/setup-vulkan.sh (lavapipe) or scripts/setup-gles.sh`,
  );
}

/**
 * Whether a Linux machine has a GPU device node (DRM render node or NVIDIA). Without one, Dawn can only
 * offer a software adapter, so automatic selection does not start Dawn at all (it takes a second and
 * prints warnings).
 */
function linuxHasGpuNode(): boolean {
  try {
    if (existsSync('/dev/nvidia0')) return true;
    return readdirSync('/dev/dri').some((f) => f.startsWith('renderD'));
  } catch {
    return false;
  }
}

async function startWebgpu(options: EngineOptions, forced: boolean): Promise<LoadedEngine> {
  const tf = await load<Tf>('@tensorflow/tfjs-core', options.modules);
  const dawn = await load<DawnModule>('webgpu', options.modules);
  // WebGPU's constants (GPUBufferUsage, …) before tfjs-backend-webgpu loads; no device is opened yet.
  const g = globalThis as Record<string, unknown>;
  for (const [k, v] of Object.entries(dawn.globals)) if (!(k in g)) g[k] = v;
  const mod = await load<WebgpuBackendModule>('@tensorflow/tfjs-backend-webgpu', options.modules);
  if (!forced && !options.allowSoftwareAdapter && process.platform === 'linux' && !linuxHasGpuNode()) {
    throw new Error(
      "no GPU device node (/dev/dri/renderD*, /dev/nvidia0); force software WebGPU with engine 'webgpu'",
    );
  }
  let p = dawnStates.get(tf);
  if (!p) {
    p = openDawn(dawn, options);
    dawnStates.set(tf, p);
    p.catch(() => dawnStates.delete(tf));
  }
  const state = await p;
  if (state.software && !forced && !options.allowSoftwareAdapter) {
    throw new Error(
      `WebGPU adapter '${state.description}' is a software rasterizer (slower than wasm); force it with engine 'webgpu'`,
    );
  }
  if (tf.engine().registry.webgpu === undefined) {
    // Importing the package may have registered its own factory (which asks for a default adapter);
    // ours hands tfjs the device opened above.
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
    tf.registerBackend('webgpu', async () => new mod.WebGPUBackend(state.device, state.adapter.info), 0);
  }
  await activate(tf, 'webgpu');
  return {
    tf,
    engine: 'webgpu',
    device: 'webgpu',
    tfBackend: 'webgpu',
    description: state.description,
    takeError: () => {
      const e = state.errors[0];
      state.errors.length = 0;
      return e;
    },
  };
}
