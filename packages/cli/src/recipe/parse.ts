import { existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import {
  type CompressionMethod,
  describeOptions,
  fileKind,
  type Json,
  LineageError,
  listMethods,
  type MethodDefinition,
  pipeline,
  readRegularFile,
  type z,
} from '@lineage/core';
import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import { backendNames } from '../backend.js';
import { checkRunDir, type Input } from '../output-policy.js';
import { getRecipeOutput, type RecipeOutputKind, recipeOutputKinds } from './outputs.js';
import { type Recipe, recipeSchema } from './schema.js';

/** A recipe checked in full, ready to run: nothing in it can fail validation any more. */
export interface CompiledRecipe {
  file: string;
  /** The recipe as run: defaults filled in, paths absolute, options as the methods parsed them. */
  recipe: Recipe;
  /** The stages as one method: core's `pipeline(...)` of each stage's method. */
  method: CompressionMethod;
  stages: { def: MethodDefinition; options: Record<string, unknown> }[];
  // biome-ignore lint/suspicious/noExplicitAny: each output's fields as its kind's schema parsed them
  outputs: { kind: RecipeOutputKind; options: any }[];
}

type Path = readonly (string | number)[];

/** `stages[1].options.schedule` */
function fieldName(path: Path): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i ? `.${k}` : k)).join('');
}

/**
 * The line of the deepest node along `path` that the document holds (a map entry by its key), so that a
 * missing field points at the map that lacks it.
 */
function lineOf(doc: Document, lines: LineCounter, path: Path): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as { range?: [number] } | null)?.range?.[0] ?? 0;
  for (const k of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === k);
      if (!pair) break;
      offset = (pair.key as { range?: [number] }).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof k === 'number' && node.items[k]) {
      node = node.items[k];
      offset = (node as { range?: [number] }).range?.[0] ?? offset;
    } else break;
  }
  return lines.linePos(offset).line;
}

/** A zod issue's message as `parseOptions` words it (a missing field 'is required'), with the bad value. */
function issueText(issue: z.core.$ZodIssue, input: unknown): string {
  let got: unknown = input;
  for (const k of issue.path)
    got = got && typeof got === 'object' ? (got as Record<PropertyKey, unknown>)[k] : undefined;
  if (issue.code === 'invalid_type' && got === undefined) return 'is required';
  if (issue.code === 'unrecognized_keys')
    return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
  return `${issue.message}${got === undefined || typeof got === 'object' ? '' : `, got ${typeof got === 'number' ? String(got) : JSON.stringify(got)}`}`;
}

/** Resolves a path written in the recipe against the recipe's directory. */
function abs(base: string, p: string): string {
  return isAbsolute(p) ? p : resolve(base, p);
}

/**
 * Reads and checks a recipe file before any work: YAML syntax, the recipe's fields, each stage's method and
 * options (by the method's own schema), each output kind, and that the files it names exist. The first
 * problem is one LineageError `file:line: field: problem`.
 */
