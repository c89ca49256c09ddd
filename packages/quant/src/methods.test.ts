import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeStats, loadDataset, sampleSequences, withCalibration } from '@lineage/calibrate';
import {
  applyMethod,
  JsBackend,
  LineageError,
  type LlamaModel,
  loadModel,
  methodContext,
  perplexity,
  readTextFile,
  saveModel,
  splitDocuments,
} from '@lineage/core';
import { describeMethod, sharedPath, tempDir } from '@lineage/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { E8pLinear } from './e8p-linear.js';
import { ldlqMethod, rtnMethod } from './methods.js';
import { QuantizedLinear } from './quantized-linear.js';

// The method suite and a held-out comparison on the real stories260K (seconds on the js backend).
const backend = new JsBackend();
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const model = async () => (await loadModel(MODEL)).model;

let parentStats: ReturnType<typeof computeStats> | undefined;
async function stats() {
  parentStats ??= (async () => {
    const parent = await model();
    const sample = sampleSequences(await loadDataset(TRAIN), parent.tokenizer!, {
      samples: 16,
      seqLen: 128,
      seed: 0,
    });
    return computeStats(parent, backend, sample, { statistics: ['hessian'] });
  })();
  return parentStats;
}

describeMethod('rtn (3-bit, groups of 32)', {
  create: () => rtnMethod({ bits: 3, groupSize: 32 }),
  model,
  context: async () => methodContext(backend),
  timeout: 120_000,
});

describeMethod('ldlq (2-bit, Hadamard)', {
  create: () => ldlqMethod({ bits: 2, groupSize: 64, hadamard: true }),
  model,
  context: async () => methodContext(backend, { stats: await stats() }),
  timeout: 120_000,
});

describeMethod('ldlq (E8P12, Hadamard)', {
  create: () => ldlqMethod({ bits: 2, codebook: 'e8p12', hadamard: true }),
  model,
  context: async () => methodContext(backend, { stats: await stats() }),
  timeout: 120_000,
});

