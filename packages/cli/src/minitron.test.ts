import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  JsBackend,
  type LlamaModel,
  loadModel,
  perplexity,
  readTextFile,
  SafetensorsFile,
} from '@lineage/core';
import { describe, expect, it } from 'vitest';
import { DEV, expectJson, expectOneLineError, lineage, MODEL, SEP, TRAIN, tempDir } from './test-support.js';

const tmp = tempDir('lineage-minitron-cli-');

/** The keys of a transformers LlamaConfig this writes (Lineage's provenance sits under `lineage`). */
const LLAMA_KEYS = new Set([
  'architectures',
  'model_type',
  'vocab_size',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'head_dim',
  'hidden_act',
  'max_position_embeddings',
  'rms_norm_eps',
  'rope_theta',
  'rope_scaling',
  'tie_word_embeddings',
  'attention_bias',
  'mlp_bias',
  'bos_token_id',
  'eos_token_id',
  'torch_dtype',
  'lineage',
]);

/** config.json is a plain Llama config whose shapes match the stored tensors. */
async function expectPlainLlama(dir: string): Promise<ReturnType<typeof JSON.parse>> {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  for (const k of Object.keys(cfg)) expect(LLAMA_KEYS.has(k), `config key ${k}`).toBe(true);
  expect(cfg.architectures).toEqual(['LlamaForCausalLM']);
  expect(cfg.lineage.layers).toBeUndefined(); // every layer dense: nothing custom to load
  const f = await SafetensorsFile.open(join(dir, 'model.safetensors'));
  try {
    const D = cfg.hidden_size;
    const q = cfg.num_attention_heads * cfg.head_dim;
    const kv = cfg.num_key_value_heads * cfg.head_dim;
    const F = cfg.intermediate_size;
    expect(f.info('model.embed_tokens.weight').shape).toEqual([cfg.vocab_size, D]);
    const layers = new Set(
      f
        .names()
        .filter((n) => n.startsWith('model.layers.'))
        .map((n) => n.split('.')[2]),
    );
    expect(layers.size).toBe(cfg.num_hidden_layers);
    for (let l = 0; l < cfg.num_hidden_layers; l++) {
      const s = (n: string) => f.info(`model.layers.${l}.${n}.weight`).shape;
      expect(s('self_attn.q_proj')).toEqual([q, D]);
      expect(s('self_attn.k_proj')).toEqual([kv, D]);
      expect(s('self_attn.v_proj')).toEqual([kv, D]);
      expect(s('self_attn.o_proj')).toEqual([D, q]);
      expect(s('mlp.gate_proj')).toEqual([F, D]);
      expect(s('mlp.up_proj')).toEqual([F, D]);
      expect(s('mlp.down_proj')).toEqual([D, F]);
      expect(s('input_layernorm')).toEqual([D]);
    }
  } finally {
    await f.close();
  }
  return cfg;
}

async function devPpl(m: LlamaModel): Promise<number> {
  const text = await readTextFile(DEV);
  return (
    await perplexity(m, new JsBackend(), text, {
      protocol: 'documents',
      separator: SEP,
      seqLen: 128,
      limit: 10,
    })
  ).ppl;
}

const common = ['--data', DEV, '--doc-separator', SEP, '--calib-samples', '16', '--backend', 'js'];

