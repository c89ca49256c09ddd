import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  HostTensor,
  initModel,
  JsBackend,
  llamaConfig,
  loadModel,
  Ops,
  Parameter,
  Random,
  saveModel,
  type Tensor,
} from '@lineage/core';
import { checkGradients } from '@lineage/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { LowRankLinear } from './low-rank-linear.js';

const tmp = mkdtempSync(join(tmpdir(), 'lineage-lowrank-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function rand(n: number, seed: number): Float32Array {
  const r = new Random(seed);
  return Float32Array.from({ length: n }, () => r.next() * 2 - 1);
}

function lowRank(out: number, rank: number, inp: number, seed: number, bias = false): LowRankLinear {
  return LowRankLinear.fromFactors(
    rand(out * rank, seed),
    rand(rank * inp, seed + 1),
    out,
    rank,
    inp,
    bias ? rand(out, seed + 2) : undefined,
  );
}

const config = llamaConfig({ dim: 16, layers: 2, heads: 4, kvHeads: 2, hidden: 24, vocab: 32, tied: false });

describe('LowRankLinear', () => {
  it('computes x·(A·B)ᵀ + b, the same as its dense weight', async () => {
    const l = lowRank(6, 2, 5, 1, true);
    const ops = new Ops(new JsBackend());
    const x = rand(3 * 5, 9);
    const y = (await ops.read(await l.forward(ops, ops.upload(x, [3, 5])))) as Float32Array;
    const w = l.denseWeight();
    const b = l.denseBias()!;
    for (let t = 0; t < 3; t++)
      for (let i = 0; i < 6; i++) {
        let s = b[i]!;
        for (let j = 0; j < 5; j++) s += x[t * 5 + j]! * w[i * 5 + j]!;
        expect(y[t * 6 + i]).toBeCloseTo(s, 5);
      }
    expect(l.stats()).toEqual({ params: 6 * 2 + 2 * 5 + 6, bytes: 4 * (6 * 2 + 2 * 5 + 6) });
    expect(l.meta()).toEqual({ rank: 2 });
  });

  it('gradients of A, B, bias and the input match float64 finite differences', async () => {
    const l = lowRank(5, 3, 4, 3, true);
    const x = new HostTensor('f32', [2, 3, 4], rand(24, 7));
    const xp = new Parameter(x);
    const params = new Map<string, Parameter>([['x', xp]]);
    for (const [k, p] of l.parameters()) params.set(k, p);
    const probe = rand(2 * 3 * 5, 11);
    const results = await checkGradients({
      backend: new JsBackend(),
      params,
      loss: async (ops: Ops): Promise<Tensor> => {
        const y = await l.forward(ops, xp.tensor(ops.backend));
        const r = ops.upload(probe.slice(), y.shape);
        return ops.reduce('sum', await ops.mul(y, r), [0, 1, 2]);
      },
    });
    expect(results.map((r) => r.name).sort()).toEqual(['A', 'B', 'bias', 'x']);
    for (const r of results) {
      expect(r.scale).toBeGreaterThan(0);
      expect(r.maxError, r.name).toBeLessThan(2e-3);
    }
  });

  it('saves as a Hugging Face directory and loads back with the same logits; clones; densifies', async () => {
    const m = initModel(config, { seed: 5 });
    m.setLinear('model.layers.0.mlp.up_proj', lowRank(24, 4, 16, 20));
    m.setLinear('lm_head', lowRank(32, 3, 16, 30));
    const dir = join(tmp, 'lr');
    await saveModel(m, dir, { format: 'hf' });
    const { model } = await loadModel(dir, { tokenizerOptional: true });
    expect(model.layerKinds()).toEqual({
      'model.layers.0.mlp.up_proj': { kind: 'low_rank', meta: { rank: 4 } },
      lm_head: { kind: 'low_rank', meta: { rank: 3 } },
    });
    const ops = new Ops(new JsBackend());
    const ids = Int32Array.from([1, 2, 3, 4, 5]);
    const logits = async (x: typeof m) => Array.from(await ops.read(await x.forward(ops, ids, 1)));
    const ref = await logits(m);
    expect(await logits(model)).toEqual(ref);
    expect(await logits(model.clone())).toEqual(ref);
    // honest counts: the stored tensors
    let n = 0;
    for (const t of model.stateDict().values()) n += t.size;
    expect(model.stats().params).toBe(n);
    expect(model.stats().layers.find((l) => l.name === 'lm_head')!.params).toBe(3 * (32 + 16));
    const dense = model.densified();
    expect(dense.layerKinds()).toEqual({});
    const d = await logits(dense);
    for (let i = 0; i < d.length; i++) expect(d[i]).toBeCloseTo(ref[i]!, 4);
  });

  it('refuses factors that do not match the config', async () => {
    const m = initModel(config, { seed: 5 });
    m.setLinear('model.layers.1.self_attn.q_proj', lowRank(16, 2, 16, 40));
    const dir = join(tmp, 'bad');
    await saveModel(m, dir, { format: 'hf' });
    const { readFileSync, writeFileSync } = await import('node:fs');
    const cfgPath = join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    cfg.lineage.layers['model.layers.1.self_attn.q_proj'].meta.rank = 3;
    writeFileSync(cfgPath, JSON.stringify(cfg));
    await expect(loadModel(dir, { tokenizerOptional: true })).rejects.toThrow(/disagree .*rank 3/);
  });
});
