import { describe, expect, it } from 'vitest';
import type { LlamaConfig } from '../nn/config.js';
import { LineageError } from '../util/errors.js';
import { parseHFConfig, toHFConfig } from './hf-config.js';

const FILE = '/models/x/config.json';

function expectError(fn: () => unknown, ...parts: string[]) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(LineageError);
  const msg = (err as Error).message;
  expect(msg).not.toMatch(/[\n\r]/);
  expect(msg).toContain('config.json');
  for (const p of parts) expect(msg).toContain(p);
}

// Abridged from the published config.json files of these models.
const LLAMA3_8B = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.43.0.dev0',
  use_cache: true,
  vocab_size: 128256,
};
const MISTRAL_7B_V01 = {
  architectures: ['MistralForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: 'mistral',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: 4096,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  vocab_size: 32000,
};
const QWEN2_05B = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: 'silu',
  hidden_size: 896,
  intermediate_size: 4864,
  max_position_embeddings: 131072,
  max_window_layers: 24,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 131072,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  use_sliding_window: false,
  vocab_size: 151936,
};
const MINIMAL = {
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 172,
  num_hidden_layers: 5,
  num_attention_heads: 8,
  vocab_size: 512,
};

describe('parseHFConfig', () => {
  it('reads a Llama 3 config with llama3 rope scaling and a list of EOS ids', () => {
    expect(parseHFConfig(LLAMA3_8B, FILE)).toEqual({
      architecture: 'llama',
      vocabSize: 128256,
      hiddenSize: 4096,
      intermediateSize: 14336,
      numLayers: 32,
      numHeads: 32,
      numKvHeads: 8,
      headDim: 128,
      maxPositions: 131072,
      rmsNormEps: 1e-5,
      ropeTheta: 500000,
      ropeScaling: {
        type: 'llama3',
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositions: 8192,
      },
      tieWordEmbeddings: false,
      qkvBias: false,
      oBias: false,
      mlpBias: false,
      bosTokenId: 128000,
      eosTokenId: 128001,
    } satisfies LlamaConfig);
  });

  it('reads Mistral (sliding window) and Qwen2 (q/k/v biases, tied embeddings)', () => {
    const m = parseHFConfig(MISTRAL_7B_V01, FILE);
    expect(m).toMatchObject({
      architecture: 'mistral',
      slidingWindow: 4096,
      headDim: 128,
      qkvBias: false,
      oBias: false,
    });
    expect(parseHFConfig({ ...MISTRAL_7B_V01, sliding_window: null }, FILE).slidingWindow).toBeUndefined();
    const q = parseHFConfig(QWEN2_05B, FILE);
    expect(q).toMatchObject({
      architecture: 'qwen2',
      headDim: 64,
      numKvHeads: 2,
      qkvBias: true,
      oBias: false,
      mlpBias: false,
      tieWordEmbeddings: true,
      ropeTheta: 1e6,
    });
    expect(q.slidingWindow).toBeUndefined();
  });

  it('applies transformers defaults to absent fields', () => {
    expect(parseHFConfig(MINIMAL, FILE)).toEqual({
      architecture: 'llama',
      vocabSize: 512,
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 8,
      headDim: 8,
      maxPositions: 2048,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      qkvBias: false,
      oBias: false,
      mlpBias: false,
    });
    const { model_type: _, ...noType } = MINIMAL;
    expect(parseHFConfig({ ...noType, architectures: ['MistralForCausalLM'] }, FILE)).toMatchObject({
      architecture: 'mistral',
      maxPositions: 131072,
      slidingWindow: 4096,
    });
    expect(parseHFConfig({ ...MINIMAL, model_type: 'qwen2' }, FILE).maxPositions).toBe(32768);
    expect(parseHFConfig({ ...MINIMAL, attention_bias: true, mlp_bias: true }, FILE)).toMatchObject({
      qkvBias: true,
      oBias: true,
      mlpBias: true,
    });
    expect(
      parseHFConfig({ ...MINIMAL, num_key_value_heads: null, rope_scaling: { rope_type: 'default' } }, FILE),
    ).toMatchObject({ numKvHeads: 8 });
    expect(
      parseHFConfig({ ...MINIMAL, rope_scaling: { type: 'linear', factor: 2 } }, FILE).ropeScaling,
    ).toEqual({ type: 'linear', factor: 2 });
    expect(parseHFConfig({ ...MINIMAL, head_dim: 16 }, FILE).headDim).toBe(16);
    // transformers v5 nests rope settings under rope_parameters.
    expect(
      parseHFConfig({ ...MINIMAL, rope_parameters: { rope_type: 'default', rope_theta: 5e5 } }, FILE)
        .ropeTheta,
    ).toBe(5e5);
  });

  it('rejects a missing or malformed required field, naming it', () => {
    for (const field of [
      'hidden_size',
      'intermediate_size',
      'num_hidden_layers',
      'num_attention_heads',
      'vocab_size',
    ]) {
      const { [field as keyof typeof MINIMAL]: _, ...rest } = MINIMAL;
      expectError(() => parseHFConfig(rest, FILE), `missing required field ${field}`);
      expectError(
        () => parseHFConfig({ ...MINIMAL, [field]: 0 }, FILE),
        `${field} must be a positive integer, got 0`,
      );
      expectError(
        () => parseHFConfig({ ...MINIMAL, [field]: '64' }, FILE),
        `${field} must be a positive integer`,
      );
    }
  });

  it('rejects unknown architectures', () => {
    expectError(
      () => parseHFConfig({ ...MINIMAL, model_type: 'gpt2' }, FILE),
      `unknown architecture "gpt2" (supported: llama, mistral, qwen2)`,
    );
    const { model_type: _, ...noType } = MINIMAL;
    expectError(
      () => parseHFConfig({ ...noType, architectures: ['FalconForCausalLM'] }, FILE),
      'unknown architecture "FalconForCausalLM"',
    );
    expectError(() => parseHFConfig(noType, FILE), 'neither model_type nor architectures');
    expectError(() => parseHFConfig([1], FILE), 'not a JSON object');
  });

  it('rejects what the model could not run faithfully', () => {
    expectError(
      () => parseHFConfig({ ...MINIMAL, num_key_value_heads: 3 }, FILE),
      'num_attention_heads 8 is not a multiple of num_key_value_heads 3',
    );
    expectError(
      () => parseHFConfig({ ...MINIMAL, rope_scaling: { rope_type: 'yarn', factor: 4 } }, FILE),
      `rope_scaling type "yarn" is not supported`,
    );
    expectError(
      () => parseHFConfig({ ...MINIMAL, rope_scaling: { rope_type: 'llama3', factor: 8 } }, FILE),
      'rope_scaling.low_freq_factor is missing',
    );
    expectError(
      () => parseHFConfig({ ...MINIMAL, hidden_act: 'gelu' }, FILE),
      'hidden_act "gelu" is not supported',
    );
    expectError(
      () => parseHFConfig({ ...MINIMAL, hidden_size: 60, num_attention_heads: 8 }, FILE),
      'not divisible',
    );
    expectError(
      () => parseHFConfig({ ...MINIMAL, rms_norm_eps: -1 }, FILE),
      'rms_norm_eps must be a positive number',
    );
    expectError(
      () => parseHFConfig({ ...MINIMAL, tie_word_embeddings: 'yes' }, FILE),
      'tie_word_embeddings must be true or false',
    );
    expectError(() => parseHFConfig({ ...QWEN2_05B, use_sliding_window: true }, FILE), 'use_sliding_window');
  });
});

