import pkg from '../../package.json' with { type: 'json' };
import type { Backend } from '../backend/backend.js';
import type { LlamaModel } from '../nn/llama.js';
import type { ParamGroup, ParamSelector, Regularizer } from '../optim/param-groups.js';
import {
  ALLOW_NONFINITE_HINT,
  allowNonfiniteDefault,
  assertFinite,
  firstNonFinite,
} from '../tensor/finite.js';
import { LineageError } from '../util/errors.js';

/** Progress of long work; the CLI renders it as a bar on a TTY, tests ignore it. */
export interface Progress {
  /** Starts (or restarts) a phase of `total` units. */
  start(label: string, total: number): void;
  /** Advances the current phase by `n` (default 1); `info` is shown beside the bar (e.g. loss). */
  tick(n?: number, info?: Record<string, string | number>): void;
  end(): void;
}

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

/** Text data handed to a method (calibration, recovery, target application). */
export interface TextData {
  text: string;
  /** File it came from (for messages and provenance). */
  path?: string;
  /** Document separator, when the text holds documents. */
  separator?: string;
}

export interface TrainBudget {
  /** Tokens of training the method may spend. */
  tokens: number;
  /** Which parameters train (default: all whose `trainable` flag is set); the others stay bitwise unchanged. */
  trainable?: ParamSelector;
  /** Parameter groups with their own learning rate and weight decay. */
  groups?: readonly ParamGroup[];
  /** Extra terms of the objective (e.g. `l1(weight, selector)` from @lineage/distill). */
  regularizers?: readonly Regularizer[];
  /**
   * With a teacher: add the hidden-state loss over these [student layer, teacher layer] pairs (e.g. the
   * layers a depth-pruned student kept), overriding the capability's default mapping.
   */
  hidden?: { layers: readonly (readonly [number, number])[]; weight?: number };
}

export interface MethodNeeds {
  /** Statistic names the context must provide (see @lineage/calibrate). */
  stats?: string[];
  data?: boolean;
  training?: boolean;
}

/**
 * Calibration statistics as a method context carries them. Core knows only that they answer which
 * statistics they hold; the package that produces them (@lineage/calibrate) adds its accessors by
 * declaration merging, as vite plugins extend rollup's context:
 *
 * ```ts
 * declare module '@lineage/core' {
 *   interface MethodStats extends CalibrationStatsAccess {}
 * }
 * ```
 *
 * so `ctx.stats.hessian(layer)` is typed wherever that package's types are in the program, with no cast,
 * duck typing or `instanceof` across package copies.
 */
export interface MethodStats {
  /** Whether the named statistic (e.g. 'hessian') was computed. */
  has(statistic: string): boolean;
}

/** What a method asks the `calibrate` capability for. */
export interface CalibrationRequest {
  statistics: string[];
}

/**
 * Capabilities other packages attach to a method context (all optional on the context): extended by
 * declaration merging like `MethodStats`, for capabilities whose types live outside core.
 */
// biome-ignore lint/suspicious/noEmptyInterface: an extension point filled by declaration merging
export interface MethodCapabilities {}

export interface MethodContext extends Partial<MethodCapabilities> {
  backend: Backend;
  data?: TextData;
  /** Calibration statistics of the model given to `apply` (typed by @lineage/calibrate, see MethodStats). */
  stats?: MethodStats;
  progress: Progress;
  log: Logger;
  seed: number;
  /** Training capability supplied by @lineage/distill when installed: recover `model` (e.g. from its parent). */
  recover?(model: LlamaModel, budget: TrainBudget & { teacher?: LlamaModel }): Promise<LlamaModel>;
  /**
   * Calibration capability supplied by @lineage/calibrate: the named statistics of `model` (any model, e.g. a
   * family member mid-method) on the context's calibration text, typed by that package like `stats`.
   */
  calibrate?(model: LlamaModel, request: CalibrationRequest): Promise<MethodStats>;
  /** Accept a step whose result holds NaN or infinite weights (default: allowNonfiniteDefault()). */
  allowNonfinite?: boolean;
}

