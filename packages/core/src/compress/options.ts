import { z } from 'zod';
import { LineageError } from '../util/errors.js';

/**
 * Method options are declared once, as a zod object schema: `z.infer` gives their TypeScript type,
 * `parseOptions` validates them with one-line errors naming the field, and `describeOptions` gives the
 * flags, placeholders, defaults and help text a host (the `lineage` CLI) offers for them. zod is pure
 * TypeScript with no dependencies; its metadata registry lives on `globalThis`, so a plugin built against
 * its own copy of zod v4 declares options the same way. Per-field CLI metadata goes in `.meta(...)`
 * (see OptionMeta); cross-field rules belong in the method's factory, so that `.omit()` keeps working.
 */
export { z };

/** The options of a method: a zod object schema (plain, strict or loose). */
export type OptionsSchema = z.ZodObject<z.core.$ZodLooseShape, z.core.$ZodObjectConfig>;

/** What `.meta({...})` on one option's schema may say, beyond `description`. */
export interface OptionMeta {
  description?: string;
  /** Flag name without dashes (default: the key in kebab-case, `recoverTokens` → `recover-tokens`). */
  flag?: string;
  /** Placeholder in help (default: `value`, `list` for arrays). */
  placeholder?: string;
  /** false: a library-only option (e.g. an object), never a flag. */
  cli?: false;
}

/** One option as a host shows and parses it (derived from the schema by `describeOptions`). */
export interface MethodOption {
  /** Key in the options object. */
  key: string;
  /** Flag name without dashes. */
  name: string;
  /** How a host parses the flag's text: numbers accept k/M/B suffixes, `numbers` a comma list. */
  type: 'number' | 'integer' | 'string' | 'boolean' | 'numbers';
  description: string;
  placeholder: string;
  default?: number | string | boolean | number[];
  required?: boolean;
  /** The allowed values of an enum option. */
  choices?: string[];
}

interface JsonSchemaNode {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  items?: JsonSchemaNode;
  anyOf?: JsonSchemaNode[];
  [k: string]: unknown;
}

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function optionType(node: JsonSchemaNode, key: string): MethodOption['type'] {
  const t = Array.isArray(node.type) ? node.type.find((x) => x !== 'null') : node.type;
  if (t === 'number' || t === 'integer' || t === 'string' || t === 'boolean') return t;
  if (t === 'array' && (node.items?.type === 'number' || node.items?.type === 'integer')) return 'numbers';
  throw new Error(
    `option '${key}' is not a number, integer, string, enum, boolean or number array: give it .meta({ cli: false })`,
  );
}

/** The options of a schema as a host offers them, in declaration order (library-only options left out). */
export function describeOptions(schema: OptionsSchema): MethodOption[] {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode & {
    properties?: Record<string, JsonSchemaNode>;
    required?: string[];
  };
  const required = new Set(json.required ?? []);
  const out: MethodOption[] = [];
  for (const [key, node] of Object.entries(json.properties ?? {})) {
    if (node.cli === false) continue;
    const type = optionType(node, key);
    const choices = node.enum?.filter((x): x is string => typeof x === 'string');
    out.push({
      key,
      name: typeof node.flag === 'string' ? node.flag : kebab(key),
      type,
      description: node.description ?? '',
      placeholder:
        typeof node.placeholder === 'string' ? node.placeholder : type === 'numbers' ? 'list' : 'value',
      ...(node.default !== undefined ? { default: node.default as MethodOption['default'] } : {}),
      ...(required.has(key) ? { required: true } : {}),
      ...(choices?.length ? { choices } : {}),
    });
  }
  return out;
}

/**
 * Decreasing sizes, one family member each, every entry valid for `entry` (e.g. a fraction in (0, 1)): the
 * schema of a family method's sizes (`FamilyDefinition.sizes`, `lineage family --schedule`).
 */
