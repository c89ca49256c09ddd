import { createHash } from 'node:crypto';
import {
  BLOCK_LINEARS,
  checkpointReader,
  type DecoderBlock,
  HostTensor,
  type LineageConfigBlock,
  LineageError,
  type LlamaConfig,
  LlamaModel,
  type LoadOptions,
  modelFingerprint,
  openCheckpoint,
  Parameter,
  type TensorSource,
  type Tokenizer,
} from '@lineage/core';
import { chunkBuffer, gatherFromTable, gatherRows, locateTensor, streamBytes } from './embedding.js';

/** A decoder layer made available to the walk: `model.block(ops, index, …)` runs it. */
export interface LayerView {
  /** The model to call `block()` on: the whole model, or (streamed) a one-layer model holding this layer. */
  readonly model: LlamaModel;
  /** The index to pass to `model.block()` (the layer's own index for an in-memory model, 0 when streamed). */
  readonly index: number;
  /** Frees the layer's device copies (and, streamed, drops its weights). */
  release(): void;
}

/**
 * A model as the layer-streamed walk sees it: the config, the tokenizer, the embedding table and one layer at
 * a time. `fromModel` wraps a loaded LlamaModel; `openStreamedModel` reads a checkpoint layer by layer so only
 * one layer's weights are ever in memory.
 */
export interface LayeredModel {
  readonly config: LlamaConfig;
  readonly tokenizer: Tokenizer | undefined;
  /** 'memory': a loaded LlamaModel; 'streamed': a checkpoint read one layer at a time. */
  readonly kind: 'memory' | 'streamed';
  /** Whether the model has a separate output head (`lm_head`), whose input statistics are then collected. */
  readonly hasLmHead: boolean;
  /** The model's fingerprint (`modelFingerprint` of core: config and every stored tensor). */
  fingerprint(): Promise<string>;
  /**
   * Writes the embedding of every token of `sequences` (f32) to `out`, sequence i from row `firstRow[i]`.
   * Streamed checkpoints read only the table's rows the tokens need, by offset.
   */
  embed(sequences: readonly Int32Array[], out: Float32Array, firstRow: readonly number[]): Promise<void>;
  /** Layer `l`, its weights loaded. Call `release()` when done with it. */
  layer(l: number): Promise<LayerView>;
  /** The final RMSNorm weight (stored). */
  finalNorm(): Promise<Parameter>;
  close(): Promise<void>;
}

export function isLayeredModel(x: unknown): x is LayeredModel {
  return (
    typeof x === 'object' && x !== null && 'kind' in x && typeof (x as LayeredModel).layer === 'function'
  );
}

function releaseBlock(b: DecoderBlock): void {
  b.inputNorm.release();
  b.postNorm.release();
  for (const s of BLOCK_LINEARS) for (const p of b.linears[s].parameters().values()) p.release();
}

/** Wraps a loaded model (all weights already in memory). */
export function fromModel(model: LlamaModel): LayeredModel {
  return {
    config: model.config,
    tokenizer: model.tokenizer,
    kind: 'memory',
    hasLmHead: model.lmHead !== undefined,
    fingerprint: async () => modelFingerprint(model),
    embed: async (sequences, out, firstRow) => gatherFromTable(model.embed.value, sequences, out, firstRow),
    async layer(l) {
      const b = model.blocks[l];
      if (!b) throw new RangeError(`layer ${l} does not exist (the model has ${model.blocks.length})`);
      return { model, index: l, release: () => releaseBlock(b) };
    },
    finalNorm: async () => model.norm,
    async close() {},
  };
}