describe('parseHFConfig rigour: each error names config.json and the field', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    [
      'bos outside the vocabulary',
      { bos_token_id: 512 },
      'bos_token_id 512 is outside the vocabulary (vocab_size 512)',
    ],
    [
      'an eos in a list outside it',
      { eos_token_id: [2, 9999] },
      'eos_token_id 9999 is outside the vocabulary',
    ],
    ['a negative token id', { eos_token_id: -1 }, 'eos_token_id must be a token id, got -1'],
    [
      'rope_parameters not an object',
      { rope_parameters: 'x' },
      'rope_parameters must be an object or null, got "x"',
    ],
    ['a missing required key', { hidden_size: undefined }, 'missing required field hidden_size'],
    ['a zero size', { num_hidden_layers: 0 }, 'num_hidden_layers must be a positive integer, got 0'],
    ['a fractional size', { intermediate_size: 17.5 }, 'intermediate_size must be a positive integer'],
    ['a size as a string', { vocab_size: '512' }, 'vocab_size must be a positive integer, got "512"'],
    [
      'heads not dividing hidden',
      { num_attention_heads: 7 },
      'hidden_size 64 is not divisible by num_attention_heads 7',
    ],
    [
      'kv heads not dividing heads',
      { num_key_value_heads: 3 },
      'num_attention_heads 8 is not a multiple of num_key_value_heads 3',
    ],
    ['an odd head_dim', { head_dim: 7 }, 'head_dim 7 must be even'],
    ['a non-positive rms_norm_eps', { rms_norm_eps: 0 }, 'rms_norm_eps must be a positive number'],
  ];
  for (const [label, patch, message] of cases) {
    it(label, () => {
      expect(() => parseHFConfig({ ...MINIMAL, ...patch }, FILE)).toThrow(`${FILE}: ${message}`);
    });
  }
  it('token ids inside the vocabulary are kept (the first of a list)', () => {
    expect(parseHFConfig({ ...MINIMAL, bos_token_id: 0, eos_token_id: [511, 3] }, FILE)).toMatchObject({
      bosTokenId: 0,
      eosTokenId: 511,
    });
  });
});

