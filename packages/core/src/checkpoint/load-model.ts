import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readRegularFile } from '../io/fs-util.js';
import { parseHFConfig } from '../io/hf-config.js';
import { findDuplicateKey, jsonSyntaxReason } from '../io/json-keys.js';
import { openLlama2c } from '../io/llama2c.js';
import { SafetensorsFile, ShardedSafetensors } from '../io/safetensors.js';
import type { TensorSource } from '../io/tensor-source.js';
import type { LlamaConfig } from '../nn/config.js';
import { getLinearKind, type Json, type LinearLayer } from '../nn/layer.js';
import {
  type BlockLinear,
  type DecoderBlock,
  LlamaModel,
  modelLayout,
  type SlotSpec,
  type SlotValue,
} from '../nn/llama.js';
import '../nn/linear.js';
import { Parameter } from '../nn/parameter.js';
import { isFloat } from '../tensor/dtype.js';
import { ALLOW_NONFINITE_HINT, allowNonfiniteDefault, assertFinite } from '../tensor/finite.js';
import type { HostTensor } from '../tensor/host-tensor.js';
import { assertTokenizerFits, findTokenizerFor, loadTokenizer } from '../tokenizer/load-tokenizer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LineageError } from '../util/errors.js';

export type CheckpointFormat = 'llama2c' | 'hf';

export interface LoadOptions {
  /** Tokenizer file or directory; defaults to the one found with the model. */
  tokenizer?: string;
  /** Load without a tokenizer when none is found (inspect/convert need none). */
  tokenizerOptional?: boolean;
  /**
   * Accept NaN or infinite weights (default: allowNonfiniteDefault(), false unless set). Otherwise every
   * float tensor is scanned as it is read and the first non-finite one is a one-line error naming it.
   */
  allowNonfinite?: boolean;
}

export interface ReaderOptions {
  /** As LoadOptions.allowNonfinite. */
  allowNonfinite?: boolean;
  /**
   * How messages name the config the tensors are checked against ('config.json' for a Hugging Face
   * directory: a disagreement may be that file's fault as much as the weights'); default 'the config'.
   */
  configName?: string;
}

/** How the reader names a checkpoint's config: config.json for Hugging Face directories. */
export function configNameOf(format: CheckpointFormat): string {
  return format === 'hf' ? 'config.json' : 'the config';
}

export interface LoadedModel {
  model: LlamaModel;
  format: CheckpointFormat;
  path: string;
  /** Where the tokenizer came from, when one was loaded. */
  tokenizerPath?: string;
}

/** Key in config.json under which Lineage records non-dense layer kinds and provenance. */
export const LINEAGE_CONFIG_KEY = 'lineage';

export interface LineageConfigBlock {
  version: 1;
  layers?: Record<string, { kind: string; meta: Json }>;
  [k: string]: Json | undefined;
}

export function detectFormat(path: string): CheckpointFormat {
  if (!existsSync(path)) throw new LineageError('no such file or directory', path);
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, 'config.json'))) return 'hf';
    throw new LineageError('directory has no config.json (expected a Hugging Face model directory)', path);
  }
  if (path.endsWith('.json'))
    throw new LineageError('give the model directory, not a JSON file inside it', path);
  return 'llama2c';
}

async function readJson(file: string): Promise<unknown> {
  const text = (await readRegularFile(file)).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LineageError(`invalid JSON: ${jsonSyntaxReason(text, e)}`, file);
  }
  // JSON.parse keeps the last of two equal keys; which hidden_size was meant is not for us to guess.
  const dup = findDuplicateKey(text);
  if (dup) throw new LineageError(`the key '${dup.join('.')}' appears twice`, file);
  return json;
}

async function openHF(
  dir: string,
): Promise<{ config: LlamaConfig; source: TensorSource; lineage?: LineageConfigBlock }> {
  const cfgFile = join(dir, 'config.json');
  const raw = await readJson(cfgFile);
  const config = parseHFConfig(raw, cfgFile);
  const lineage = (raw as Record<string, unknown>)[LINEAGE_CONFIG_KEY] as LineageConfigBlock | undefined;
  const single = join(dir, 'model.safetensors');
  const index = join(dir, 'model.safetensors.index.json');
  let source: TensorSource;
  if (existsSync(single)) source = await SafetensorsFile.open(single);
  else if (existsSync(index)) source = await ShardedSafetensors.open(index);
  else
    throw new LineageError(
      'no model.safetensors or model.safetensors.index.json (only safetensors weights are supported)',
      dir,
    );
  return { config, source, lineage };
}