export function toLayered(model: LlamaModel | LayeredModel): LayeredModel {
  return isLayeredModel(model) ? model : fromModel(model);
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * `modelFingerprint` computed from a tensor source, one tensor at a time, without building the model. Equal
 * to `modelFingerprint(loadModel(path).model)` (the tests check it).
 */
export async function sourceFingerprint(config: LlamaConfig, source: TensorSource): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify(config));
  const names = source
    .names()
    .filter((n) => !n.endsWith('rotary_emb.inv_freq'))
    .sort(byName);
  const buf = chunkBuffer();
  for (const name of names) {
    // Large tensors are hashed in chunks read by offset, so the largest (the embedding) is never held whole.
    const at = await locateTensor(source, name);
    if (at) {
      const { dtype, shape } = source.info(name);
      h.update(`\0${name}\0${dtype}\0${shape.join(',')}\0`);
      await streamBytes(at, (chunk) => h.update(chunk), buf);
      continue;
    }
    const t = await source.read(name);
    h.update(`\0${name}\0${t.dtype}\0${t.shape.join(',')}\0`);
    h.update(t.bytes());
  }
  return `sha256:${h.digest('hex')}`;
}

/**
 * Reads decoder layer `l` from a checkpoint source, checking names and shapes as loadModel does (layer kinds
 * other than dense `linear` are rebuilt through their registered loaders).
 */
export async function readBlock(
  config: LlamaConfig,
  source: TensorSource,
  l: number,
  lineage?: LineageConfigBlock,
): Promise<DecoderBlock> {
  return checkpointReader(config, source, lineage).block(l);
}

/**
 * Opens a checkpoint (llama2.c `.bin` or HF directory) for layer-streamed work: nothing but the header and the
 * tokenizer is read now; `layer(l)` reads that layer's tensors by offset and `release()` drops them, so peak
 * memory holds one layer's weights, not the model's.
 */
export async function openStreamedModel(path: string, opts: LoadOptions = {}): Promise<LayeredModel> {
  const ck = await openCheckpoint(path, opts);
  const { config, source } = ck;
  const names = new Set(source.names());
  const hasLmHead = names.has('lm_head.weight') || ck.lineage?.layers?.lm_head !== undefined;
  let fp: string | undefined;
  // A one-layer model around the current block: block() needs the config (heads, eps, RoPE) and the block.
  const viewConfig: LlamaConfig = { ...config, numLayers: 1 };
  const stubEmbed = new Parameter(HostTensor.zeros('f32', [0, config.hiddenSize]));
  let norm: Parameter | undefined;
  return {
    config,
    tokenizer: ck.tokenizer,
    kind: 'streamed',
    hasLmHead,
    async fingerprint() {
      fp ??= await sourceFingerprint(config, source);
      return fp;
    },
    async embed(sequences, out, firstRow) {
      const name = 'model.embed_tokens.weight';
      if (!names.has(name)) throw new LineageError(`missing tensor '${name}'`, source.path);
      const { shape } = source.info(name);
      if (shape.length !== 2 || shape[0] !== config.vocabSize || shape[1] !== config.hiddenSize) {
        throw new LineageError(
          `tensor '${name}' has shape [${shape}], the config implies [${config.vocabSize}, ${config.hiddenSize}]`,
          source.path,
        );
      }
      await gatherRows(source, name, sequences, out, firstRow);
    },
    async layer(l) {
      if (!Number.isInteger(l) || l < 0 || l >= config.numLayers)
        throw new RangeError(`layer ${l} does not exist (the model has ${config.numLayers})`);
      const block = await readBlock(config, source, l, ck.lineage);
      const model = new LlamaModel(viewConfig, stubEmbed, [block], stubEmbed, undefined, ck.tokenizer);
      return { model, index: 0, release: () => releaseBlock(block) };
    },
    async finalNorm() {
      if (!norm) {
        const t = await source.read('model.norm.weight');
        if (t.shape.length !== 1 || t.shape[0] !== config.hiddenSize)
          throw new LineageError(`tensor 'model.norm.weight' has shape [${t.shape}]`, source.path);
        norm = new Parameter(t);
      }
      return norm;
    },
    async close() {
      norm?.release();
      await source.close();
    },
  };
}
