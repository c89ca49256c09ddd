import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Backend,
  createJsBackend,
  evalSequences,
  HostTensor,
  initModel,
  Linear,
  type LlamaModel,
  llamaConfig,
  loadModel,
  modelFingerprint,
  Ops,
  openCheckpoint,
  readTextFile,
  saveModel,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrate, computeStats, sampleFromSequences } from './calibrate.js';
import { loadDataset, sampleSequences } from './dataset.js';
import { openStreamedModel, sourceFingerprint } from './source.js';
import type { CalibrationStats } from './stats.js';
import {
  absChannel,
  blockNorm,
  directBlockImportance,
  directGram,
  directImportance,
  directMean,
  materialise,
  relErr,
  type Taps,
} from './test-reference.js';
import { walkLayers } from './walk.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const SEP = '<|endoftext|>';

/** The js backend without its fused attention kernel: core composes attention from matmul/softmax instead. */
function compositeAttention(b: Backend): Backend {
  return new Proxy(b, {
    get(t, p) {
      if (p === 'attention') return undefined;
      if (p === 'name') return 'js-composite';
      const v = Reflect.get(t, p);
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}

async function allTensors(s: CalibrationStats): Promise<Map<string, Float64Array>> {
  const out = new Map<string, Float64Array>();
  for (const n of s.tensorNames().sort()) out.set(n, (await s.tensor(n)).data as Float64Array);
  return out;
}

let js: Backend;
let model: LlamaModel;
let tmp: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'lineage-calibrate-')); // first, so afterAll always has it to remove
  js = await createJsBackend();
  model = (await loadModel(MODEL)).model;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('statistics on stories260K equal a direct dense computation', () => {
  let stats: CalibrationStats;
  let taps: Taps;
  let tokens: number;
  beforeAll(async () => {
    // Documents protocol: 12 whole stories of different lengths, so micro-batches are padded.
    const data = await loadDataset(DEV, { separator: SEP });
    const r = await calibrate(model, js, data, {
      samples: 12,
      seqLen: 512,
      seed: 7,
      microBatchTokens: 1500,
    });
    stats = r.stats;
    tokens = r.sample.tokens;
    expect(new Set(r.sample.sequences.map((s) => s.length)).size).toBeGreaterThan(3);
    taps = await materialise(model, js, r.sample.sequences);
  });

  const c = () => model.config;
  const inputs = [
    ['self_attn.q_proj', 'input_layernorm.output'],
    ['self_attn.o_proj', 'self_attn.o_proj.input'],
    ['mlp.gate_proj', 'post_attention_layernorm.output'],
    ['mlp.down_proj', 'mlp.down_proj.input'],
  ] as const;

  it('Hessian (Σ xᵀx) and mean of every linear input to 1e-9 relative', async () => {
    let worst = 0;
    for (let l = 0; l < c().numLayers; l++) {
      for (const [slot, tap] of inputs) {
        const xs = taps.get(`${l}:${tap}`)!;
        const w = slot === 'mlp.down_proj' ? c().intermediateSize : c().hiddenSize;
        const H = await stats.hessian(`model.layers.${l}.${slot}`);
        const err = relErr(H, directGram(xs, w));
        worst = Math.max(worst, err);
        expect(err, `${l} ${slot}`).toBeLessThan(1e-9);
        expect(relErr(await stats.mean(`model.layers.${l}.${slot}`), directMean(xs, w))).toBeLessThan(1e-9);
      }
    }
    console.log(`max relative Hessian error vs direct float64: ${worst.toExponential(2)}`);
    expect(stats.info.tokens).toBe(tokens);
  });

  it('shared inputs are stored once and found under every reader, short names included', async () => {
    const q = await stats.hessian('model.layers.2.self_attn.q_proj');
    expect(await stats.hessian('model.layers.2.self_attn.k_proj')).toBe(q);
    expect(await stats.hessian('layers.2.self_attn.v_proj')).toBe(q);
    const g = await stats.hessian('layers.1.mlp.up_proj');
    expect(relErr(g, await stats.hessian('model.layers.1.mlp.gate_proj'))).toBe(0);
    expect(stats.tensorNames().filter((n) => n.endsWith('.hessian'))).toHaveLength(4 * c().numLayers);
    expect(() => stats.inputName('model.layers.9.mlp.down_proj')).toThrow(/not a linear layer/);
    expect(() => stats.inputName('lm_head')).toThrow(/tied/);
  });

  it('Minitron importance equals the paper formula (mean over tokens, L2 over sequences)', async () => {
    const { hiddenSize: D, intermediateSize: F, numHeads: H, numKvHeads: K, headDim: hd } = c();
    const channels = new Float64Array(D);
    const bi: number[] = [];
    for (let l = 0; l < c().numLayers; l++) {
      const t = (n: string) => taps.get(`${l}:${n}`)!;
      expect(
        relErr(await stats.neuronImportance(l), directImportance(t('mlp.down_proj.input'), F, F, absChannel)),
      ).toBeLessThan(1e-12);
      expect(
        relErr(
          await stats.headImportance(l),
          directImportance(t('self_attn.o_proj.input'), H * hd, H, blockNorm(hd)),
        ),
      ).toBeLessThan(1e-12);
      const G = (H / K) * hd;
      expect(
        relErr(
          await stats.kvGroupImportance(l),
          directImportance(t('self_attn.o_proj.input'), H * hd, K, blockNorm(G)),
        ),
      ).toBeLessThan(1e-12);
      for (const [norm, tap] of [
        ['input_layernorm', 'input_layernorm.output'],
        ['post_attention_layernorm', 'post_attention_layernorm.output'],
      ] as const) {
        const ref = directImportance(t(tap), D, D, absChannel);
        expect(relErr(await stats.normImportance(l, norm), ref)).toBeLessThan(1e-12);
        for (let i = 0; i < D; i++) channels[i]! += ref[i]!;
      }
      bi.push(directBlockImportance(t('block.input'), t('block.output'), D));
    }
    expect(relErr(await stats.channelImportance(), channels)).toBeLessThan(1e-12);
    const got = await stats.blockImportance();
    for (const [l, v] of bi.entries()) expect(Math.abs(got[l]! - v)).toBeLessThan(1e-12);
    // A real model: every layer changes its input a little, and not identically.
    expect(Math.min(...got)).toBeGreaterThan(0);
  });
});

describe('reproducibility', () => {
  const run = async (backend: Backend, seed: number, microBatchTokens = 2048) => {
    const data = await loadDataset(DEV, { separator: SEP });
    return (await calibrate(model, backend, data, { samples: 6, seqLen: 96, seed, microBatchTokens })).stats;
  };

  it('the same seed gives bitwise-identical statistics; micro-batch size does not matter', async () => {
    const a = await allTensors(await run(js, 3));
    const b = await allTensors(await run(js, 3, 100));
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [k, v] of a) expect(relErr(b.get(k)!, v), k).toBe(0);
    const other = await run(js, 4);
    expect(other.info.sampleHash).not.toBe((await run(js, 3)).info.sampleHash);
  });

  it('another backend (composite attention kernels) agrees to float32 tolerance', async () => {
    const a = await allTensors(await run(js, 3));
    const b = await allTensors(await run(compositeAttention(js), 3));
    let worst = 0;
    for (const [k, v] of a) {
      const e = relErr(b.get(k)!, v);
      worst = Math.max(worst, e);
      expect(e, k).toBeLessThan(1e-4);
    }
    console.log(`js vs composite-attention backend: max relative difference ${worst.toExponential(2)}`);
  });
});

