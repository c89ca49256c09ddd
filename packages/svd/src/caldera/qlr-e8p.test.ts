import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import {
  getLinearKind,
  JsBackend,
  type LlamaModel,
  loadModel,
  methodContext,
  Ops,
  perplexity,
  Random,
  readTextFile,
  saveModel,
  splitDocuments,
} from '@lineage/core';
import { describeLayerKind, sharedPath, tempDir, uniform } from '@lineage/core/testing';
import { e8pWidth, randomIncoherence } from '@lineage/quant';
import { beforeAll, describe, expect, it } from 'vitest';
import { caldera, qlrBytes } from './method.js';
import { QLR_KIND, QlrLinear } from './qlr-linear.js';

// CALDERA's Q on QuIP#'s E8P12 lattice codebook: the qlr kind with u16 codes for Q, and the method on the
// real stories260K against the scalar-grid Q at the same rank.

/** A qlr layer with an E8P12 Q (random codes, one scale), rank `kq` at 4 bits and `ft` 16-bit ranks. */
function make(
  o: { out: number; in: number; bias: boolean; seed: number },
  kq: number,
  ft: number,
  hadamard: boolean,
): QlrLinear {
  const { out: m, in: n, seed } = o;
  const r = new Random(seed);
  const ints = (len: number, bits: number) =>
    Int32Array.from({ length: len }, () => Math.floor(r.next() * 2 ** bits));
  return QlrLinear.fromParts({
    out: m,
    in: n,
    q: {
      bits: 2,
      codebook: 'e8p12',
      codes: Uint16Array.from(ints(m * (e8pWidth(n) / 8), 16)),
      scales: Float32Array.of(0.125),
    },
    ...(kq > 0
      ? {
          lt: { bits: 4, codes: ints(kq * m, 4), scales: Float32Array.from({ length: kq }, () => 0.05) },
          r: { bits: 4, codes: ints(kq * n, 4), scales: Float32Array.from({ length: kq }, () => 0.04) },
        }
      : {}),
    ...(ft > 0 ? { ftRank: ft, lFt: uniform([m, ft], seed + 3), rFt: uniform([ft, n], seed + 4) } : {}),
    ...(hadamard ? randomIncoherence(m, n, seed + 5, 'both') : {}),
    ...(o.bias ? { bias: uniform([m], seed + 6) } : {}),
  });
}

describeLayerKind(QLR_KIND, {
  make: (o) => make(o, 2, 1, true),
  label: 'E8P12 Q, Hadamard, 2 quantized + 1 16-bit ranks',
});
describeLayerKind(QLR_KIND, { make: (o) => make(o, 3, 0, false), label: 'E8P12 Q, no transform' });

describe('qlr layer with an E8P12 Q', () => {
  it('stores u16 codes per 8 columns (172 → 176) and counts them: qlrBytes is the stored bytes', () => {
    const l = make({ out: 64, in: 172, bias: false, seed: 1 }, 4, 0, true);
    expect(l.parameters().get('Q')!.value.dtype).toBe('u16');
    expect(l.parameters().get('Q')!.value.shape).toEqual([64, 22]);
    expect(l.meta()).toEqual({ rank: 4, ftRank: 0, hadamard: true, qCodebook: 'e8p12' });
    const o = { qBits: 2, lrBits: 4, ftRank: 0, hadamard: true, qCodebook: 'e8p12' as const };
    expect(l.stats().bytes).toBe(qlrBytes(64, 172, 4, o));
    // the loader checks config.json's codebook against the tensor
    const tensors = new Map([...l.parameters()].map(([k, p]) => [k, p.value]));
    const load = (meta: object) => getLinearKind(QLR_KIND).load(tensors, meta as never, 'x', [64, 172]);
    expect(load(l.meta() as object).denseWeight()).toEqual(l.denseWeight());
    expect(() => load({ rank: 4, ftRank: 0 })).toThrow(
      /qlr layer 'x': config.json says Q is on the scalar grid, its tensor 'Q' is u16 \(E8P12 codes\)/,
    );
  });
});

