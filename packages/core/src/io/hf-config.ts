import type { Architecture, LlamaConfig, RopeScaling } from '../nn/config.js';
import { LineageError } from '../util/errors.js';

const ARCH_CLASS: Record<Architecture, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};
const SUPPORTED = Object.keys(ARCH_CLASS).join(', ');

/** transformers' per-architecture defaults for max_position_embeddings (LlamaConfig, MistralConfig, Qwen2Config). */
const DEFAULT_MAX_POSITIONS: Record<Architecture, number> = { llama: 2048, mistral: 4096 * 32, qwen2: 32768 };

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

/**
 * Maps a Hugging Face `config.json` (llama, mistral, qwen2) to a LlamaConfig, applying the defaults
 * transformers applies to absent fields. Anything the model could not run faithfully is refused
 * (LineageError naming `file` and the field), never silently approximated.
 */
export function parseHFConfig(json: unknown, file: string): LlamaConfig {
  const bad = (msg: string): never => {
    throw new LineageError(msg, file);
  };
  if (!isPlainObject(json)) bad('config is not a JSON object');
  const c = json as Record<string, unknown>;
  const has = (k: string) => c[k] !== undefined && c[k] !== null;

  // model_type selects the config class in transformers; architectures is the fallback.
  let arch: Architecture | undefined;
  if (has('model_type')) {
    const mt = c['model_type'];
    if (typeof mt !== 'string' || !(mt in ARCH_CLASS))
      bad(`unknown architecture ${describe(mt)} (supported: ${SUPPORTED})`);
    arch = mt as Architecture;
  } else if (Array.isArray(c['architectures']) && c['architectures'].length > 0) {
    const cls = c['architectures'][0];
    arch = (Object.keys(ARCH_CLASS) as Architecture[]).find((a) => ARCH_CLASS[a] === cls);
    if (!arch) bad(`unknown architecture ${describe(cls)} (supported: ${SUPPORTED})`);
  } else {
    bad(`config has neither model_type nor architectures (supported: ${SUPPORTED})`);
  }
  const a = arch!;

  const posInt = (k: string, v: unknown = c[k]): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      bad(
        v === undefined || v === null
          ? `missing required field ${k}`
          : `${k} must be a positive integer, got ${describe(v)}`,
      );
    }
    // no real model has a size past 2^31 (a tensor dimension, a vocabulary): a typo or a forged file
    if ((v as number) > 2 ** 31 - 1) bad(`${k} ${v} is too large (at most ${2 ** 31 - 1})`);
    return v as number;
  };
  const optPosInt = (k: string, dflt: number): number => (has(k) ? posInt(k) : dflt);
  const posNum = (k: string, v: unknown, dflt: number): number => {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      bad(`${k} must be a positive number, got ${describe(v)}`);
    return v as number;
  };
  const bool = (k: string, dflt: boolean): boolean => {
    if (!has(k)) return dflt;
    if (typeof c[k] !== 'boolean') bad(`${k} must be true or false, got ${describe(c[k])}`);
    return c[k] as boolean;
  };
  const tokenId = (k: string, vocab: number): number | undefined => {
    const raw = c[k];
    // Llama 3 lists several end tokens; the first is the one generation stops on by convention.
    const all = Array.isArray(raw) ? raw : [raw];
    if (raw === undefined || raw === null || all.length === 0) return undefined;
    for (const v of all) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
        bad(`${k} must be a token id, got ${describe(raw)}`);
      if ((v as number) >= vocab) bad(`${k} ${v} is outside the vocabulary (vocab_size ${vocab})`);
    }
    return all[0] as number;
  };

  const hiddenSize = posInt('hidden_size');
  const intermediateSize = posInt('intermediate_size');
  const numLayers = posInt('num_hidden_layers');
  const numHeads = posInt('num_attention_heads');
  const vocabSize = posInt('vocab_size');
  const numKvHeads = optPosInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    bad(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  let headDim: number;
  if (has('head_dim')) headDim = posInt('head_dim');
  else if (hiddenSize % numHeads === 0) headDim = hiddenSize / numHeads;
  else
    bad(
      `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads} and head_dim is not given`,
    );
  if (headDim! % 2 !== 0) bad(`head_dim ${headDim!} must be even for rotary embeddings`);

  const act = c['hidden_act'] ?? c['hidden_activation'];
  if (act !== undefined && act !== null && act !== 'silu')
    bad(`hidden_act ${describe(act)} is not supported (only silu)`);

  // transformers v5 moves rope_theta/rope_scaling into rope_parameters; accept either.
  if (has('rope_parameters') && !isPlainObject(c['rope_parameters']))
    bad(`rope_parameters must be an object or null, got ${describe(c['rope_parameters'])}`);
  const ropeParams = isPlainObject(c['rope_parameters']) ? c['rope_parameters'] : undefined;
  const ropeTheta = posNum('rope_theta', c['rope_theta'] ?? ropeParams?.['rope_theta'], 10000);
  const ropeScaling = parseRopeScaling(c['rope_scaling'] ?? ropeParams, bad);

  let qkvBias = false;
  let oBias = false;
  let mlpBias = false;
  if (a === 'llama') {
    qkvBias = oBias = bool('attention_bias', false);
    mlpBias = bool('mlp_bias', false);
  } else if (a === 'qwen2') {
    qkvBias = true; // Qwen2Attention hard-codes bias on q/k/v and none on o
  }

  let slidingWindow: number | undefined;
  // MistralConfig defaults sliding_window to 4096 when the key is absent; an explicit null means none.
  if (a === 'mistral') {
    if (!('sliding_window' in c)) slidingWindow = 4096;
    else if (has('sliding_window')) slidingWindow = posInt('sliding_window');
  }
  if (a === 'qwen2' && bool('use_sliding_window', false)) {
    bad('use_sliding_window is not supported for qwen2 (per-layer sliding windows)');
  }

  const cfg: LlamaConfig = {
    architecture: a,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim: headDim!,
    maxPositions: optPosInt('max_position_embeddings', DEFAULT_MAX_POSITIONS[a]),
    rmsNormEps: posNum('rms_norm_eps', c['rms_norm_eps'], 1e-6),
    ropeTheta,
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    qkvBias,
    oBias,
    mlpBias,
  };
  if (ropeScaling) cfg.ropeScaling = ropeScaling;
  const bos = tokenId('bos_token_id', vocabSize);
  const eos = tokenId('eos_token_id', vocabSize);
  if (bos !== undefined) cfg.bosTokenId = bos;
  if (eos !== undefined) cfg.eosTokenId = eos;
  if (slidingWindow !== undefined) cfg.slidingWindow = slidingWindow;
  return cfg;
}