describe('toHFConfig', () => {
  const configs: LlamaConfig[] = [
    parseHFConfig(LLAMA3_8B, FILE),
    parseHFConfig(MISTRAL_7B_V01, FILE),
    parseHFConfig({ ...MISTRAL_7B_V01, sliding_window: null }, FILE),
    parseHFConfig(QWEN2_05B, FILE),
    parseHFConfig(
      {
        ...MINIMAL,
        attention_bias: true,
        mlp_bias: true,
        rope_scaling: { type: 'linear', factor: 4 },
        head_dim: 16,
      },
      FILE,
    ),
    parseHFConfig({ ...MINIMAL, bos_token_id: 1, eos_token_id: 2, tie_word_embeddings: true }, FILE),
  ];

  it('round-trips through parseHFConfig', () => {
    for (const cfg of configs) {
      const json = JSON.parse(JSON.stringify(toHFConfig(cfg)));
      expect(parseHFConfig(json, FILE)).toEqual(cfg);
    }
  });

  it('writes what transformers expects', () => {
    const j = toHFConfig(configs[0]!, { torch_dtype: 'bfloat16' });
    expect(j).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      torch_dtype: 'bfloat16',
      hidden_act: 'silu',
      num_key_value_heads: 8,
      head_dim: 128,
      attention_bias: false,
      mlp_bias: false,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    });
    expect(toHFConfig(configs[2]!)).toMatchObject({
      architectures: ['MistralForCausalLM'],
      sliding_window: null,
      rope_scaling: null,
    });
    expect(toHFConfig(configs[3]!)).toMatchObject({
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      use_sliding_window: false,
    });
  });

  it('refuses configs the architecture cannot express', () => {
    const llama = parseHFConfig(MINIMAL, FILE);
    expect(() => toHFConfig({ ...llama, qkvBias: true })).toThrow(LineageError);
    expect(() => toHFConfig({ ...llama, slidingWindow: 16 })).toThrow(/sliding window/);
    expect(() => toHFConfig({ ...llama, architecture: 'qwen2' })).toThrow(/q\/k\/v/);
    expect(() => toHFConfig({ ...llama, architecture: 'mistral', mlpBias: true })).toThrow(/MLP biases/);
  });
});