describe('caldera --q-codebook e8p12 on stories260K', () => {
  const backend = new JsBackend();
  let parent: LlamaModel;
  let heldOut: string;
  let stats: Awaited<ReturnType<typeof computeStats>>;
  const ppl = async (m: LlamaModel) =>
    (
      await perplexity(m, backend, heldOut, {
        protocol: 'documents',
        separator: '<|endoftext|>',
        seqLen: 256,
      })
    ).ppl;

  beforeAll(async () => {
    parent = (await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'))).model;
    const ds = await loadDataset(sharedPath('data', 'tinystories', 'train-head.txt'));
    const sample = sampleSequences(ds, parent.tokenizer!, { samples: 16, seqLen: 128, seed: 0 });
    stats = await computeStats(parent, backend, sample, { statistics: ['hessian'] });
    const docs = splitDocuments(
      await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt')),
      '<|endoftext|>',
    );
    heldOut = docs.slice(-200, -170).join('\n<|endoftext|>\n'); // of the held-out 200, never calibrated on
  }, 300_000);

  it('Q on E8P12 beats the scalar Q at the same rank on held-out perplexity; saves, reloads, counts exactly', async () => {
    const o = { rank: 4, outerIters: 3, lplrIters: 2 };
    const ctx = methodContext(backend, { stats, seed: 0 });
    const scalar = await caldera({ ...o, qCodebook: 'scalar' }).apply(parent, ctx);
    const e8p = await caldera(o).apply(parent, ctx); // the default with the Hadamard transform
    expect((e8p.provenance as { qCodebook: string }).qCodebook).toBe('e8p12');
    const layers = e8p.linearLayers().filter(([n]) => n !== 'lm_head');
    expect(layers.every(([, l]) => l instanceof QlrLinear && l.qE8p)).toBe(true);
    const bits = (m: LlamaModel) => (m.provenance as { bitsPerParam: number }).bitsPerParam;
    // E8P pads 172 to 176 and the scalar Q has one scale too: within 0.05 bits of each other, ≤ 2.5
    expect(bits(e8p)).toBeLessThan(2.5);
    expect(Math.abs(bits(e8p) - bits(scalar))).toBeLessThan(0.05);
    const [ps, pe] = [await ppl(scalar), await ppl(e8p)];
    console.log(
      `caldera rank 4: scalar Q ${bits(scalar).toFixed(3)} bits ppl ${ps.toFixed(3)}; E8P12 Q ${bits(e8p).toFixed(3)} bits ppl ${pe.toFixed(3)}`,
    );
    expect(pe).toBeLessThan(ps);

    const dir = join(tempDir('caldera-e8p-'), 'm');
    await saveModel(e8p, dir, { format: 'hf' });
    const { model: back } = await loadModel(dir, { tokenizerOptional: true });
    expect(await ppl(back)).toBe(pe);
    const file = readFileSync(join(dir, 'model.safetensors'));
    const header = JSON.parse(file.subarray(8, 8 + Number(file.readBigUInt64LE(0))).toString()) as Record<
      string,
      { data_offsets?: [number, number] }
    >;
    let fileBytes = 0;
    let weights = 0;
    for (const [k, v] of Object.entries(header))
      if (/^model\.layers\.\d+\.(self_attn|mlp)\./.test(k))
        fileBytes += v.data_offsets![1] - v.data_offsets![0];
    for (const [, l] of layers) weights += l.outFeatures * l.inFeatures;
    expect((fileBytes * 8) / weights).toBeCloseTo(bits(e8p), 10);
    // one forward of the reloaded model equals the original's
    const ops = new Ops(backend);
    const ids = Int32Array.from([1, 200, 30, 4]);
    const logits = async (m: LlamaModel) => ops.tidy(async () => ops.readF32(await m.forward(ops, ids)));
    expect(await logits(back)).toEqual(await logits(e8p));
  }, 300_000);

  it('bad input: the E8P12 codebook with Q at other than 2 bits is one line; without Hadamard or at 3 bits the default is the scalar grid', async () => {
    const ctx = methodContext(backend, { stats, seed: 0 });
    const quick = { rank: 1, outerIters: 1, lplrIters: 1 };
    const plain = await caldera({ ...quick, hadamard: false }).apply(parent, ctx);
    expect((plain.provenance as { qCodebook: string }).qCodebook).toBe('scalar');
    expect(plain.getLinear('model.layers.0.mlp.down_proj').meta()).toEqual({
      rank: 1,
      ftRank: 0,
      hadamard: false,
    });
    const q3 = await caldera({ ...quick, qBits: 3 }).apply(parent, ctx);
    expect((q3.provenance as { qCodebook: string }).qCodebook).toBe('scalar');
    expect(() => caldera({ qBits: 3, qCodebook: 'e8p12' })).toThrow(
      /caldera: qBits 3: Q on the 'e8p12' codebook has 2 bits: give 2/,
    );
  });
});