function parseRopeScaling(raw: unknown, bad: (msg: string) => never): RopeScaling | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isPlainObject(raw)) bad(`rope_scaling must be an object or null, got ${describe(raw)}`);
  const r = raw as Record<string, unknown>;
  const type = r['rope_type'] ?? r['type'];
  if (type === undefined || type === 'default') return undefined;
  const num = (k: string): number => {
    const v = r[k];
    if (v === undefined || v === null) bad(`rope_scaling.${k} is missing`);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      bad(`rope_scaling.${k} must be a positive number, got ${describe(v)}`);
    }
    return v as number;
  };
  if (type === 'linear') return { type: 'linear', factor: num('factor') };
  if (type === 'llama3') {
    const factor = num('factor');
    const lowFreqFactor = num('low_freq_factor');
    const highFreqFactor = num('high_freq_factor');
    const orig = num('original_max_position_embeddings');
    if (!Number.isSafeInteger(orig))
      bad(`rope_scaling.original_max_position_embeddings must be an integer, got ${orig}`);
    return { type: 'llama3', factor, lowFreqFactor, highFreqFactor, originalMaxPositions: orig };
  }
  return bad(`rope_scaling type ${describe(type)} is not supported (supported: llama3, linear)`);
}

/**
 * A `config.json` object transformers loads as `cfg`'s architecture. `extra` (e.g. `{ torch_dtype:
 * 'bfloat16' }`) is merged last. Throws a LineageError when the architecture's transformers class
 * cannot express the config (e.g. Llama with q/k/v bias but no o bias).
 */
export function toHFConfig(cfg: LlamaConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const a = cfg.architecture;
  if (!(a in ARCH_CLASS)) throw new LineageError(`unknown architecture '${a}' (supported: ${SUPPORTED})`);
  const refuse = (what: string): never => {
    throw new LineageError(`${a} config.json cannot express ${what}`);
  };
  if (a === 'llama' && cfg.qkvBias !== cfg.oBias)
    refuse('q/k/v biases without an o bias (attention_bias covers all four)');
  if (a !== 'llama' && cfg.mlpBias) refuse('MLP biases');
  if (a === 'mistral' && (cfg.qkvBias || cfg.oBias)) refuse('attention biases');
  if (a === 'qwen2' && (!cfg.qkvBias || cfg.oBias)) refuse('attention biases other than q/k/v');
  if (a !== 'mistral' && cfg.slidingWindow !== undefined) refuse('a sliding window');

  const out: Record<string, unknown> = {
    architectures: [ARCH_CLASS[a]],
    model_type: a,
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    head_dim: cfg.headDim,
    hidden_act: 'silu',
    max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: cfg.tieWordEmbeddings,
  };
  if (cfg.ropeScaling) {
    const s = cfg.ropeScaling;
    if (s.type === 'linear') out['rope_scaling'] = { rope_type: 'linear', factor: s.factor };
    else {
      if (
        s.lowFreqFactor === undefined ||
        s.highFreqFactor === undefined ||
        s.originalMaxPositions === undefined
      ) {
        throw new LineageError(
          'llama3 rope scaling needs lowFreqFactor, highFreqFactor and originalMaxPositions',
        );
      }
      out['rope_scaling'] = {
        rope_type: 'llama3',
        factor: s.factor,
        low_freq_factor: s.lowFreqFactor,
        high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalMaxPositions,
      };
    }
  }
  if (a === 'llama') {
    out['attention_bias'] = cfg.qkvBias;
    out['mlp_bias'] = cfg.mlpBias;
  }
  if (a === 'mistral') out['sliding_window'] = cfg.slidingWindow ?? null;
  if (a === 'qwen2') out['use_sliding_window'] = false;
  if (cfg.bosTokenId !== undefined) out['bos_token_id'] = cfg.bosTokenId;
  if (cfg.eosTokenId !== undefined) out['eos_token_id'] = cfg.eosTokenId;
  return { ...out, ...extra };
}
