import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import {
  type DType,
  HostTensor,
  LineageError,
  type LlamaModel,
  type MethodContext,
  type MethodStats,
  modelFingerprint,
  SafetensorsFile,
  type TensorInfo,
  type TensorSource,
  writeSafetensors,
} from '@lineage/core';
import { SHARED_INPUT, STATISTICS, type StatisticName, statNames } from './statistics.js';

/** The `__metadata__` key of a statistics file; its value is the JSON of StatsInfo. */
export const STATS_METADATA_KEY = 'lineage.calibration';

/** What a set of statistics was computed from (the JSON metadata block of a statistics file). */
export interface StatsInfo {
  format: 'lineage-calibration-stats';
  version: 1;
  /** `modelFingerprint` of the model the statistics describe; loading refuses any other model. */
  modelFingerprint: string;
  /** Hash of the data's content (files and their bytes). */
  datasetHash: string;
  /** Hash of the exact token sequences used (protocol, length, seed and ids). */
  sampleHash: string;
  statistics: StatisticName[];
  samples: number;
  seqLen: number;
  /** Calibration tokens (every statistic is summed or averaged over these). */
  tokens: number;
  seed: number;
  protocol: 'documents' | 'stream';
  dataset: { path: string; files: number; separator?: string; field?: string };
  model: {
    architecture: string;
    numLayers: number;
    hiddenSize: number;
    intermediateSize: number;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
    lmHead: boolean;
  };
  createdBy: string;
}

/** A Gram/Hessian with what is needed to normalise or centre it. */
export interface InputStats {
  /** The canonical layer name the input is stored under (q_proj for q/k/v, gate_proj for gate/up). */
  name: string;
  width: number;
  /** H = Σ xᵀx over `tokens` calibration tokens, [width, width] row-major, symmetric. */
  hessian: Float64Array;
  /** Mean input, [width]. */
  mean: Float64Array;
  tokens: number;
}

class MemorySource implements TensorSource {
  readonly path = '(memory)';
  constructor(private readonly tensors: ReadonlyMap<string, HostTensor>) {}
  names(): string[] {
    return [...this.tensors.keys()];
  }
  info(name: string): TensorInfo {
    const t = this.get(name);
    return { dtype: t.dtype, shape: t.shape };
  }
  async read(name: string): Promise<HostTensor> {
    return this.get(name);
  }
  private get(name: string): HostTensor {
    const t = this.tensors.get(name);
    if (!t) throw new LineageError(`no tensor named '${name}'`);
    return t;
  }
  async close(): Promise<void> {}
}

const LAYER_NAME =
  /^(?:model\.)?layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)(?:\.weight)?$/;

/**
 * Calibration statistics with typed access, backed by memory or by a statistics file (tensors are read on
 * demand, so a method can take one layer's Hessian at a time; `close()` releases the file). Arrays returned from
 * memory-backed statistics are the stored ones: copy before modifying them. Layer names are Hugging Face names
 * (`model.layers.3.mlp.down_proj`); the short form (`layers.3.mlp.down_proj`) works too, and k/v_proj and
 * up_proj resolve to the statistics of the input they share with q_proj and gate_proj.
 */
export class CalibrationStats {
  private readonly present: Set<string>;

  constructor(
    readonly info: StatsInfo,
    private readonly source: TensorSource,
  ) {
    this.present = new Set(source.names());
  }

  /** Statistics held in memory (what `calibrate` returns without an output file). */
  static fromTensors(info: StatsInfo, tensors: ReadonlyMap<string, HostTensor>): CalibrationStats {
    return new CalibrationStats(info, new MemorySource(tensors));
  }

  /** The file the statistics are read from, when they come from one. */
  get path(): string | undefined {
    return this.source.path === '(memory)' ? undefined : this.source.path;
  }

  has(statistic: StatisticName): boolean {
    return this.info.statistics.includes(statistic);
  }