// onnxruntime and tfjs against js: backends.test.ts.

describe('layer-streamed model', () => {
  it('reading a checkpoint layer by layer gives the same fingerprint and statistics as the loaded model', async () => {
    // llama2.c, HF single file, HF sharded in bf16: the embedding rows are read by offset in each layout.
    const hf = join(tmp, 'hf');
    await saveModel(model, hf, { format: 'hf' });
    const sharded = join(tmp, 'hf-sharded-bf16');
    await saveModel(model, sharded, { format: 'hf', dtype: 'bf16', maxShardBytes: 100_000 });
    for (const [path, loaded] of [
      [MODEL, model],
      [hf, (await loadModel(hf)).model],
      [sharded, (await loadModel(sharded)).model],
    ] as const) {
      const streamed = await openStreamedModel(path);
      expect(await streamed.fingerprint()).toBe(modelFingerprint(loaded));
      const data = await loadDataset(DEV, { separator: SEP });
      const a = await allTensors((await calibrate(loaded, js, data, { samples: 4, seqLen: 64 })).stats);
      const b = await allTensors((await calibrate(streamed, js, data, { samples: 4, seqLen: 64 })).stats);
      for (const [k, v] of a) expect(relErr(b.get(k)!, v), k).toBe(0);
      await streamed.close();
    }
  });

  it('sourceFingerprint of an untied synthetic model equals modelFingerprint, and lm_head gets statistics', async () => {
    const cfg = llamaConfig({ dim: 32, layers: 2, heads: 4, kvHeads: 2, hidden: 48, vocab: 64, tied: false });
    const m = initModel(cfg, { seed: 5 });
    const dir = join(tmp, 'untied');
    await saveModel(m, dir, { format: 'hf' });
    const ck = await openCheckpoint(dir, { tokenizerOptional: true });
    expect(await sourceFingerprint(ck.config, ck.source)).toBe(
      modelFingerprint((await loadModel(dir, { tokenizerOptional: true })).model),
    );
    await ck.source.close();
    const seqs = [Int32Array.from([1, 5, 9, 13, 2]), Int32Array.from([1, 7, 3])];
    const stats = await computeStats(m, js, sampleFromSequences(seqs), { statistics: 'hessian' });
    const taps = await materialise(m, js, seqs);
    const H = await stats.hessian('lm_head');
    expect(relErr(H, directGram(taps.get('2:model.norm.output')!, 32))).toBeLessThan(1e-9);
    expect(stats.has('importance')).toBe(false);
    await expect(stats.neuronImportance(0)).rejects.toThrow(/do not include 'importance'/);
  });
});

