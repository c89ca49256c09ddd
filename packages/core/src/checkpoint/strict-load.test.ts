import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyModel } from '../autograd/testing.js';
import { JsBackend } from '../backend/js/js-backend.js';
import { applyMethod, type CompressionMethod, methodContext } from '../compress/method.js';
import { generate } from '../eval/generate.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import type { LlamaModel } from '../nn/llama.js';
import { firstNonFinite } from '../tensor/finite.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { LineageError } from '../util/errors.js';
import { loadModel } from './load-model.js';
import { saveModel } from './save-model.js';

const BAD = 'model.layers.1.mlp.up_proj.weight';
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'lineage-strict-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A tiny model with `value` written into element [2, 3] of BAD. */
function poisoned(value: number): LlamaModel {
  const m = tinyModel({ biases: false });
  const p = m.namedParameters().get(BAD)!;
  const w = Float32Array.from(p.value.toF32());
  w[2 * p.value.shape[1]! + 3] = value;
  p.value = new HostTensor('f32', p.value.shape, w);
  return m;
}

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LineageError);
  const msg = (err as Error).message;
  expect(msg.split('\n')).toHaveLength(1);
  return msg;
}

describe('non-finite weights are refused on load, naming the file and the first such tensor', () => {
  for (const [label, value, dtype] of [
    ['NaN in f32', Number.NaN, undefined],
    ['+Inf in bf16', Number.POSITIVE_INFINITY, 'bf16'],
    ['-Inf in f16', Number.NEGATIVE_INFINITY, 'f16'],
  ] as const) {
    it(label, async () => {
      const out = join(dir, `hf-${label.replace(/\W/g, '')}`);
      await saveModel(poisoned(value), out, { format: 'hf', ...(dtype ? { dtype } : {}) });
      const what = Number.isNaN(value) ? 'NaN' : value > 0 ? '+Inf' : '-Inf';
      expect(await refusal(loadModel(out, { tokenizerOptional: true }))).toBe(
        `${join(out, 'model.safetensors')}: tensor '${BAD}' holds a non-finite value (${what} at [2, 3]); pass --allow-nonfinite to accept it`,
      );
      // for those who insist
      const { model } = await loadModel(out, { tokenizerOptional: true, allowNonfinite: true });
      expect(firstNonFinite(model.namedParameters().get(BAD)!.value)).toBeGreaterThan(0);
    });
  }

  it('in a llama2.c checkpoint too', async () => {
    const out = join(dir, 'nan.bin');
    const m = poisoned(Number.NaN);
    await saveModel(m, out, { format: 'llama2c' });
    const msg = await refusal(loadModel(out, { tokenizerOptional: true }));
    expect(msg).toMatch(
      new RegExp(`^${out}: tensor '${BAD}' holds a non-finite value \\(NaN at \\[2, 3\\]\\)`),
    );
  });
});

describe('integer-typed tensors where float weights are expected', () => {
  for (const [name, dtype] of [
    ['model.layers.0.self_attn.q_proj.weight', 'i32'],
    ['model.embed_tokens.weight', 'i8'],
    ['model.norm.weight', 'u8'],
  ] as const) {
    it(`${name} as ${dtype}`, async () => {
      const out = join(dir, `int-${dtype}`);
      await saveModel(tinyModel({ biases: false }), out, { format: 'hf' });
      const file = join(out, 'model.safetensors');
      const f = await SafetensorsFile.open(file);
      const tensors = new Map<string, HostTensor>();
      for (const n of f.names()) tensors.set(n, await f.read(n));
      await f.close();
      const t = tensors.get(name)!;
      tensors.set(name, HostTensor.fromF32(new Float32Array(t.size).fill(1), t.shape, dtype));
      await writeSafetensors(file, tensors, { format: 'pt' });
      const msg = await refusal(loadModel(out, { tokenizerOptional: true }));
      expect(msg).toMatch(new RegExp(`^${file}: tensor '${name}' is ${dtype}, but .* must be a float type$`));
    });
  }
});

describe('compression steps', () => {
  const method = (value: number): CompressionMethod<LlamaModel> => ({
    name: 'breaks-things',
    version: '0.0.0',
    async apply() {
      return poisoned(value);
    },
  });

  it('a step whose result holds NaN or Inf is an error naming the method and the tensor', async () => {
    const ctx = methodContext(new JsBackend());
    const msg = await refusal(applyMethod(method(Number.POSITIVE_INFINITY), tinyModel(), ctx));
    expect(msg).toBe(
      `method 'breaks-things' produced non-finite weights: tensor '${BAD}' holds a non-finite value (+Inf at [2, 3]); pass --allow-nonfinite to accept it`,
    );
    const ok = await applyMethod(method(Number.NaN), tinyModel(), { ...ctx, allowNonfinite: true });
    expect(firstNonFinite(ok.namedParameters().get(BAD)!.value)).toBeGreaterThan(0);
  });
});