  /** Throws a one-line error unless every named statistic was computed. */
  require(...statistics: StatisticName[]): void {
    for (const s of statistics) {
      if (!this.has(s)) {
        throw new LineageError(
          `these statistics do not include '${s}' (they hold: ${this.info.statistics.join(', ')}); run lineage calibrate --stats ${s}`,
          this.path,
        );
      }
    }
  }

  /** Tensor names held (see `statNames`). */
  tensorNames(): string[] {
    return [...this.present];
  }

  /** A stored tensor by name (float64). */
  async tensor(name: string): Promise<HostTensor> {
    if (!this.present.has(name)) throw new LineageError(`the statistics hold no tensor '${name}'`, this.path);
    return this.source.read(name);
  }

  /** The canonical name under which a linear layer's input statistics are stored. */
  inputName(layer: string): string {
    if (layer === 'lm_head' || layer === 'lm_head.weight') {
      if (!this.info.model.lmHead)
        throw new LineageError('the model has no separate lm_head (its head is tied to the embedding)');
      return 'lm_head';
    }
    const m = LAYER_NAME.exec(layer);
    const n = Number(m?.[1]);
    if (!m || n >= this.info.model.numLayers) {
      throw new LineageError(
        `'${layer}' is not a linear layer of this model (names look like model.layers.0.self_attn.q_proj; ${this.info.model.numLayers} layers)`,
      );
    }
    const slot = m[2]!;
    return `model.layers.${n}.${SHARED_INPUT[slot] ?? slot}`;
  }

  /**
   * A stored statistic as float64, refused unless it is a float tensor of the expected rank (a Gram
   * [n, n], everything else a vector) and, given `width`, of that width: a Gram of the right element
   * count but another shape would otherwise be read as a different matrix.
   */
  private async f64(name: string, rank: 1 | 2 = 1, width?: number): Promise<Float64Array> {
    const t = await this.tensor(name);
    const s = t.shape;
    const bad = (why: string): never => {
      throw new LineageError(
        `statistic '${name}' ${why}; recompute the statistics with lineage calibrate`,
        this.path,
      );
    };
    if (t.dtype !== 'f64' && t.dtype !== 'f32') bad(`is ${t.dtype}, not a float tensor`);
    if (rank === 2 && (s.length !== 2 || s[0] !== s[1]))
      bad(`has shape [${s}], but a Gram must be square [n, n]`);
    if (rank === 1 && s.length !== 1) bad(`has shape [${s}], but must be a vector`);
    if (width !== undefined && s[0] !== width)
      bad(`has shape [${s}], but its layer's input is ${width} wide`);
    const v = t.dtype !== 'f64' ? Float64Array.from(t.toF32()) : (t.data as Float64Array);
    // importance scores steer which heads and channels a pruner keeps: a NaN there would choose silently
    if (rank === 1) {
      const i = v.findIndex((x) => !Number.isFinite(x));
      if (i >= 0) bad(`is not finite (entry ${i} is ${v[i]})`);
    }
    return v;
  }

