import { LineageError } from '../util/errors.js';
import type { CompressionMethod } from './method.js';

/** A method option as the CLI shows and parses it (`lineage compress --method NAME --help`). */
export interface MethodOption {
  name: string;
  type: 'number' | 'string' | 'boolean' | 'numbers';
  description: string;
  default?: number | string | boolean | number[];
  required?: boolean;
}

/** How the CLI (or any host) finds a method by name and builds it from parsed options. */
export interface MethodDefinition {
  name: string;
  description: string;
  /** Package that defines it, e.g. '@lineage/svd'. */
  package: string;
  options: MethodOption[];
  create(options: Record<string, unknown>): CompressionMethod;
}

const METHODS = Symbol.for('@lineage/core/methods');
type Global = typeof globalThis & { [METHODS]?: Map<string, MethodDefinition> };

function methods(): Map<string, MethodDefinition> {
  const g = globalThis as Global;
  g[METHODS] ??= new Map();
  return g[METHODS];
}

export function registerMethod(def: MethodDefinition): void {
  const old = methods().get(def.name);
  if (old && old !== def)
    throw new Error(`registerMethod: method '${def.name}' is already registered by ${old.package}`);
  methods().set(def.name, def);
}

export function listMethods(): MethodDefinition[] {
  return [...methods().values()];
}

export function getMethod(name: string): MethodDefinition {
  const m = methods().get(name);
  if (!m) {
    const known = [...methods().keys()];
    throw new LineageError(`unknown method '${name}' (registered: ${known.join(', ') || 'none'})`);
  }
  return m;
}
