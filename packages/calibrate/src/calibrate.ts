import {
  type Backend,
  type EvalProtocol,
  type HostTensor,
  LineageError,
  type LlamaModel,
  SafetensorsFile,
} from '@lineage/core';
import pkg from '../package.json' with { type: 'json' };
import {
  type CalibrationSample,
  type Dataset,
  describeSequences,
  type SampleOptions,
  sampleSequences,
} from './dataset.js';
import { type LayeredModel, toLayered } from './source.js';
import { parseStatistics, STATISTICS, type StatisticName, StatsCollector } from './statistics.js';
import { CalibrationStats, type StatsInfo, StatsSpool } from './stats.js';
import { type WalkProgress, walkLayers } from './walk.js';

/** This package's version (from its package.json, inlined at build time), recorded in statistics files. */
export const VERSION: string = pkg.version;

export interface StatsOptions {
  /** Statistics to compute (default: all, i.e. hessian and importance); a list or `hessian,importance`. */
  statistics?: readonly string[] | string;
  /**
   * Write a statistics file here. Each layer's statistics go to a hidden spool beside it as the layer
   * finishes, and the file appears (atomically) only when the run succeeds; the result then reads from it.
   * Without `out` the statistics stay in memory.
   */
  out?: string;
  /** Largest micro-batch in padded tokens (default 512); results do not depend on it beyond f32 rounding. */
  microBatchTokens?: number;
  onProgress?: (p: WalkProgress) => void;
  /** See WalkOptions.collectGarbage (the CLI passes V8's gc so peak memory is what is live). */
  collectGarbage?: () => void;
  /** Provenance recorded with the statistics (filled in by `calibrate`). */
  dataset?: { path: string; files: number; hash: string; separator?: string; field?: string };
}

export interface CalibrateOptions extends SampleOptions, Omit<StatsOptions, 'dataset'> {}

export interface CalibrationResult {
  stats: CalibrationStats;
  sample: CalibrationSample;
  /** Wall time of the layer walk and statistics (sampling and the model fingerprint excluded). */
  seconds: number;
  /** Calibration tokens per second through the whole model. */
  tokensPerSecond: number;
}

/**
 * Calibrates `model` on `dataset`: seeded sampling through the model's tokenizer, then a layer-streamed walk
 * collecting the requested statistics (float64), recorded with the model's fingerprint and the data's hash.
 * Pass a LayeredModel from `openStreamedModel` to keep only one layer's weights in memory.
 */
export async function calibrate(
  model: LlamaModel | LayeredModel,
  backend: Backend,
  dataset: Dataset,
  options: CalibrateOptions,
): Promise<CalibrationResult> {
  const m = toLayered(model);
  parseStatistics(options.statistics ?? [...STATISTICS]);
  const c = m.config;
  if (options.seqLen > c.maxPositions) {
    throw new LineageError(
      `sequence length ${options.seqLen} exceeds the model's context of ${c.maxPositions} (lower --seq-len)`,
    );
  }
  if (!m.tokenizer) throw new LineageError('the model has no tokenizer; pass --tokenizer');
  const sample = sampleSequences(dataset, m.tokenizer, options);
  const t0 = performance.now();
  const stats = await computeStats(m, backend, sample, {
    ...options,
    dataset: {
      path: dataset.path,
      files: dataset.files.length,
      hash: dataset.hash,
      ...(dataset.separator ? { separator: dataset.separator } : {}),
      ...(dataset.hasJsonl ? { field: dataset.field } : {}),
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  return { stats, sample, seconds, tokensPerSecond: sample.tokens / seconds };
}

/** Collects statistics over given token sequences (what `calibrate` does after sampling). */
export async function computeStats(
  model: LlamaModel | LayeredModel,
  backend: Backend,
  sample: CalibrationSample,
  options: StatsOptions = {},
): Promise<CalibrationStats> {
  const m = toLayered(model);
  const statistics: StatisticName[] = parseStatistics(options.statistics ?? [...STATISTICS]);
  const c = m.config;
  const spool = options.out ? await StatsSpool.create(options.out) : undefined;
  try {
    const memory = new Map<string, HostTensor>();
    const put = async (tensors: Map<string, HostTensor>) => {
      for (const [k, t] of tensors) {
        if (spool) await spool.put(k, t);
        else memory.set(k, t);
      }
    };
    const collector = new StatsCollector(c, statistics, m.hasLmHead);
    await walkLayers(m, backend, sample.sequences, {
      capture: collector,
      finalNorm: collector.names.includes('model.norm.output'),
      afterLayer: (l) => put(collector.finishLayer(l)),
      ...(options.microBatchTokens ? { microBatchTokens: options.microBatchTokens } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.collectGarbage ? { collectGarbage: options.collectGarbage } : {}),
    });
    options.collectGarbage?.(); // the walk's activations are dead now (twice: see WalkOptions)
    options.collectGarbage?.();
    await put(collector.finish());
    // Last, when nothing else is held: a streamed checkpoint's fingerprint reads every tensor once.
    const fingerprint = await m.fingerprint();
    const info: StatsInfo = {
      format: 'lineage-calibration-stats',
      version: 1,
      modelFingerprint: fingerprint,
      datasetHash: options.dataset?.hash ?? 'unknown',
      sampleHash: sample.hash,
      statistics,
      samples: sample.sequences.length,
      seqLen: sample.seqLen,
      tokens: sample.tokens,
      seed: sample.seed,
      protocol: sample.protocol,
      dataset: {
        path: options.dataset?.path ?? '(sequences)',
        files: options.dataset?.files ?? 0,
        ...(options.dataset?.separator ? { separator: options.dataset.separator } : {}),
        ...(options.dataset?.field ? { field: options.dataset.field } : {}),
      },
      model: {
        architecture: c.architecture,
        numLayers: c.numLayers,
        hiddenSize: c.hiddenSize,
        intermediateSize: c.intermediateSize,
        numHeads: c.numHeads,
        numKvHeads: c.numKvHeads,
        headDim: c.headDim,
        lmHead: m.hasLmHead,
      },
      createdBy: `@lineage/calibrate ${VERSION}`,
    };
    if (!spool || !options.out) return CalibrationStats.fromTensors(info, memory);
    await new CalibrationStats(info, spool.oneAtATime()).save(options.out);
    return new CalibrationStats(info, await SafetensorsFile.open(options.out));
  } finally {
    await spool?.discard();
  }
}

/** Builds a CalibrationSample from explicit sequences (tests, or data prepared elsewhere). */
export function sampleFromSequences(
  sequences: readonly (Int32Array | readonly number[])[],
  options: { protocol?: EvalProtocol; seed?: number } = {},
): CalibrationSample {
  const seqs = sequences.map((s) => (s instanceof Int32Array ? s : Int32Array.from(s)));
  const seqLen = Math.max(0, ...seqs.map((s) => s.length));
  return {
    ...describeSequences(seqs, options.protocol ?? 'documents', seqLen, options.seed ?? 0),
    available: seqs.length,
  };
}