/** A checkpoint's tensors, read and checked against the config as loadModel does. */
export interface CheckpointReader {
  readonly names: ReadonlySet<string>;
  /** The names read so far. */
  readonly used: ReadonlySet<string>;
  /** Tensor `name`, which must exist and (given `shape`) have that shape. */
  take(name: string, shape?: readonly number[]): Promise<HostTensor>;
  /** Linear layer `name` of [out, inp] features, rebuilt by its recorded kind (dense `linear` by default). */
  linear(name: string, out: number, inp: number, bias: boolean): Promise<LinearLayer>;
  /** The tensor(s) of one slot of the layout, checked against the config. */
  fill(spec: SlotSpec): Promise<SlotValue>;
  /** Decoder layer `l`, its linears and norms checked against the config. */
  block(l: number): Promise<DecoderBlock>;
}

/** A reader of `source`'s tensors for a model of `config` (non-dense layer kinds from `lineage`). */
export function checkpointReader(
  config: LlamaConfig,
  source: TensorSource,
  lineage?: LineageConfigBlock,
  options: ReaderOptions = {},
): CheckpointReader {
  const file = source.path;
  const checkFinite = !(options.allowNonfinite ?? allowNonfiniteDefault());
  const cfg = options.configName ?? 'the config';
  // the layer count before anything is laid out: a config claiming a billion layers over a file of five
  // must fail at once, not after building a layout of billions of slots
  let layers = 0;
  for (const n of source.names()) {
    const m = /^model\.layers\.(\d+)\./.exec(n);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  if (config.numLayers > layers)
    throw new LineageError(
      `missing tensor 'model.layers.${layers}.input_layernorm.weight': ${cfg} has ${config.numLayers} layers (num_hidden_layers), the checkpoint ${layers}`,
      file,
    );
  const names = new Set(source.names());
  const used = new Set<string>();
  const take = async (name: string, shape?: readonly number[]): Promise<HostTensor> => {
    if (!names.has(name)) throw new LineageError(`missing tensor '${name}'`, file);
    used.add(name);
    const t = await source.read(name);
    if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
      throw new LineageError(`tensor '${name}' has shape [${t.shape}], ${cfg} implies [${shape}]`, file);
    }
    // a value error is the shard's that holds the tensor, not the index's
    if (checkFinite) assertFinite(name, t, source.fileOf?.(name) ?? file, ALLOW_NONFINITE_HINT);
    return t;
  };
  const norm = async (name: string, shape: readonly number[]): Promise<Parameter> => {
    const t = await take(name, shape);
    if (!isFloat(t.dtype))
      throw new LineageError(`tensor '${name}' is ${t.dtype}, but a norm weight must be a float type`, file);
    return new Parameter(t);
  };
  const linear = async (name: string, out: number, inp: number, bias: boolean): Promise<LinearLayer> => {
    const spec = lineage?.layers?.[name];
    const kind = getLinearKind(spec?.kind ?? 'linear', file);
    const tensors = new Map<string, HostTensor>();
    const prefix = `${name}.`;
    for (const n of names)
      if (n.startsWith(prefix) && !n.slice(prefix.length).includes('.'))
        tensors.set(n.slice(prefix.length), await take(n));
    if (!spec && bias && !tensors.has('bias'))
      throw new LineageError(`missing tensor '${name}.bias' (${cfg} asks for biases)`, file);
    try {
      return kind.load(tensors, spec?.meta ?? null, name, [out, inp]);
    } catch (e) {
      // a layer kind checks its shapes against "the config": name it as this checkpoint's readers do
      if (e instanceof LineageError && !e.file)
        throw new LineageError(e.message.replace(/\bthe config\b/, cfg), file);
      throw e;
    }
  };
  const fill = async (spec: SlotSpec): Promise<SlotValue> =>
    spec.kind === 'norm'
      ? norm(spec.name, spec.shape)
      : linear(spec.name, spec.out, spec.in, spec.kind === 'linear' && spec.bias);
  const block = async (l: number): Promise<DecoderBlock> => {
    // Layer l's slots only, built into a one-block view of the layout.
    const specs = modelLayout(config, false).filter((s) => s.kind !== 'embed' && s.layer === l);
    const values = new Map<string, SlotValue>();
    for (const spec of specs) values.set(spec.name, await fill(spec));
    const at = (spec: SlotSpec) => values.get(spec.name)!;
    const linears = {} as Record<BlockLinear, LinearLayer>;
    let inputNorm: Parameter | undefined;
    let postNorm: Parameter | undefined;
    for (const spec of specs) {
      if (spec.kind === 'linear') linears[spec.slot as BlockLinear] = at(spec) as LinearLayer;
      else if (spec.kind === 'norm' && spec.which === 'input') inputNorm = at(spec) as Parameter;
      else postNorm = at(spec) as Parameter;
    }
    return { inputNorm: inputNorm!, postNorm: postNorm!, linears };
  };
  return { names, used, take, linear, fill, block };
}

