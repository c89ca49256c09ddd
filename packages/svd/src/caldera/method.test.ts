import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeStats, loadDataset, sampleSequences, withCalibration } from '@lineage/calibrate';
import { JsBackend, LineageError, loadModel, methodContext, readTextFile, saveModel } from '@lineage/core';
import { describeMethod, sharedPath, tempDir } from '@lineage/core/testing';
import { withRecover } from '@lineage/distill';
import { describe, expect, it } from 'vitest';
import { budgetPlan, caldera, calderaFamily } from './method.js';
import { QlrLinear } from './qlr-linear.js';

// The method suite on the real stories260K with small budgets (seconds on the js backend).
const backend = new JsBackend();
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const model = async () => (await loadModel(MODEL)).model;

let parentStats: ReturnType<typeof computeStats> | undefined;
async function stats() {
  parentStats ??= (async () => {
    const parent = await model();
    const sample = sampleSequences(await loadDataset(TRAIN), parent.tokenizer!, {
      samples: 8,
      seqLen: 64,
      seed: 0,
    });
    return computeStats(parent, backend, sample, { statistics: ['hessian'] });
  })();
  return parentStats;
}

const small = { rank: 4, outerIters: 2, lplrIters: 2 };
const defaults = {
  qBits: 2,
  lrBits: 4,
  rank: 256,
  outerIters: 20,
  lplrIters: 5,
  hadamard: true,
  hessianDowndate: false,
  ftRank: 0,
  recoverTokens: 0,
  sequential: false,
};

describeMethod('caldera (Q 2 bits, L·R rank 4 at 4 bits)', {
  create: () => caldera(small),
  model,
  context: async () => methodContext(backend, { stats: await stats() }),
  timeout: 120_000,
});