  /**
   * H = Σ xᵀx of the layer's input, [in, in] row-major. Checked as it is read (a square of the layer's input
   * width, finite, non-negative diagonal), so a corrupted file is named here rather than deep inside a method.
   */
  async hessian(layer: string): Promise<Float64Array> {
    this.require('hessian');
    const input = this.inputName(layer);
    const name = statNames.hessian(input);
    const w = this.inputWidth(input);
    // shape first (square, the layer's input width), then the entries
    const h = await this.f64(name, 2, w);
    const where = `the Gram '${name}'`;
    if (h.length !== w * w)
      throw new LineageError(
        `${where} has ${h.length} entries, the layer's input needs ${w}×${w} (a damaged or forged statistics file?)`,
        this.path,
      );
    const bad = h.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0)
      throw new LineageError(
        `${where} is not finite (entry (${Math.floor(bad / w)}, ${bad % w}) is ${h[bad]})`,
        this.path,
      );
    for (let i = 0; i < w; i++)
      if (h[i * w + i]! < 0)
        throw new LineageError(
          `${where} is not positive semi-definite (diagonal entry ${i} is ${h[i * w + i]}): not a Gram matrix`,
          this.path,
        );
    // Σ xᵀx is symmetric up to rounding; |h_ij| ≤ √(h_ii·h_jj) (Cauchy–Schwarz) bounds the tolerance's scale
    for (let i = 0; i < w; i++)
      for (let j = i + 1; j < w; j++) {
        const a = h[i * w + j]!;
        const b = h[j * w + i]!;
        const scale = Math.sqrt(h[i * w + i]! * h[j * w + j]!);
        if (Math.abs(a - b) > 1e-6 * scale + 1e-300 || Math.abs(a) > scale * (1 + 1e-6) + 1e-300)
          throw new LineageError(
            `${where} is not a Gram matrix: entries (${i}, ${j}) = ${a} and (${j}, ${i}) = ${b} ${Math.abs(a - b) > 1e-6 * scale ? 'differ (not symmetric)' : `exceed √(h_ii·h_jj) = ${scale}`}`,
            this.path,
          );
      }
    return h;
  }

  /** The input width of a canonical input name (see inputName), from the model the statistics describe. */
  private inputWidth(input: string): number {
    const m = this.info.model;
    if (input.endsWith('down_proj')) return m.intermediateSize;
    if (input.endsWith('o_proj')) return m.numHeads * m.headDim;
    return m.hiddenSize;
  }

  /** Mean of the layer's input, [in]. */
  async mean(layer: string): Promise<Float64Array> {
    this.require('hessian');
    const input = this.inputName(layer);
    return this.f64(statNames.mean(input), 1, this.inputWidth(input));
  }

  async input(layer: string): Promise<InputStats> {
    const name = this.inputName(layer);
    const mean = await this.mean(name);
    return { name, width: mean.length, hessian: await this.hessian(name), mean, tokens: this.info.tokens };
  }

  private layerIndex(l: number): number {
    if (!Number.isInteger(l) || l < 0 || l >= this.info.model.numLayers)
      throw new LineageError(`layer ${l} does not exist (the model has ${this.info.model.numLayers})`);
    return l;
  }

  /** Minitron MLP neuron importance of layer l, [intermediate]: √Σ_b (mean_t |x|)² at the down projection's input. */
  async neuronImportance(l: number): Promise<Float64Array> {
    this.require('importance');
    return this.f64(statNames.neurons(this.layerIndex(l)));
  }

  /** Attention head importance of layer l, [heads]: √Σ_b (mean_t ‖head output‖₂)² at the o projection's input. */
  async headImportance(l: number): Promise<Float64Array> {
    this.require('importance');
    return this.f64(statNames.heads(this.layerIndex(l)));
  }

  /** The same per KV group (all query heads sharing a KV head), [kvHeads]. */
  async kvGroupImportance(l: number): Promise<Float64Array> {
    this.require('importance');
    return this.f64(statNames.kvGroups(this.layerIndex(l)));
  }

  /** Channel importance of one RMSNorm's output in layer l, [hidden]. */
  async normImportance(
    l: number,
    norm: 'input_layernorm' | 'post_attention_layernorm',
  ): Promise<Float64Array> {
    this.require('importance');
    return this.f64(statNames.norm(this.layerIndex(l), norm));
  }

  /** Embedding channel importance, [hidden]: the per-norm scores summed over every layer's two RMSNorms. */
  async channelImportance(): Promise<Float64Array> {
    this.require('importance');
    return this.f64(statNames.channels);
  }

  /** Block Importance per layer, [layers]: 1 − mean over tokens of cos(layer input, layer output). */
  async blockImportance(): Promise<Float64Array> {
    this.require('importance');
    return this.f64(statNames.blocks);
  }

  /** Writes the statistics to a safetensors file (atomically) with the JSON metadata block. */
  async save(path: string): Promise<void> {
    await writeSafetensors(path, this.source, { [STATS_METADATA_KEY]: JSON.stringify(this.info) });
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}

