import { LineageError } from '../util/errors.js';
import type { FamilyMethod } from './family.js';
import type { CompressionMethod } from './method.js';
import type { OptionsSchema, z } from './options.js';

export type { MethodOption } from './options.js';

/** The schema of a family's sizes: a list of numbers (see `decreasingSizes`). */
export type SizesSchema = z.ZodType<number[]>;

/** What `lineage family` asks of a method: members at these sizes, each recovered for this many tokens. */
export interface FamilyRequest {
  /** Decreasing sizes, as the method measures them (fractions of the decomposable parameters for svd/plrd). */
  sizes: number[];
  /** Recovery tokens per member (0: none). */
  recoverTokens: number;
}

/** How a method yields members at given sizes (`lineage family --method NAME --schedule …`). */
export interface FamilyDefinition<S extends OptionsSchema = OptionsSchema> {
  /** Option keys the family's sizes and recovery budget stand in for (not offered as flags by `family`). */
  replaces: readonly string[];
  /**
   * The schema of the sizes (e.g. `decreasingSizes(fraction)`), the one `create`'s method checks them with:
   * a host validates `--schedule` by it, naming the flag, before calling `create`. Default: decreasing
   * positive numbers.
   */
  sizes?: SizesSchema;
  /** The family method, from the other options (validated by the schema without `replaces`). */
  create(options: z.output<S>, request: FamilyRequest): FamilyMethod;
}

/** How the CLI (or any host) finds a method by name and builds it from its declared options. */
export interface MethodDefinition<S extends OptionsSchema = OptionsSchema> {
  name: string;
  description: string;
  /** Package that defines it, e.g. '@lineage/svd'. */
  package: string;
  /**
   * The method's options, declared once (see `z` and OptionMeta): their type, validation, flags and help
   * all derive from this schema.
   */
  options: S;
  create(options: z.output<S>): CompressionMethod;
  /** Present when the method yields family members at given sizes. */
  family?: FamilyDefinition<S>;
}

/** Types a definition by its schema (`create` gets `z.infer` of it); registers nothing. */
export function defineMethod<S extends OptionsSchema>(def: MethodDefinition<S>): MethodDefinition<S> {
  return def;
}

const METHODS = Symbol.for('@lineage/core/methods');
// biome-ignore lint/suspicious/noExplicitAny: definitions of any schema share the one registry
type AnyDefinition = MethodDefinition<any>;
type Global = typeof globalThis & { [METHODS]?: Map<string, AnyDefinition> };

function methods(): Map<string, AnyDefinition> {
  const g = globalThis as Global;
  g[METHODS] ??= new Map();
  return g[METHODS];
}

export function registerMethod<S extends OptionsSchema>(def: MethodDefinition<S>): void {
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