describe('walkLayers', () => {
  it('onLayer runs before the layer outputs: a replaced layer feeds the next layer', async () => {
    const seqs = [Int32Array.from([1, 50, 60, 70, 80]), Int32Array.from([1, 90, 100])];
    // Reference: the same replacement made up front, then an ordinary forward.
    const cfg = llamaConfig({ dim: 32, layers: 3, heads: 4, hidden: 48, vocab: 128 });
    const a = initModel(cfg, { seed: 9 });
    const b = initModel(cfg, { seed: 9 });
    const zero = () => new Linear(HostTensor.zeros('f32', [32, 48]));
    b.setLinear('model.layers.1.mlp.down_proj', zero());
    const seen: number[] = [];
    const r = await walkLayers(a, js, seqs, {
      onLayer: async (step) => {
        seen.push(step.index);
        if (step.index === 1) step.setLinear('mlp.down_proj', zero());
        expect(step.name('mlp.down_proj')).toBe(`model.layers.${step.index}.mlp.down_proj`);
      },
    });
    expect(seen).toEqual([0, 1, 2]);
    const ops = new Ops(js);
    for (const [i, s] of seqs.entries()) {
      const want = await ops.tidy(async () => {
        const rope = b.rope(ops, s.length);
        let x = await b.embedTokens(ops, s, 1);
        for (let l = 0; l < 3; l++) x = await b.block(ops, l, x, rope);
        return ops.readF32(x);
      });
      const off = r.hidden.offsets[i]! * 32;
      expect(relErr(r.hidden.data.subarray(off, off + s.length * 32), want)).toBe(0);
    }
  });

  it('step.run collects a layer’s statistics before the layer is replaced', async () => {
    const cfg = llamaConfig({ dim: 32, layers: 2, heads: 4, hidden: 48, vocab: 128 });
    const m = initModel(cfg, { seed: 2 });
    const seqs = [Int32Array.from([1, 2, 3, 4, 5, 6])];
    const widths: number[] = [];
    await walkLayers(m, js, seqs, {
      onLayer: async (step) => {
        await step.run({
          names: ['mlp.down_proj.input'],
          onActivation: (_l, _n, act) => {
            widths.push(act.width);
          },
        });
      },
    });
    expect(widths).toEqual([48, 48]);
  });
});

describe('sampling', () => {
  it('stream windows are the full windows of the eval stream protocol', async () => {
    const data = await loadDataset(DEV);
    const tok = model.tokenizer!;
    const s = sampleSequences(data, tok, { samples: 3, seqLen: 256, seed: 1 });
    expect(s.protocol).toBe('stream');
    const windows = evalSequences(model, await readTextFile(DEV), {
      protocol: 'stream',
      seqLen: 256,
    }).filter((w) => w.length === 256);
    expect(s.available).toBe(windows.length);
    for (const seq of s.sequences) expect(windows.some((w) => w.every((v, i) => v === seq[i]))).toBe(true);
  });
});
