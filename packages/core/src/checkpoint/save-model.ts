import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { writeDirAtomic, writeFileAtomic } from '../io/atomic.js';
import { toHFConfig } from '../io/hf-config.js';
import { writeLlama2c } from '../io/llama2c.js';
import { writeSafetensors, writeShardedSafetensors } from '../io/safetensors.js';
import type { LlamaModel } from '../nn/llama.js';
import type { DType } from '../tensor/dtype.js';
import { isFloat } from '../tensor/dtype.js';
import { finiteMagnitude, HALF_MAX_FINITE, HALF_OVERFLOW_AT } from '../tensor/half.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { llama2cToTokenizerJson, tokenizerJsonToLlama2c } from '../tokenizer/convert-tokenizer.js';
import { Llama2cTokenizer } from '../tokenizer/llama2c-tokenizer.js';
import { LineageError } from '../util/errors.js';
import { LINEAGE_CONFIG_KEY, type LineageConfigBlock } from './load-model.js';

export interface SaveOptions {
  format: 'hf' | 'llama2c';
  /** Float dtype for dense weights (embeddings, norms, dense linears); others keep their stored dtype. */
  dtype?: 'f32' | 'f16' | 'bf16';
  /** Replace an existing output. */
  overwrite?: boolean;
  /** Shard HF weights above this many bytes per file (default 2 GiB). */
  maxShardBytes?: number;
  /** Extra provenance recorded under config.json's `lineage` key (e.g. a method's lineage record). */
  provenance?: Record<string, unknown>;
  /**
   * Weights beyond the largest finite value of `dtype` (65504 for f16) are an error naming the tensor
   * (they would become infinities); with `clamp` they are clamped to it, with a `warn` per tensor.
   */
  clamp?: boolean;
  /** Receives warnings (clamped tensors). */
  warn?: (message: string) => void;
}

/** `t` cast to `dtype`, refusing (or clamping, with a warning) finite values the dtype would turn into infinities. */
function castChecked(name: string, t: HostTensor, dtype: DType, out: string, opts: SaveOptions): HostTensor {
  if ((dtype !== 'f16' && dtype !== 'bf16') || t.dtype === dtype) return t.cast(dtype);
  const limit = HALF_OVERFLOW_AT[dtype];
  let v = t.toF32();
  // NaN-blind, and no verdict on a tensor holding infinities: non-finite weights are checked where they are loaded
  const { max: m, infinite } = finiteMagnitude(v);
  if (!(m >= limit) || infinite) return t.cast(dtype);
  const max = HALF_MAX_FINITE[dtype];
  if (!opts.clamp) {
    throw new LineageError(
      `tensor '${name}' has values up to ${m.toPrecision(6)} in magnitude, beyond the largest ${dtype} (${max}); converting would make them infinite (pass --clamp to clamp them to ±${max}, or keep f32)`,
      out,
    );
  }
  let n = 0;
  v = Float32Array.from(v, (x) => {
    if (Math.abs(x) < limit || !Number.isFinite(x)) return x;
    n++;
    return Math.sign(x) * max;
  });
  opts.warn?.(
    `warning: clamped ${n} value(s) of tensor '${name}' (up to ${m.toPrecision(6)} in magnitude) to ±${max} for ${dtype}`,
  );
  return HostTensor.fromF32(v, t.shape, dtype);
}

const TORCH_DTYPE: Record<string, string> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };

function denseStateDict(
  model: LlamaModel,
  dtype: DType | undefined,
  out: string,
  opts: SaveOptions,
): Map<string, HostTensor> {
  const sd = model.stateDict();
  if (!dtype) return sd;
  const nonDense = new Set(Object.keys(model.layerKinds()));
  const result = new Map<string, HostTensor>();
  for (const [name, t] of sd) {
    const layer = name.slice(0, name.lastIndexOf('.'));
    result.set(name, isFloat(t.dtype) && !nonDense.has(layer) ? castChecked(name, t, dtype, out, opts) : t);
  }
  return result;
}

/**
 * Writes `model`'s tokenizer into `dir` as Hugging Face files (tokenizer.json, tokenizer_config.json): a
 * llama2.c tokenizer converted, an HF one's files copied. Nothing when the model has no tokenizer.
 */
export async function writeHFTokenizer(model: LlamaModel, dir: string): Promise<void> {
  const tok = model.tokenizer;
  if (!tok) return;
  if (tok instanceof Llama2cTokenizer) {
    const { tokenizerJson, tokenizerConfig } = llama2cToTokenizerJson(tok);
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2));
    return;
  }
  // An HF tokenizer: carry its files over unchanged.
  const srcDir = tok.source.endsWith('.json') ? dirname(tok.source) : tok.source;
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model']) {
    if (existsSync(join(srcDir, f))) await copyFile(join(srcDir, f), join(dir, f));
  }
}