function parseInfo(meta: Readonly<Record<string, string>>, path: string): StatsInfo {
  const raw = meta[STATS_METADATA_KEY];
  if (raw === undefined) {
    throw new LineageError(
      `not a Lineage statistics file (no '${STATS_METADATA_KEY}' metadata; make one with lineage calibrate)`,
      path,
    );
  }
  let info: StatsInfo;
  try {
    info = JSON.parse(raw) as StatsInfo;
  } catch {
    throw new LineageError(`metadata '${STATS_METADATA_KEY}' is not valid JSON`, path);
  }
  if (info?.format !== 'lineage-calibration-stats' || typeof info.modelFingerprint !== 'string')
    throw new LineageError(`metadata '${STATS_METADATA_KEY}' does not describe calibration statistics`, path);
  if (info.version !== 1)
    throw new LineageError(`statistics format version ${info.version} is not supported (this reads 1)`, path);
  for (const s of info.statistics ?? []) {
    if (!(STATISTICS as readonly string[]).includes(s))
      throw new LineageError(`unknown statistic '${s}' in the metadata`, path);
  }
  return info;
}

/** What a statistics file must match: a model (its fingerprint is computed) or a fingerprint. */
export type StatsTarget = LlamaModel | { fingerprint: string } | { fingerprint(): Promise<string> };

async function targetFingerprint(t: StatsTarget): Promise<string> {
  if ('fingerprint' in t) return typeof t.fingerprint === 'string' ? t.fingerprint : t.fingerprint();
  return modelFingerprint(t as LlamaModel);
}

/** Reads only the JSON metadata of a statistics file. */
export async function readStatsInfo(path: string): Promise<StatsInfo> {
  const f = await SafetensorsFile.open(path);
  try {
    return parseInfo(f.metadata, path);
  } finally {
    await f.close();
  }
}

/**
 * Opens a statistics file for `target`, refusing it when it was computed for another model. Tensors are read
 * on demand; `close()` the result when done.
 */
export async function loadStats(path: string, target: StatsTarget): Promise<CalibrationStats> {
  const f = await SafetensorsFile.open(path);
  try {
    const info = parseInfo(f.metadata, path);
    const want = await targetFingerprint(target);
    if (info.modelFingerprint !== want) {
      throw new LineageError(
        `statistics were computed for another model (fingerprint ${short(info.modelFingerprint)}, this model is ${short(want)}); recompute them with lineage calibrate`,
        path,
      );
    }
    if (!('fingerprint' in target)) checkShape(info, target, path);
    return new CalibrationStats(info, f);
  } catch (e) {
    await f.close();
    throw e;
  }
}

/** Statistics whose recorded shape is not the model's (a forged fingerprint cannot hide that). */
function checkShape(info: StatsInfo, model: LlamaModel, path: string): void {
  const c = model.config;
  const have: Record<string, number> = {
    numLayers: c.numLayers,
    hiddenSize: c.hiddenSize,
    intermediateSize: c.intermediateSize,
    numHeads: c.numHeads,
    headDim: c.headDim,
  };
  const recorded = (info.model ?? {}) as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(have))
    if (recorded[k] !== v)
      throw new LineageError(
        `statistics were computed for a model of another shape (${k} ${String(recorded[k])}, this model has ${v}); recompute them with lineage calibrate`,
        path,
      );
}

function short(fp: string): string {
  return fp.replace(/^sha256:/, '').slice(0, 12);
}