/** Builds a model from a tensor source, checking every tensor's presence and shape against the config. */
export async function buildModel(
  config: LlamaConfig,
  source: TensorSource,
  lineage?: LineageConfigBlock,
  options: ReaderOptions = {},
): Promise<LlamaModel> {
  const file = source.path;
  const { names, used, fill } = checkpointReader(config, source, lineage, options);
  const untiedHead = !config.tieWordEmbeddings || names.has('lm_head.weight') || !!lineage?.layers?.lm_head;
  const values = new Map<string, SlotValue>();
  for (const spec of modelLayout(config, untiedHead)) values.set(spec.name, await fill(spec));
  // HF checkpoints of older transformers versions carry rotary caches; they are derived, not weights.
  const extra = [...names].filter((n) => !used.has(n) && !n.endsWith('rotary_emb.inv_freq'));
  if (extra.length) {
    throw new LineageError(
      `unexpected tensor${extra.length > 1 ? 's' : ''} ${extra
        .slice(0, 3)
        .map((n) => `'${n}'`)
        .join(
          ', ',
        )}${extra.length > 3 ? ` and ${extra.length - 3} more` : ''} (not part of a ${config.architecture} model as ${options.configName ?? 'the config'} describes it)`,
      file,
    );
  }
  return LlamaModel.fromSlots(config, untiedHead, (spec) => values.get(spec.name)!);
}

async function resolveTokenizer(
  path: string,
  format: CheckpointFormat,
  config: LlamaConfig,
  opts: LoadOptions,
): Promise<{ tokenizer?: Tokenizer; tokenizerPath?: string }> {
  let tokPath = opts.tokenizer;
  if (!tokPath) {
    if (format === 'hf') tokPath = existsSync(join(path, 'tokenizer.json')) ? path : undefined;
    else tokPath = findTokenizerFor(path, config.vocabSize);
  }
  if (!tokPath) {
    if (opts.tokenizerOptional) return {};
    throw new LineageError(
      format === 'hf'
        ? 'no tokenizer.json in the model directory; pass --tokenizer <file>'
        : 'no tokenizer found beside the model (tok*.bin or tokenizer.bin); pass --tokenizer <file>',
      path,
    );
  }
  const tokenizer = await loadTokenizer(tokPath);
  // fewer tokens than vocab_size is a padded vocabulary (Qwen2 and others); more is an error naming both files
  assertTokenizerFits(tokenizer, config.vocabSize, format === 'hf' ? join(path, 'config.json') : path);
  return { tokenizer, tokenizerPath: tokPath };
}

export interface OpenedCheckpoint {
  config: LlamaConfig;
  /** Tensors read one at a time, by offset; the caller closes it. */
  source: TensorSource;
  /** The `lineage` block of config.json (non-dense layer kinds), for HF directories that have one. */
  lineage?: LineageConfigBlock;
  format: CheckpointFormat;
  path: string;
  tokenizer?: Tokenizer;
  tokenizerPath?: string;
}

/**
 * Opens a checkpoint without building the model: its config, a tensor source and its tokenizer (found as
 * loadModel finds it). For code that reads weights one layer at a time (e.g. layer-streamed calibration).
 */
export async function openCheckpoint(path: string, opts: LoadOptions = {}): Promise<OpenedCheckpoint> {
  const format = detectFormat(path);
  const opened = format === 'hf' ? await openHF(path) : { ...(await openLlama2c(path)), lineage: undefined };
  try {
    const tok = await resolveTokenizer(path, format, opened.config, opts);
    return {
      config: opened.config,
      source: opened.source,
      ...(opened.lineage ? { lineage: opened.lineage } : {}),
      format,
      path,
      ...tok,
    };
  } catch (e) {
    await opened.source.close();
    throw e;
  }
}

/** Loads a llama2.c `.bin` or a Hugging Face directory, with its tokenizer. */
export async function loadModel(path: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const format = detectFormat(path);
  const opened = format === 'hf' ? await openHF(path) : { ...(await openLlama2c(path)), lineage: undefined };
  try {
    const tok = await resolveTokenizer(path, format, opened.config, opts);
    const model = await buildModel(opened.config, opened.source, opened.lineage, {
      configName: configNameOf(format),
      ...(opts.allowNonfinite !== undefined ? { allowNonfinite: opts.allowNonfinite } : {}),
    });
    model.tokenizer = tok.tokenizer;
    if (opened.lineage) {
      const { version: _v, layers: _l, ...provenance } = opened.lineage;
      if (Object.keys(provenance).length) model.provenance = provenance as Record<string, Json>;
    }
    return { model, format, path, ...(tok.tokenizerPath ? { tokenizerPath: tok.tokenizerPath } : {}) };
  } finally {
    await opened.source.close();
  }
}