async function llama2cTokenizerBytes(model: LlamaModel): Promise<Uint8Array | undefined> {
  const tok = model.tokenizer;
  if (!tok) return undefined;
  if (tok instanceof Llama2cTokenizer) return new Uint8Array(await readFile(tok.source));
  const json = JSON.parse(
    await readFile(tok.source.endsWith('.json') ? tok.source : join(tok.source, 'tokenizer.json'), 'utf8'),
  );
  return tokenizerJsonToLlama2c(json).bytes;
}

/**
 * Saves a model as a Hugging Face directory (config.json, safetensors, tokenizer files) or a llama2.c
 * `.bin` (with the tokenizer written beside it as tok{vocab}.bin). Output appears atomically.
 */
export async function saveModel(model: LlamaModel, out: string, opts: SaveOptions): Promise<void> {
  if (opts.format === 'llama2c') {
    const kinds = Object.entries(model.layerKinds());
    if (kinds.length) {
      const [name, { kind }] = kinds[0]!;
      throw new LineageError(
        `the llama2.c format holds dense layers only, but '${name}' is a '${kind}' layer; save as hf, or densify it (model.densified(), lineage convert --dense)`,
        out,
      );
    }
    if (opts.dtype && opts.dtype !== 'f32')
      throw new LineageError('the llama2.c format stores f32 weights only', out);
    if (!opts.overwrite && existsSync(out))
      throw new LineageError('output exists (pass --force to replace it)', out);
    // run.c reads one tokenizer piece per vocabulary row: a padded vocabulary has no llama2.c form
    const tokSize = model.tokenizer?.vocabSize;
    if (tokSize !== undefined && tokSize < model.config.vocabSize)
      throw new LineageError(
        `the llama2.c format needs a tokenizer piece for each of the model's ${model.config.vocabSize} vocabulary rows, but the tokenizer has ${tokSize} (a padded vocabulary); save as hf`,
        out,
      );
    const tokBytes = await llama2cTokenizerBytes(model);
    const tokOut = join(dirname(out), `tok${model.config.vocabSize}.bin`);
    if (
      tokBytes &&
      existsSync(tokOut) &&
      !Buffer.from(await readFile(tokOut)).equals(Buffer.from(tokBytes))
    ) {
      throw new LineageError(
        `a different tokenizer already exists at ${basename(tokOut)} beside the output`,
        tokOut,
      );
    }
    await mkdir(dirname(out), { recursive: true });
    await writeLlama2c(out, model.config, model.stateDict());
    if (tokBytes && !existsSync(tokOut)) await writeFileAtomic(tokOut, tokBytes);
    return;
  }
  const sd = denseStateDict(model, opts.dtype, out, opts);
  const layers = model.layerKinds();
  // Provenance first, then what this save knows for certain (format version, layer kinds).
  const lineage = { version: 1 } as LineageConfigBlock;
  if (model.provenance) Object.assign(lineage, model.provenance);
  if (opts.provenance) Object.assign(lineage, opts.provenance);
  lineage.version = 1;
  if (Object.keys(layers).length) lineage.layers = layers;
  else delete lineage.layers;
  const firstFloat = [...sd.values()].find((t) => isFloat(t.dtype));
  const config = toHFConfig(model.config, {
    torch_dtype: TORCH_DTYPE[opts.dtype ?? firstFloat?.dtype ?? 'f32'],
    ...(Object.keys(lineage).length > 1 ? { [LINEAGE_CONFIG_KEY]: lineage } : {}),
  });
  let total = 0;
  for (const t of sd.values()) total += t.byteLength;
  const maxShard = opts.maxShardBytes ?? 2 * 1024 ** 3;
  await writeDirAtomic(
    out,
    async (tmp) => {
      await writeFile(join(tmp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
      const gen: Record<string, unknown> = {};
      if (model.config.bosTokenId !== undefined) gen.bos_token_id = model.config.bosTokenId;
      if (model.config.eosTokenId !== undefined) gen.eos_token_id = model.config.eosTokenId;
      await writeFile(join(tmp, 'generation_config.json'), `${JSON.stringify(gen, null, 2)}\n`);
      const meta = { format: 'pt' };
      if (total > maxShard)
        await writeShardedSafetensors(tmp, sd, { maxShardBytes: maxShard, metadata: meta });
      else await writeSafetensors(join(tmp, 'model.safetensors'), sd, meta);
      await writeHFTokenizer(model, tmp);
    },
    { overwrite: opts.overwrite ?? false },
  );
}