/** The statistics a method context carries, typed; a one-line error when absent or missing a statistic. */
export function statsOf(ctx: Pick<MethodContext, 'stats'>, ...need: StatisticName[]): MethodStats {
  const s = ctx.stats;
  if (!s) {
    throw new LineageError(
      'this method needs calibration statistics: run lineage calibrate and pass its output (--stats <file>)',
    );
  }
  s.require(...need);
  return s;
}

// ----------------------------------------------------------------------------------------------- spooling

interface Spooled {
  dtype: DType;
  shape: readonly number[];
  offset: number;
  byteLength: number;
}

/**
 * Tensors appended to a hidden temporary file as layers finish (so statistics never accumulate in memory),
 * readable back one at a time as a TensorSource for the final safetensors write. `discard()` removes it.
 */
export class StatsSpool implements TensorSource {
  private readonly entries = new Map<string, Spooled>();
  private size = 0;

  private constructor(
    readonly path: string,
    private handle: FileHandle | undefined,
  ) {}

  /** Creates the spool beside `target` (same filesystem; fails early when the directory is not writable). */
  static async create(target: string): Promise<StatsSpool> {
    const abs = resolve(target);
    const path = join(
      dirname(abs),
      `.${basename(abs)}.spool-${process.pid}-${randomBytes(4).toString('hex')}`,
    );
    try {
      return new StatsSpool(path, await fsp.open(path, 'wx+'));
    } catch (e) {
      throw new LineageError(`cannot create: ${(e as Error).message.replace(/^[A-Z]+: /, '')}`, target);
    }
  }

  async put(name: string, t: HostTensor): Promise<void> {
    if (!this.handle) throw new Error('spool is closed');
    if (this.entries.has(name)) throw new Error(`duplicate statistic '${name}'`);
    const bytes = t.bytes();
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await this.handle.write(
        bytes,
        done,
        bytes.byteLength - done,
        this.size + done,
      );
      done += bytesWritten;
    }
    this.entries.set(name, {
      dtype: t.dtype,
      shape: [...t.shape],
      offset: this.size,
      byteLength: bytes.byteLength,
    });
    this.size += bytes.byteLength;
  }

  names(): string[] {
    return [...this.entries.keys()];
  }
  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: e.shape };
  }
  async read(name: string): Promise<HostTensor> {
    return this.readInto(name, false);
  }

  /**
   * The spool as a source whose every read reuses one buffer: for a consumer that is done with a tensor before
   * it reads the next (the safetensors writer), so writing the file holds one tensor, not a trail of garbage.
   */
  oneAtATime(): TensorSource {
    return {
      path: this.path,
      names: () => this.names(),
      info: (name) => this.info(name),
      read: (name) => this.readInto(name, true),
      close: async () => {},
    };
  }

  private scratch: ArrayBuffer | undefined;

  private async readInto(name: string, reuse: boolean): Promise<HostTensor> {
    const e = this.entry(name);
    if (!this.handle) throw new Error('spool is closed');
    let t: HostTensor;
    if (reuse && e.dtype === 'f64') {
      if (!this.scratch || this.scratch.byteLength < e.byteLength)
        this.scratch = new ArrayBuffer(e.byteLength);
      t = new HostTensor('f64', e.shape, new Float64Array(this.scratch, 0, e.byteLength / 8));
    } else t = HostTensor.zeros(e.dtype, e.shape);
    const out = t.bytes();
    let done = 0;
    while (done < e.byteLength) {
      const { bytesRead } = await this.handle.read(out, done, e.byteLength - done, e.offset + done);
      if (bytesRead <= 0) throw new Error(`spool ended early reading '${name}'`);
      done += bytesRead;
    }
    return t;
  }
  private entry(name: string): Spooled {
    const e = this.entries.get(name);
    if (!e) throw new LineageError(`no tensor named '${name}'`);
    return e;
  }
  async close(): Promise<void> {}

  /** Closes and deletes the spool file. */
  async discard(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close().catch(() => {});
    await fsp.rm(this.path, { force: true }).catch(() => {});
  }
}
