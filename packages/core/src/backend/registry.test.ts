import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend, BackendFactory } from './backend.js';
import { createJsBackend } from './js/js-backend.js';
import { getBackend, listBackends, registerBackend, resetBackends, useBackend } from './registry.js';

interface SharedState {
  entries: Map<string, { name: string; factory: BackendFactory; priority: number }>;
  instances: Map<string, Promise<Backend>>;
}
const KEY = Symbol.for('@lineage/core');

function shared(): SharedState {
  // Touch the registry so its state exists, then read it the way a second copy of core would.
  listBackends();
  const s = (globalThis as Record<symbol, unknown>)[KEY] as SharedState | undefined;
  if (!s) throw new Error('registry state is not on globalThis');
  return s;
}

let saved: [string, { name: string; factory: BackendFactory; priority: number }][] = [];

beforeEach(() => {
  saved = [...shared().entries];
  resetBackends();
});

afterEach(() => {
  const s = shared();
  s.entries.clear();
  for (const [k, v] of saved) s.entries.set(k, v);
  resetBackends();
});

const failing =
  (msg: string): BackendFactory =>
  async () => {
    throw new Error(msg);
  };

describe('backend registry', () => {
  it('has js built in and returns it by default', async () => {
    expect(listBackends()).toContainEqual({ name: 'js', priority: 0 });
    const b = await getBackend();
    expect(b.name).toBe('js');
    expect(b.device).toBe('cpu');
    expect(await getBackend('js')).toBe(b); // initialised once
  });

  it('names the registered backends when asked for an unknown one', async () => {
    registerBackend('other', createJsBackend, -1);
    await expect(getBackend('nope')).rejects.toThrow(/unknown backend 'nope' \(registered: js, other\)/);
  });

  it('falls back past failing backends, and lists every failure in one error', async () => {
    registerBackend('bad1', failing('boom one'), 10);
    registerBackend('bad2', failing('boom two'), 5);
    expect((await getBackend()).name).toBe('js');
    shared().entries.delete('js');
    resetBackends();
    const err = (await getBackend().then(
      () => undefined,
      (e: unknown) => e,
    )) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/no backend could be initialised/);
    expect(err.message).toContain('bad1: boom one');
    expect(err.message).toContain('bad2: boom two');
    await expect(getBackend('bad1')).rejects.toThrow(/backend 'bad1' failed to initialise: boom one/);
  });

  it('refuses a different factory under the same name and priority', () => {
    const f: BackendFactory = async () => createJsBackend({});
    expect(() => registerBackend('js', f, 0)).toThrow(/already registered/);
    expect(() => registerBackend('js', createJsBackend, 0)).not.toThrow(); // same factory: no-op
    registerBackend('js', f, 1); // a different priority replaces deliberately
    expect(listBackends()[0]).toEqual({ name: 'js', priority: 1 });
  });

  it('keeps its state on a global symbol shared by every copy of core', async () => {
    const s = shared();
    expect(s.entries.get('js')?.factory).toBe(createJsBackend);
    // A second copy of @lineage/core would register into the same map.
    const custom = await createJsBackend({});
    s.entries.set('copy2', { name: 'copy2', factory: async () => custom, priority: 50 });
    expect(listBackends()[0]).toEqual({ name: 'copy2', priority: 50 });
    expect(await getBackend()).toBe(custom);
    expect(await useBackend('js')).not.toBe(custom);
    expect((await getBackend()).name).toBe('js');
  });
});