export function decreasingSizes(entry: z.ZodNumber) {
  return z
    .array(entry)
    .min(1, 'is empty')
    .refine((xs) => xs.every((x, i) => i === 0 || x < xs[i - 1]!), 'must be decreasing');
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const k of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

/**
 * Validates options against their schema (defaults filled in); the first problem is a one-line
 * LineageError naming the field (`svd: --params must be in (0, 1), got 1.5`) — by flag when `flags`, else
 * by key. With `flags`, an entry of a list is named as the user counts it: `--schedule entry 2`.
 */
export function parseOptions<S extends OptionsSchema>(
  schema: S,
  input: unknown,
  o: { where: string; flags?: boolean },
): z.output<S> {
  const r = schema.safeParse(input ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const key = issue.path[0];
  let field = '';
  if (typeof key === 'string') {
    const flag = o.flags ? describeOptions(schema).find((x) => x.key === key)?.name : undefined;
    const entry = typeof issue.path[1] === 'number' ? ` entry ${issue.path[1] + 1}` : '';
    field = flag ? `--${flag}${entry}` : issue.path.map(String).join('.');
  }
  const got = issue.path.length ? valueAt(input, issue.path) : undefined;
  const shown = got === undefined ? '' : `, got ${JSON.stringify(got)}`;
  const message = issue.code === 'invalid_type' && got === undefined ? 'is required' : issue.message;
  throw new LineageError(`${o.where}: ${field ? `${field} ` : ''}${message}${shown}`);
}

/** A flag's or key's name for option `key` of `schema`: `--rank` (flags) or `rank`; `aliases` rename keys. */
function optionName(
  schema: OptionsSchema | undefined,
  key: string,
  flags: boolean,
  aliases: Readonly<Record<string, string>>,
): string {
  const k = aliases[key] ?? key;
  if (!flags) return k;
  const flag = schema ? describeOptions(schema).find((x) => x.key === k)?.name : undefined;
  return `--${flag ?? kebab(k)}`;
}

function renderOptionError(
  method: string,
  option: string,
  value: unknown,
  problem: string,
  name: (key: string) => string,
): string {
  const shown = value === undefined ? '' : ` ${Array.isArray(value) ? value.join(',') : String(value)}`;
  const text = `${name(option)}${shown}: ${problem.replace(/\{(\w+)\}/g, (_, k: string) => name(k))}`;
  return method ? `${method}: ${text}` : text;
}

/**
 * An option's value that its schema cannot judge alone (against the model, or against another option),
 * found by the method while it works. `problem` names other options as `{key}`. The message names options
 * by key (`svd: rank 1000000000000: saves nothing …`), as a library caller writes them; a host that offers
 * them as flags shows `optionErrorMessage(e, schema, { flags: true })` (`svd: --rank 1000000000000: …`),
 * as parseOptions names them: every message about a method option has this one form. Library functions
 * below a method throw it with `method` '' and the method re-throws it as its own (`asMethodOption`).
 */
export class OptionError extends LineageError {
  /** Recognised across copies of this package (a plugin's own @lineage/core). */
  readonly optionError = true;
  constructor(
    readonly method: string,
    readonly option: string,
    readonly value: unknown,
    readonly problem: string,
  ) {
    super(renderOptionError(method, option, value, problem, (k) => k));
  }
}

export function isOptionError(e: unknown): e is OptionError {
  return e instanceof Error && (e as Partial<OptionError>).optionError === true;
}

/**
 * Runs `f`; an OptionError of a library function (no method yet) becomes `method`'s, its option key
 * renamed by `rename` (the fraction `params` of the rank allocator is plrd's `schedule`).
 */
export async function asMethodOption<T>(
  method: string,
  f: () => Promise<T>,
  rename: Readonly<Record<string, string>> = {},
): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (!isOptionError(e) || e.method) throw e;
    const option = rename[e.option] ?? e.option;
    const problem = e.problem.replace(/\{(\w+)\}/g, (_, k: string) => `{${rename[k] ?? k}}`);
    throw new OptionError(method, option, e.value, problem);
  }
}

/**
 * An OptionError's message with its options named by flag (`--rank`) or by key, from `schema`; `aliases`
 * rename keys as the host offers them (a family's `sizes` are `lineage family`'s `--schedule`).
 */
export function optionErrorMessage(
  e: OptionError,
  schema: OptionsSchema | undefined,
  o: { flags: boolean; aliases?: Readonly<Record<string, string>> },
): string {
  return renderOptionError(e.method, e.option, e.value, e.problem, (k) =>
    optionName(schema, k, o.flags, o.aliases ?? {}),
  );
}