export async function compileRecipe(file: string, o: { force?: boolean } = {}): Promise<CompiledRecipe> {
  // a regular file of bounded size: a FIFO or a device is refused before it is opened
  if (!existsSync(file)) throw new LineageError('no such recipe file', file);
  const text = (await readRegularFile(file, 16 << 20, ' (a recipe is a small YAML file)')).toString('utf8');
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const where = (path: Path) => `${file}:${lineOf(doc, lines, path)}`;
  const fail = (path: Path, message: string): never => {
    throw new LineageError(path.length ? `${fieldName(path)}: ${message}` : message, where(path));
  };
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line;
    throw new LineageError(`YAML syntax error: ${e.message.split('\n')[0]}`, `${file}:${line}`);
  }
  let raw: unknown;
  try {
    // the yaml library refuses alias bombs ('billion laughs') here, with its own limit on alias expansion
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new LineageError(`not a usable recipe: ${(e as Error).message}`, file);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    fail([], 'a recipe is a YAML mapping (parent, data, stages, outputs, …)');
  const parsed = recipeSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.filter((k): k is string | number => typeof k !== 'symbol');
    fail(issue.code === 'unrecognized_keys' ? path : path, issueText(issue, raw));
  }
  const recipe = structuredClone(parsed.data!) as Recipe;
  const base = dirname(resolve(file));

  // files it names: resolved against the recipe's directory, and there
  const mustExist = (path: Path, p: string): string => {
    const a = abs(base, p);
    if (!existsSync(a)) fail(path, `no such file or directory: ${p}`);
    // a FIFO, device or socket would be refused (or waited on) at run time, far from the recipe's line
    const st = statSync(a);
    if (!st.isFile() && !st.isDirectory()) fail(path, `${p}: is ${fileKind(st)}, not a regular file`);
    return a;
  };
  recipe.parent = mustExist(['parent'], recipe.parent);
  if (recipe.tokenizer) recipe.tokenizer = mustExist(['tokenizer'], recipe.tokenizer);
  if (recipe.data) {
    const train = Array.isArray(recipe.data.train) ? recipe.data.train : [recipe.data.train];
    recipe.data.train = train.map((p, i) =>
      mustExist(
        Array.isArray(raw && (raw as Recipe).data?.train) ? ['data', 'train', i] : ['data', 'train'],
        p,
      ),
    );
    if (recipe.data.stats) recipe.data.stats = mustExist(['data', 'stats'], recipe.data.stats);
  }
  const ev = recipe.evaluation;
  if (ev) {
    if (ev.data) ev.data = mustExist(['evaluation', 'data'], ev.data);
    if ([ev.data, ev.holdout, ev.fraction].filter((x) => x !== undefined).length > 1)
      fail(['evaluation'], 'give one of data, holdout or fraction');
    if (!ev.data && !recipe.data)
      fail(['evaluation'], 'needs held-out text: evaluation.data, or data.train (its tail is held out)');
    if (ev.holdout && !recipe.data?.docSeparator) fail(['evaluation', 'holdout'], 'needs data.docSeparator');
  }
  if (recipe.runDir) recipe.runDir = abs(base, recipe.runDir);
  // the backend by name before any work (at run time it would be an error without the recipe's line)
  if (recipe.backend !== undefined && !backendNames().includes(recipe.backend))
    fail(['backend'], `unknown backend '${recipe.backend}' (known: ${backendNames().join(', ')})`);

  // stages: each a registered method with options its own schema accepts
  const byName = new Map(listMethods().map((m) => [m.name, m]));
  const stages = recipe.stages.map((s, i) => {
    const at = ['stages', i] as const;
    const def = byName.get(s.method);
    if (!def)
      fail([...at, 'method'], `unknown method '${s.method}' (registered: ${[...byName.keys()].join(', ')})`);
    const keys = new Set(Object.keys(def!.options.shape));
    // options by key (recoverTokens) or by flag name (recover-tokens)
    const flags = new Map(describeOptions(def!.options).map((x) => [x.name, x.key]));
    const input: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(s.options)) {
      const key = keys.has(k) ? k : flags.get(k);
      if (!key)
        fail(
          [...at, 'options', k],
          `unknown option of method ${def!.name} (options: ${[...keys].join(', ')})`,
        );
      input[key!] = v;
    }
    if (s.recover) {
      if (!keys.has('recoverTokens'))
        fail(
          [...at, 'recover'],
          `method ${def!.name} takes no recovery budget (it has no recoverTokens option)`,
        );
      if (input.recoverTokens !== undefined)
        fail([...at, 'recover'], 'give the budget once: recover.tokens or options.recoverTokens');
      input.recoverTokens = s.recover.tokens;
    }
    const r = def!.options.safeParse(input);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      const key = issue.path[0];
      const written = Object.keys(s.options).find((k) => k === key || flags.get(k) === key);
      const path =
        key === 'recoverTokens' && s.recover
          ? [...at, 'recover', 'tokens']
          : [...at, 'options', ...(written ? [written, ...issue.path.slice(1)] : [])];
      fail(
        path.filter((k): k is string | number => typeof k !== 'symbol'),
        `${def!.name}: ${issueText(issue, input)}`,
      );
    }
    const options = r.data as Record<string, unknown>;
    // the method's own cross-field checks run when it is created
    let method: CompressionMethod;
    try {
      method = def!.create(options);
    } catch (e) {
      if (e instanceof LineageError) fail([...at, 'options'], e.message);
      throw e;
    }
    s.options = JSON.parse(JSON.stringify(options)) as Record<string, Json>;
    delete s.recover; // recorded once, as the method's recoverTokens
    return { def: def!, options, method: method! };
  });
  const method = pipeline(...stages.map((s) => s.method));
  // what the stages need from the data before they start: text, training text, or calibration statistics
  const needs = method.needs ?? {};
  const why = needs.data
    ? 'data'
    : needs.training
      ? 'training text for its recovery'
      : needs.stats?.length
        ? `calibration (${needs.stats.join(', ')})`
        : undefined;
  if (why && !recipe.data) fail(['stages'], `${method.name} needs ${why}: give data.train`);

  // everything the recipe reads: no output may be, hold or lie inside one of them (the one output policy)
  const inputs: Input[] = [
    { path: resolve(file), what: 'the recipe' },
    { path: recipe.parent, what: 'the parent model' },
    { path: recipe.tokenizer, what: 'the tokenizer' },
    ...((recipe.data?.train as string[] | undefined) ?? []).map((path) => ({ path, what: 'data.train' })),
    { path: recipe.data?.stats, what: 'data.stats' },
    { path: recipe.evaluation?.data, what: 'evaluation.data' },
    { path: recipe.runDir, what: 'the run directory' },
  ];
  // the run directory is written too: never the recipe, a model or data it reads, and never a file
  if (recipe.runDir) {
    try {
      checkRunDir(
        recipe.runDir,
        inputs.filter((x) => x.what !== 'the run directory'),
        'runDir',
      );
    } catch (e) {
      if (e instanceof LineageError) fail(['runDir'], e.message);
      throw e;
    }
  }
  // outputs: each a registered kind with the fields its schema accepts, not there already, and no two
  // writing to the same place (the second would find the first's output there, after the work)
  const written: { path: string; at: number }[] = [];
  const outputs = recipe.outputs.map((out, i) => {
    const kind = getRecipeOutput(out.kind);
    if (!kind)
      fail(
        ['outputs', i, 'kind'],
        `unknown output kind '${out.kind}' (registered: ${recipeOutputKinds().join(', ')})`,
      );
    const r = kind!.schema.safeParse(out);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      fail(
        ['outputs', i, ...issue.path.filter((k): k is string | number => typeof k !== 'symbol')],
        issueText(issue, out),
      );
    }
    const options = { ...(r.data as Record<string, unknown>) };
    for (const k of kind!.paths)
      if (typeof options[k] === 'string') {
        options[k] = abs(base, options[k] as string);
        const path = options[k] as string;
        const other = written.find((w) => overlaps(w.path, path));
        if (other)
          fail(
            ['outputs', i, k],
            `writes where outputs[${other.at}] writes (${path}): give each output its own place`,
          );
        written.push({ path, at: i });
      }
    try {
      kind!.check(options, o.force ?? false, inputs);
    } catch (e) {
      if (e instanceof LineageError) fail(['outputs', i], e.message);
      throw e;
    }
    recipe.outputs[i] = options as Recipe['outputs'][number];
    return { kind: kind!, options };
  });
  return { file, recipe, method, stages: stages.map(({ def, options }) => ({ def, options })), outputs };
}

/** Whether two output paths are one, or one lies inside the other. */
function overlaps(a: string, b: string): boolean {
  const [x, y] = [resolve(a), resolve(b)];
  return x === y || x.startsWith(`${y}${sep}`) || y.startsWith(`${x}${sep}`);
}