describe('generate', () => {
  it('a NaN logit is an error, not argmax token 0 forever', async () => {
    const m = poisoned(Number.NaN);
    const msg = await refusal(generate(m, new JsBackend(), [1, 2, 3], { maxTokens: 5 }));
    expect(msg).toContain('the model produced a NaN logit');
    expect(msg).toContain('generation step 1');
  });
});

describe('saving as f16 weights beyond its range', () => {
  it('is refused naming the tensor and its max |value|, or clamped with a warning under clamp', async () => {
    const m = poisoned(-1.5e5);
    const out = join(dir, 'f16-over');
    expect(await refusal(saveModel(m, out, { format: 'hf', dtype: 'f16' }))).toBe(
      `${out}: tensor '${BAD}' has values up to 150000 in magnitude, beyond the largest f16 (65504); converting would make them infinite (pass --clamp to clamp them to ±65504, or keep f32)`,
    );
    expect(existsSync(out)).toBe(false);
    const warnings: string[] = [];
    await saveModel(m, out, { format: 'hf', dtype: 'f16', clamp: true, warn: (w) => warnings.push(w) });
    expect(warnings).toEqual([
      `warning: clamped 1 value(s) of tensor '${BAD}' (up to 150000 in magnitude) to ±65504 for f16`,
    ]);
    const { model } = await loadModel(out, { tokenizerOptional: true });
    const w = model.namedParameters().get(BAD)!.value;
    expect(w.toF32()[2 * w.shape[1]! + 3]).toBe(-65504);
    // bf16 has f32's range: nothing to refuse
    await saveModel(m, join(dir, 'bf16-over'), { format: 'hf', dtype: 'bf16' });
  });
});

describe('firstNonFinite', () => {
  it('finds the first NaN/Inf in every float dtype, across block boundaries, and ignores integers', () => {
    for (const dtype of ['f32', 'f64', 'f16', 'bf16'] as const) {
      const v = new Float32Array(10_000).map((_, i) => Math.sin(i) * 1000);
      expect(firstNonFinite(HostTensor.fromF32(v, [10_000], dtype))).toBe(-1);
      v[9_999] = Number.NEGATIVE_INFINITY;
      v[4_097] = Number.NaN;
      expect(firstNonFinite(HostTensor.fromF32(v, [10_000], dtype))).toBe(4_097);
      v[4_097] = 0;
      v[6_000] = Number.POSITIVE_INFINITY; // an even index: the low half of a 32-bit word
      expect(firstNonFinite(HostTensor.fromF32(v, [10_000], dtype))).toBe(6_000);
    }
    // halves not aligned to 4 bytes, and an odd length
    const halves = HostTensor.fromF32(Float32Array.of(0, 1, 2, Number.NaN), [4], 'bf16').data as Uint16Array;
    expect(firstNonFinite(new HostTensor('bf16', [3], halves.subarray(1)))).toBe(2);
    expect(firstNonFinite(new HostTensor('bf16', [2], halves.subarray(1, 3)))).toBe(-1);
    expect(firstNonFinite(HostTensor.fromF32(Float32Array.of(1, 2), [2], 'i32'))).toBe(-1);
  });
});

describe('a Hugging Face config that disagrees with its weights is named as config.json', () => {
  it('sizes, layer counts and biases', async () => {
    const { readFileSync, writeFileSync, cpSync } = await import('node:fs');
    const out = join(dir, 'hf-config-disagrees');
    await saveModel(tinyModel({ biases: false }), out, { format: 'hf' });
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    const variant = (name: string, patch: object) => {
      const d = join(dir, name);
      cpSync(out, d, { recursive: true });
      writeFileSync(join(d, 'config.json'), JSON.stringify({ ...config, ...patch }));
      return loadModel(d, { tokenizerOptional: true });
    };
    expect(await refusal(variant('vocab', { vocab_size: config.vocab_size + 1 }))).toMatch(
      /model\.safetensors: tensor 'model\.embed_tokens\.weight' has shape \[\d+,\d+\], config\.json implies/,
    );
    expect(await refusal(variant('layers', { num_hidden_layers: config.num_hidden_layers + 1 }))).toMatch(
      /config\.json has \d+ layers \(num_hidden_layers\), the checkpoint \d+/,
    );
    expect(await refusal(variant('bias', { attention_bias: true }))).toMatch(
      /missing tensor 'model\.layers\.0\.self_attn\.q_proj\.bias' \(config\.json asks for biases\)/,
    );
  });
});