/**
 * A compression method: a plain object made by a factory (`plrd({...})`), applied to a model. It returns a
 * model, or a family of models. Methods replace layers (see Layer); they never touch backend internals.
 */
export interface CompressionMethod<R extends LlamaModel | LlamaModel[] = LlamaModel | LlamaModel[]> {
  readonly name: string;
  readonly version: string;
  readonly needs?: MethodNeeds;
  apply(model: LlamaModel, ctx: MethodContext): Promise<R>;
}

/** Checks that the context supplies what a method declares it needs, before any work starts. */
export function checkNeeds(method: CompressionMethod, ctx: MethodContext): void {
  const n = method.needs;
  if (!n) return;
  if (n.data && !ctx.data) throw new LineageError(`method '${method.name}' needs data (--data <file>)`);
  if (n.training && !ctx.recover) {
    throw new LineageError(`method '${method.name}' needs training: install and import @lineage/distill`);
  }
  if (n.stats?.length && !ctx.stats && !ctx.calibrate) {
    throw new LineageError(
      `method '${method.name}' needs calibration statistics (${n.stats.join(', ')}): pass --stats <file>, or calibration text (--data <file>)`,
    );
  }
  // statistics given without a way to compute more must hold every one the method names
  const missing = ctx.calibrate ? [] : (n.stats ?? []).filter((s) => !ctx.stats!.has(s));
  if (missing.length)
    throw new LineageError(
      `method '${method.name}' needs the statistics ${missing.join(', ')}, which the given statistics do not hold (lineage calibrate --stats ${missing.join(',')})`,
    );
}

/** Applies a method after checking its needs. */
export async function applyMethod<R extends LlamaModel | LlamaModel[]>(
  method: CompressionMethod<R>,
  model: LlamaModel,
  ctx: MethodContext,
): Promise<R> {
  checkNeeds(method, ctx);
  const result = await method.apply(model, ctx);
  if (!(ctx.allowNonfinite ?? allowNonfiniteDefault())) {
    for (const m of Array.isArray(result) ? result : [result])
      assertModelFinite(m, `method '${method.name}'`);
  }
  return result;
}

/**
 * Throws a one-line LineageError when a method's result holds a NaN or an infinity, naming `what` (e.g.
 * "method 'svd'") and the first such tensor: a compression step must never hand on weights that make every later result NaN.
 */
export function assertModelFinite(model: LlamaModel, what: string): void {
  for (const [name, t] of model.stateDict()) {
    if (firstNonFinite(t) < 0) continue;
    try {
      assertFinite(name, t, undefined, ALLOW_NONFINITE_HINT);
    } catch (e) {
      throw new LineageError(`${what} produced non-finite weights: ${(e as Error).message}`);
    }
  }
}

/**
 * Composes methods left to right. When a step returns a family, the following steps apply to each member
 * and the result is the flattened family.
 */
export function pipeline(...methods: CompressionMethod[]): CompressionMethod {
  if (!methods.length) throw new LineageError('pipeline needs at least one method');
  const stats = [...new Set(methods.flatMap((m) => m.needs?.stats ?? []))];
  return {
    name: methods.map((m) => m.name).join('+'),
    version: pkg.version, // core's, which defines what a pipeline does
    needs: {
      ...(stats.length ? { stats } : {}),
      data: methods.some((m) => m.needs?.data),
      training: methods.some((m) => m.needs?.training),
    },
    async apply(model, ctx) {
      let current: LlamaModel[] = [model];
      let family = false;
      for (const m of methods) {
        const next: LlamaModel[] = [];
        for (const member of current) {
          const r = await applyMethod(m, member, ctx);
          if (Array.isArray(r)) {
            family = true;
            next.push(...r);
          } else next.push(r);
        }
        current = next;
      }
      return family ? current : current[0]!;
    },
  };
}

/** No-op progress and logger, for library use without a UI. */
export const silentProgress: Progress = { start() {}, tick() {}, end() {} };
export const silentLogger: Logger = { info() {}, warn() {}, debug() {} };

export function methodContext(backend: Backend, partial: Partial<MethodContext> = {}): MethodContext {
  return { backend, progress: silentProgress, log: silentLogger, seed: 0, ...partial };
}