describe('lineage compress --method minitron', () => {
  it('--params 0.5 searches, prunes and distils into a plain Llama directory that reloads and converts', async () => {
    const out = join(tmp, 'half');
    const r = await lineage([
      'compress',
      MODEL,
      '--method',
      'minitron',
      '--params',
      '0.5',
      '--search',
      '2',
      '--search-holdout',
      '10',
      '--recover-tokens',
      '256',
      '--batch-size',
      '2',
      '--seq-len',
      '32',
      ...common,
      '--out',
      out,
      '--json',
    ]);
    const j = expectJson(r);
    expect(r.stderr).toMatch(/minitron search: 2 candidates/);
    expect(j.params.after).toBeLessThanOrEqual(Math.floor(0.5 * j.params.before));
    expect(j.provenance).toMatchObject({ method: 'minitron', fraction: 0.5, recoverTokens: 256 });
    const cfg = await expectPlainLlama(out);
    expect(cfg.lineage.candidates).toHaveLength(2);
    const { model } = await loadModel(out);
    expect(model.stats().params).toBe(j.params.after);
    expect(await devPpl(model)).toBeLessThan(1e4);
  }, 300_000);

  it('--shape slices to exactly that shape; llama2c conversion keeps the perplexity', async () => {
    const out = join(tmp, 'shape');
    expectJson(
      await lineage([
        'compress',
        MODEL,
        '--method',
        'minitron',
        '--shape',
        'layers=4,hidden=48,heads=6,kv-heads=3,ffn=128',
        ...common,
        '--out',
        out,
        '--json',
      ]),
    );
    const cfg = await expectPlainLlama(out);
    expect(cfg).toMatchObject({
      num_hidden_layers: 4,
      hidden_size: 48,
      num_attention_heads: 6,
      num_key_value_heads: 3,
      intermediate_size: 128,
      head_dim: 8,
    });
    const bin = join(tmp, 'shape.bin');
    const c = await lineage(['convert', out, '--to', 'llama2c', '--out', bin]);
    expect(c.code, c.stderr).toBe(0);
    const a = (await loadModel(out)).model;
    const b = (await loadModel(bin)).model;
    expect(await devPpl(b)).toBe(await devPpl(a));
  }, 300_000);

  it('bad input: one-line errors, nothing written', async () => {
    const run = (name: string, ...args: string[]) =>
      lineage([
        'compress',
        MODEL,
        '--method',
        'minitron',
        ...args,
        '--importance',
        'random',
        '--out',
        join(tmp, name),
      ]);
    const cases: [string, string[], RegExp][] = [
      [
        'big',
        ['--params', '260032'],
        /minitron: --params: a budget of 260032 parameters is not below the parent's 260032/,
      ],
      ['tiny', ['--params', '100'], /minitron: --params: a budget of 100 parameters is too small/],
      ['divide', ['--shape', 'heads=6'], /heads 6 does not divide over 4 kv heads/],
      ['pergroup', ['--shape', 'heads=8,kv-heads=2'], /4 per group, but the parent's groups hold 2/],
      ['nolayers', ['--shape', 'layers=0'], /keeps no layer/],
      ['both', ['--params', '0.5', '--shape', 'layers=3'], /either --params .* or --shape, not both/],
      ['badshape', ['--shape', 'depth=3'], /'depth=3' is not one of/],
      ['axes', ['--params', '0.5', '--axes', 'width'], /unknown axis 'width'/],
    ];
    for (const [name, args, pattern] of cases) {
      expectOneLineError(await run(name, ...args), pattern);
      expect(existsSync(join(tmp, name)), name).toBe(false);
    }
  }, 300_000);

  it('statistics of another model are refused in one line, nothing written', async () => {
    const stats = join(tmp, 'other.stats.safetensors');
    const pruned = join(tmp, 'other');
    expectJson(
      await lineage([
        'compress',
        MODEL,
        '--method',
        'minitron',
        '--shape',
        'ffn=128',
        '--importance',
        'random',
        '--out',
        pruned,
        '--json',
      ]),
    );
    const c = await lineage([
      'calibrate',
      pruned,
      '--data',
      TRAIN,
      '--samples',
      '4',
      '--seq-len',
      '32',
      '--stats',
      'importance',
      '--out',
      stats,
      '--backend',
      'js',
    ]);
    expect(c.code, c.stderr).toBe(0);
    const out = join(tmp, 'mismatch');
    expectOneLineError(
      await lineage([
        'compress',
        MODEL,
        '--method',
        'minitron',
        '--params',
        '0.5',
        '--stats',
        stats,
        '--out',
        out,
      ]),
      /statistics were computed for another model/,
    );
    expect(existsSync(out)).toBe(false);
  }, 300_000);
});

describe('lineage family --method minitron', () => {
  it('--schedule 0.8,0.6: each member from the previous, saved as a plain Llama that reloads at its perplexity', async () => {
    const out = join(tmp, 'family');
    const j = expectJson(
      await lineage([
        'family',
        MODEL,
        '--method',
        'minitron',
        '--schedule',
        '0.8,0.6',
        '--eval-limit',
        '10',
        '--search',
        '1',
        '--recover-tokens',
        '128',
        '--batch-size',
        '2',
        '--seq-len',
        '32',
        ...common,
        '--out',
        out,
        '--json',
      ]),
    );
    expect(j.members).toHaveLength(2);
    expect(j.members[1].provenance).toMatchObject({
      method: 'minitron',
      derivedFrom: 'member 1',
      teacher: 'parent',
    });
    for (const m of j.members) {
      expect(m.params).toBeLessThanOrEqual(Math.floor(m.size * 260032));
      await expectPlainLlama(join(out, m.dir));
      expect((await loadModel(join(out, m.dir))).model.stats().params).toBe(m.params);
    }
  }, 300_000);
});
