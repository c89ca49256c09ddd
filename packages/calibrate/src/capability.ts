import { type Backend, LineageError, type LlamaModel, type Logger, type MethodContext } from '@lineage/core';
import { calibrate } from './calibrate.js';
import { type Dataset, loadDataset, type SampleOptions, sampleSequences } from './dataset.js';
import { type SequentialVisit, type SequentialWalkResult, sequentialWalk } from './sequential.js';

export type CalibrateFn = NonNullable<MethodContext['calibrate']>;

/**
 * The `calibrationWalk` capability: walks `model` (changed in place: pass a copy) block by block over the
 * context's calibration sample, `visit` compressing each block from Hessians of inputs that went through the
 * blocks already compressed (see `sequentialWalk`).
 */
export type CalibrationWalkFn = (model: LlamaModel, visit: SequentialVisit) => Promise<SequentialWalkResult>;

export interface CalibrationCapabilityOptions {
  /** Calibration text: a loaded dataset, or a file or directory path for `loadDataset`. */
  data: Dataset | string;
  /** Documents separator when `data` is a path. */
  separator?: string;
  /** Calibrate on documents [start, end) only (e.g. to leave held-out documents out). */
  documents?: [number, number?];
  /** Sequences (default 64, or every document when there are fewer). */
  samples?: number;
  /** Tokens per sequence (default min(256, the model's context)). */
  seqLen?: number;
  /** Sampling seed (default 0): every model calibrates on the same text. */
  seed?: number;
  /** The command's flags for samples and length, named when the data is too short (see `SampleOptions.flags`). */
  flags?: SampleOptions['flags'];
  backend: Backend;
  log?: Logger;
}

/**
 * The `calibrate` capability of a method context, backed by this package: statistics of any model (a
 * parent, or a family member between steps) on one seeded sample of the calibration text, in memory.
 */
export function calibrationCapability(options: CalibrationCapabilityOptions): CalibrateFn {
  return calibrationCapabilities(options).calibrate;
}

/** Both capabilities over one lazily loaded text and one sampling rule (so they calibrate on the same tokens). */
function calibrationCapabilities(options: CalibrationCapabilityOptions): {
  calibrate: CalibrateFn;
  calibrationWalk: CalibrationWalkFn;
} {
  // loaded on the first call, so a context that never calibrates never reads the text
  let dataset: Promise<Dataset> | undefined;
  const load = async (): Promise<Dataset> => {
    const ds =
      typeof options.data === 'string'
        ? await loadDataset(options.data, options.separator ? { separator: options.separator } : {})
        : options.data;
    const range = options.documents;
    return range ? ds.slice(range[0], range[1]) : ds;
  };
  const sampling = async (model: LlamaModel) => {
    dataset ??= load();
    const ds = await dataset;
    const seqLen = options.seqLen ?? Math.min(256, model.config.maxPositions);
    let samples = options.samples ?? 64;
    if (options.samples === undefined && ds.separator) samples = Math.min(samples, ds.documents().length);
    return { ds, seqLen, samples };
  };
  const calibrationWalk: CalibrationWalkFn = async (model, visit) => {
    const { ds, seqLen, samples } = await sampling(model);
    if (!model.tokenizer) throw new LineageError('the model has no tokenizer; pass --tokenizer');
    const sample = sampleSequences(ds, model.tokenizer, {
      samples,
      seqLen,
      seed: options.seed ?? 0,
      ...(options.flags ? { flags: options.flags } : {}),
    });
    const r = await sequentialWalk(model, options.backend, sample.sequences, visit);
    options.log?.info(
      `sequential calibration walk on ${samples} × ${seqLen} tokens of ${ds.path} (${r.seconds.toFixed(1)} s)`,
    );
    return r;
  };
  const calibrateStats: CalibrateFn = async (model, request) => {
    const { ds, seqLen, samples } = await sampling(model);
    const t0 = performance.now();
    const r = await calibrate(model, options.backend, ds, {
      samples,
      seqLen,
      seed: options.seed ?? 0,
      statistics: request.statistics,
      ...(options.flags ? { flags: options.flags } : {}),
    });
    options.log?.info(
      `calibrated ${request.statistics.join(', ')} on ${samples} × ${seqLen} tokens of ${ds.path} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    return r.stats;
  };
  return { calibrate: calibrateStats, calibrationWalk };
}

/**
 * The method context with `calibrate` and `calibrationWalk` attached; backend, logger and seed default to the context's, the
 * text to the context's data file.
 */
export function withCalibration(
  ctx: MethodContext,
  options: Partial<CalibrationCapabilityOptions> = {},
): MethodContext {
  const data = options.data ?? ctx.data?.path;
  if (!data) throw new LineageError('calibration needs text (--data <file>)');
  const caps = calibrationCapabilities({
    backend: ctx.backend,
    log: ctx.log,
    seed: ctx.seed,
    ...(ctx.data?.separator && options.data === undefined ? { separator: ctx.data.separator } : {}),
    ...options,
    data,
  });
  return { ...ctx, calibrate: caps.calibrate, calibrationWalk: caps.calibrationWalk };
}