describe('quantizing stories260K', () => {
  let parent: LlamaModel;
  let heldOut: string;
  const ppl = async (m: LlamaModel) =>
    (
      await perplexity(m, backend, heldOut, {
        protocol: 'documents',
        separator: '<|endoftext|>',
        seqLen: 256,
      })
    ).ppl;

  beforeAll(async () => {
    parent = await model();
    // 40 of the last 200 dev stories (the held-out set of BENCHMARKS.md), never calibrated on
    const docs = splitDocuments(await readTextFile(DEV), '<|endoftext|>');
    heldOut = docs.slice(-200, -160).join('\n<|endoftext|>\n');
  });

  it('LDLQ beats RTN at 2 bits on held-out perplexity; every block linear is quantized at ~2.25 bits', async () => {
    const ctx = methodContext(backend, { stats: await stats() });
    const r = await applyMethod(rtnMethod({ bits: 2, groupSize: 64 }), parent, ctx);
    const l = await applyMethod(ldlqMethod({ bits: 2, groupSize: 64 }), parent, ctx);
    const [p0, pr, pl] = [await ppl(parent), await ppl(r), await ppl(l)];
    expect(pl).toBeLessThan(0.85 * pr);
    expect(pl).toBeGreaterThan(p0);
    const layers = l.linearLayers().filter(([n]) => n !== 'lm_head');
    expect(layers.every(([, x]) => x instanceof QuantizedLinear)).toBe(true);
    // 2 bits + one f16 scale per 64 weights (FFN down: groups 64, 64, 44)
    const bits = l.provenance!.bitsPerParam as number;
    expect(bits).toBeGreaterThan(2.25);
    expect(bits).toBeLessThan(2.3);
  });

  it('E8P12 + Hadamard beats the scalar 2-bit grid + Hadamard on held-out perplexity at fewer bits; saves and reloads exactly', async () => {
    const ctx = methodContext(backend, { stats: await stats() });
    const scalar = await applyMethod(ldlqMethod({ bits: 2, groupSize: 64, hadamard: true }), parent, ctx);
    const e8p = await applyMethod(ldlqMethod({ bits: 2, codebook: 'e8p12', hadamard: true }), parent, ctx);
    const layers = e8p.linearLayers().filter(([n]) => n !== 'lm_head');
    expect(layers.every(([, x]) => x instanceof E8pLinear)).toBe(true);
    // u16 code per 8 weights (172 padded to 176) + an f16 scale per row + a sign bit per input
    const bits = e8p.provenance!.bitsPerParam as number;
    expect(bits).toBeGreaterThan(2.2);
    expect(bits).toBeLessThan(scalar.provenance!.bitsPerParam as number);
    const [ps, pe] = [await ppl(scalar), await ppl(e8p)];
    expect(pe).toBeLessThan(0.85 * ps);
    // saved: the file's tensors are the bytes reported, and it reloads to the same perplexity
    const dir = tempDir('lineage-e8p-');
    await saveModel(e8p, dir, { format: 'hf' });
    const { model: back } = await loadModel(dir, { tokenizerOptional: true });
    expect(back.getLinear('model.layers.0.mlp.down_proj')).toBeInstanceOf(E8pLinear);
    expect(await ppl(back)).toBe(pe);
    const file = readFileSync(join(dir, 'model.safetensors'));
    const n = Number(file.readBigUInt64LE(0));
    const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8')) as Record<
      string,
      { dtype: string; data_offsets?: [number, number] }
    >;
    let stored = 0;
    let weights = 0;
    for (const [name, t] of Object.entries(header))
      if (t.data_offsets && /^model\.layers\..*_proj\./.test(name))
        stored += t.data_offsets[1] - t.data_offsets[0];
    for (const [, l] of layers) weights += l.outFeatures * l.inFeatures;
    expect(header['model.layers.0.mlp.down_proj.codes']!.dtype).toBe('U16');
    expect((stored * 8) / weights).toBeCloseTo(bits, 3);
  }, 180_000);

  it('bad options fail in one line before any work', async () => {
    expect(() => ldlqMethod({ bits: 3, codebook: 'e8p12' })).toThrow(
      "ldlq: bits 3: the codebook 'e8p12' stores 2 bits per weight: give 2",
    );
    expect(() => ldlqMethod({ bits: 2, codebook: 'e8p' as 'e8p12' })).toThrow(/ldlq: codebook/);
    expect(() => rtnMethod({ bits: 5 as 2 })).toThrow(
      new LineageError('rtn: bits must be one of 2, 3, 4, 8, got 5'),
    );
    expect(() => ldlqMethod({ bits: 2, groupSize: 0 })).toThrow(
      new LineageError('ldlq: groupSize must be a positive whole number, got 0'),
    );
    expect(() => ldlqMethod({ bits: 2, damp: -1 })).toThrow(/ldlq: damp must be ≥ 0/);
    await expect(applyMethod(ldlqMethod({ bits: 2 }), parent, methodContext(backend))).rejects.toThrow(
      /method 'ldlq' needs calibration statistics \(hessian\)/,
    );
  });

  it('--sequential: block 0 as one-shot (same Hessians and signs), later blocks from the quantized blocks before them', async () => {
    // the same 16 × 128 tokens of train-head.txt as the one-shot statistics (seed 0)
    const ctx = withCalibration(methodContext(backend), { data: TRAIN, samples: 16, seqLen: 128 });
    const oneShot = await applyMethod(
      ldlqMethod({ bits: 2, groupSize: 64, hadamard: true }),
      parent,
      methodContext(backend, { stats: await stats() }),
    );
    const seq = await applyMethod(
      ldlqMethod({ bits: 2, groupSize: 64, hadamard: true, sequential: true }),
      parent,
      ctx,
    );
    expect(seq.provenance!.sequential).toBe(true);
    const codes = (m: LlamaModel, name: string) => (m.getLinear(name) as QuantizedLinear).codes.value.data;
    const names = parent
      .linearLayers()
      .map(([n]) => n)
      .filter((n) => n !== 'lm_head');
    expect(
      names
        .filter((n) => n.startsWith('model.layers.0.'))
        .every((n) => codes(seq, n).every((c, i) => c === codes(oneShot, n)[i])),
    ).toBe(true);
    const changed = names.filter(
      (n) => !n.startsWith('model.layers.0.') && codes(seq, n).some((c, i) => c !== codes(oneShot, n)[i]),
    );
    expect(changed.length).toBeGreaterThan(20);
    expect(seq.provenance!.bitsPerParam).toBe(oneShot.provenance!.bitsPerParam);
    // statistics alone cannot walk the model: one line, before any work
    await expect(
      applyMethod(
        ldlqMethod({ bits: 2, sequential: true }),
        parent,
        methodContext(backend, { stats: await stats() }),
      ),
    ).rejects.toThrow(
      "ldlq: sequential: needs calibration text to walk the model (--data <file>); a statistics file holds the parent's Hessians only",
    );
  }, 120_000);
});