describe('caldera', () => {
  it('turns every block linear into a qlr layer at ≤ 2.5 bits per weight, recorded in provenance', async () => {
    const parent = await model();
    const out = await caldera(small).apply(parent, methodContext(backend, { stats: await stats() }));
    const linears = out.linearLayers().filter(([n]) => n !== 'lm_head');
    expect(linears.every(([, l]) => l instanceof QlrLinear)).toBe(true);
    let bytes = 0;
    let weights = 0;
    for (const [, l] of linears) {
      bytes += l.stats().bytes;
      weights += l.outFeatures * l.inFeatures;
    }
    const p = out.provenance as {
      bitsPerParam: number;
      layers: Record<string, { errors: number[]; error: number }>;
    };
    expect(p.bitsPerParam).toBeCloseTo((8 * bytes) / weights, 10);
    expect(p.bitsPerParam).toBeLessThan(2.5);
    // checked against the file: the decoder linears' tensors in model.safetensors, by their data offsets
    const dir = join(tempDir('caldera-'), 'm');
    await saveModel(out, dir, { format: 'hf' });
    const file = readFileSync(join(dir, 'model.safetensors'));
    const header = JSON.parse(file.subarray(8, 8 + Number(file.readBigUInt64LE(0))).toString()) as Record<
      string,
      { data_offsets?: [number, number] }
    >;
    let fileBytes = 0;
    for (const [k, v] of Object.entries(header))
      if (/^model\.layers\.\d+\.(self_attn|mlp)\./.test(k))
        fileBytes += v.data_offsets![1] - v.data_offsets![0];
    expect(fileBytes).toBe(bytes);
    const up = p.layers['model.layers.0.mlp.up_proj']!;
    expect(up.errors).toHaveLength(4);
    expect(up.error).toBe(Math.min(...up.errors.slice(1)));
  });

  it('fine-tunes only the 16-bit ranks from the parent, and keeps them 16-bit', async () => {
    const parent = await model();
    const ctx = withRecover(
      methodContext(backend, {
        data: { text: await readTextFile(TRAIN), path: TRAIN },
        seed: 3,
        stats: await stats(),
      }),
      { batchSize: 2, seqLen: 32, lr: 1e-3 },
    );
    const method = caldera({ ...small, ftRank: 1, recoverTokens: 256 });
    const before = await caldera({ ...small, ftRank: 1 }).apply(parent, ctx);
    const after = await method.apply(parent, ctx);
    const b = before.namedParameters();
    let changed = 0;
    for (const [k, p] of after.namedParameters()) {
      const same = Buffer.compare(Buffer.from(p.value.bytes()), Buffer.from(b.get(k)!.value.bytes())) === 0;
      if (/\.(L_ft|R_ft)$/.test(k)) {
        expect(p.value.dtype, k).toBe('f16');
        if (!same) changed++;
      } else expect(same, k).toBe(true);
    }
    expect(changed).toBeGreaterThan(0);
  });

  it('as a family over bit budgets: each member within its budget, Q at the most bits that fit', async () => {
    const parent = await model();
    const fam = calderaFamily({ sizes: [3.5, 2.5], rank: 8, outerIters: 1, lplrIters: 1 });
    const members = await fam.apply(parent, methodContext(backend, { stats: await stats() }));
    const p = members.map((m) => m.provenance as { bitsPerParam: number; qBits: number; budget: number });
    expect(p.map((x) => x.qBits)).toEqual([3, 2]);
    expect(p[0]!.bitsPerParam).toBeLessThanOrEqual(3.5);
    expect(p[1]!.bitsPerParam).toBeLessThanOrEqual(2.5);
    expect(p[1]!.bitsPerParam).toBeGreaterThan(2.4); // the budget is used: ranks as large as fit
    expect(() => budgetPlan(parent, 2.1, { ...defaults, rank: 8 })).toThrow(
      /caldera: sizes 2.1: bits per parameter are below Q at 2 bits/,
    );
    // a later member's infeasible budget is refused before the first member's work (no calibration: no stats)
    const infeasible = calderaFamily({ sizes: [3.5, 2.1], rank: 8, outerIters: 1, lplrIters: 1 });
    await expect(infeasible.member(parent, 0, methodContext(backend, {}), parent)).rejects.toThrow(
      /caldera: sizes 2.1: bits per parameter are below Q at 2 bits/,
    );
  });

  it('bad input: bits outside the set, ft rank above the rank, a rank that saves nothing — one line, before any work', async () => {
    expect(() => caldera({ qBits: 5 })).toThrow(/caldera: qBits must be one of 2, 3, 4, 8, got 5/);
    expect(() => caldera({ lrBits: 1 })).toThrow(/lrBits must be one of 2, 3, 4, 8, 16/);
    expect(() => caldera({ rank: 4, ftRank: 5 })).toThrow(/caldera: ftRank 5: exceeds rank 4/);
    expect(() => caldera({ recoverTokens: 100 })).toThrow(/needs 16-bit ranks/);
    const parent = await model();
    await expect(
      caldera({ lrBits: 16, rank: 64, qBits: 8 }).apply(
        parent,
        methodContext(backend, { stats: await stats() }),
      ),
    ).rejects.toThrow(
      /caldera: rank 64: saves nothing on 'model.layers.0.self_attn.q_proj' \(64×64, rank 64\)/,
    );
    await expect(caldera(small).apply(parent, methodContext(backend, {}))).rejects.toThrow(LineageError);
  });

  it('--sequential: block 0 decomposed as one-shot, later blocks from Hessians through the compressed blocks', async () => {
    const parent = await model();
    type Rec = { sequential: boolean; layers: Record<string, { errors: number[] }> };
    const oneShot = (await caldera(small).apply(parent, methodContext(backend, { stats: await stats() })))
      .provenance as unknown as Rec;
    // the same 8 × 64 tokens of train-head.txt (seed 0), walked block by block
    const ctx = withCalibration(methodContext(backend), { data: TRAIN, samples: 8, seqLen: 64 });
    const out = await caldera({ ...small, sequential: true }).apply(parent, ctx);
    expect(
      out
        .linearLayers()
        .filter(([n]) => n !== 'lm_head')
        .every(([, l]) => l instanceof QlrLinear),
    ).toBe(true);
    const seq = out.provenance as unknown as Rec;
    expect(seq.sequential).toBe(true);
    const names = Object.keys(oneShot.layers);
    expect(names).toHaveLength(35);
    for (const n of names.filter((x) => x.startsWith('model.layers.0.')))
      expect(seq.layers[n]!.errors).toEqual(oneShot.layers[n]!.errors);
    const changed = names.filter(
      (n) => !n.startsWith('model.layers.0.') && seq.layers[n]!.errors[1] !== oneShot.layers[n]!.errors[1],
    );
    expect(changed.length).toBeGreaterThan(20);
    await expect(
      caldera({ ...small, sequential: true }).apply(parent, methodContext(backend, { stats: await stats() })),
    ).rejects.toThrow(/caldera: sequential: needs calibration text/);
  }, 120_000);
});
