import { LineageError } from '../util/errors.js';
import type { Backend, BackendFactory, BackendOptions } from './backend.js';
import { createJsBackend } from './js/js-backend.js';

interface Entry {
  name: string;
  factory: BackendFactory;
  priority: number;
}

interface RegistryState {
  entries: Map<string, Entry>;
  /** Initialised backends by `name|device`; init runs once even when requested concurrently. */
  instances: Map<string, Promise<Backend>>;
  preferred?: { name: string; options: BackendOptions };
}

// Registry state lives on a global symbol so two copies of @lineage/core in one process (a plugin that
// bundled its own, say) still share one registry.
const KEY = Symbol.for('@lineage/core');
type Global = typeof globalThis & { [KEY]?: RegistryState };

function state(): RegistryState {
  const g = globalThis as Global;
  // The built-in pure-TypeScript backend is always present, at the lowest default priority.
  g[KEY] ??= {
    entries: new Map([['js', { name: 'js', factory: createJsBackend, priority: 0 }]]),
    instances: new Map(),
  };
  return g[KEY];
}

/**
 * Registers a backend factory. Higher priority wins when no backend is named. Registering the same name
 * again with the same factory is a no-op; with a different factory at the same priority it throws (silent
 * replacement hides bugs); a different priority replaces the entry deliberately.
 */
export function registerBackend(name: string, factory: BackendFactory, priority = 0): void {
  const s = state();
  const old = s.entries.get(name);
  if (old) {
    if (old.factory === factory && old.priority === priority) return;
    if (old.priority === priority) {
      throw new Error(`registerBackend: backend '${name}' is already registered with priority ${priority}`);
    }
  }
  s.entries.set(name, { name, factory, priority });
  for (const key of [...s.instances.keys()]) if (key.startsWith(`${name}|`)) s.instances.delete(key);
}

export function listBackends(): { name: string; priority: number }[] {
  return [...state().entries.values()]
    .sort((a, b) => b.priority - a.priority)
    .map(({ name, priority }) => ({ name, priority }));
}

// Options may carry injected modules (objects); only primitive settings distinguish instances.
function instanceKey(name: string, options: BackendOptions): string {
  const prims = Object.entries(options)
    .filter(([, v]) => v === null || typeof v !== 'object')
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return `${name}|${JSON.stringify(prims)}`;
}

function init(entry: Entry, options: BackendOptions): Promise<Backend> {
  const s = state();
  const key = instanceKey(entry.name, options);
  let p = s.instances.get(key);
  if (!p) {
    p = entry.factory(options);
    s.instances.set(key, p);
    // A failed init may succeed later (e.g. after installing a package): do not cache failures.
    p.catch(() => s.instances.delete(key));
  }
  return p;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Resolves a backend: the named one, else the one chosen by `useBackend`, else the highest-priority
 * backend that initialises. When every candidate fails, one error lists each failure.
 */
export async function getBackend(name?: string, options: BackendOptions = {}): Promise<Backend> {
  const s = state();
  if (!name && s.preferred) return getBackend(s.preferred.name, { ...s.preferred.options, ...options });
  if (name) {
    const entry = s.entries.get(name);
    if (!entry) {
      const known = listBackends().map((b) => b.name);
      throw new LineageError(
        `unknown backend '${name}' (registered: ${known.join(', ') || 'none'}); install and import its package, e.g. @lineage/backend-${name}`,
      );
    }
    try {
      return await init(entry, options);
    } catch (e) {
      throw new LineageError(`backend '${name}' failed to initialise: ${message(e)}`, undefined, {
        cause: e,
      });
    }
  }
  const failures: string[] = [];
  for (const { name: n } of listBackends()) {
    const entry = s.entries.get(n)!;
    try {
      return await init(entry, options);
    } catch (e) {
      failures.push(`${n}: ${message(e)}`);
    }
  }
  throw new LineageError(
    failures.length ? `no backend could be initialised (${failures.join('; ')})` : 'no backend is registered',
  );
}

/** Makes `name` the default for later `getBackend()` calls, initialising it now so errors surface here. */
export async function useBackend(name: string, options: BackendOptions = {}): Promise<Backend> {
  const b = await getBackend(name, options);
  state().preferred = { name, options };
  return b;
}

/** Test helper: forget initialised instances and the preferred backend (registrations stay). */
export function resetBackends(): void {
  const s = state();
  s.instances.clear();
  s.preferred = undefined;
}
