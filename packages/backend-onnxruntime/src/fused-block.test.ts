import {
  type Backend,
  FUSED_BLOCK_WEIGHTS,
  HostTensor,
  initModel,
  JsBackend,
  type LlamaModel,
  llamaConfig,
  loadModel,
  Ops,
  Parameter,
  Random,
  type Tensor,
  valueAndGrad,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOnnxruntimeBackend } from './base.js';

/*
 * The fused decoder block (one onnxruntime graph for the forward, one for its vector-Jacobian product)
 * against the per-op reference: `LlamaModel.block` on the js backend with the tape's gradients (which core
 * checks against float64 finite differences), on the real stories260K (8 heads over 4 kv heads: grouped
 * queries), and against central finite differences of the fused forward itself on a tiny synthetic block.
 */

function rand(seed: number, n: number, scale = 1): Float32Array {
  const r = new Random(seed);
  return Float32Array.from({ length: n }, () => (r.next() * 2 - 1) * scale);
}

const blockParams = (model: LlamaModel, l: number): Parameter[] => {
  const blk = model.blocks[l]!;
  return [
    blk.inputNorm,
    blk.postNorm,
    ...FUSED_BLOCK_WEIGHTS.slice(2).map(
      (s) => (blk.linears[s as keyof typeof blk.linears] as unknown as { weight: Parameter }).weight,
    ),
  ];
};

/** The per-op reference on the js backend: y = block(x) and the gradients of Σ y ⊙ r. */
async function reference(
  model: LlamaModel,
  l: number,
  x: Float32Array,
  r: Float32Array,
  B: number,
  T: number,
) {
  const js = new JsBackend();
  const D = model.config.hiddenSize;
  const px = new Parameter(new HostTensor('f32', [B, T, D], x.slice()));
  const params = blockParams(model, l);
  let y: Float32Array = new Float32Array();
  const g = await valueAndGrad(
    js,
    async (ops) => {
      const out = await model.block(ops, l, px.tensor(js), model.rope(ops, T));
      y = await ops.readF32(out);
      return ops.mul(out, ops.upload(r.slice(), [B, T, D]));
    },
    [px, ...params],
  );
  for (const p of [px, ...params]) p.release();
  return { y, dx: g.grads.get(px)!, dw: params.map((p) => g.grads.get(p)!) };
}

/** The fused forward (saving activations) and backward with dy = r on backend `be`. */
async function fused(
  be: Backend,
  model: LlamaModel,
  l: number,
  x: Float32Array,
  r: Float32Array,
  B: number,
  T: number,
) {
  const c = model.config;
  const ops = new Ops(be);
  const rope = model.rope(ops, T);
  const inputs = {
    x: be.upload(x.slice(), [B, T, c.hiddenSize]),
    weights: blockParams(model, l).map((p) => p.tensor(be)),
    cos: rope.cos,
    sin: rope.sin,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    eps: c.rmsNormEps,
  };
  const f = await be.fusedTraining!.blockForward!({ ...inputs, save: true });
  if ('unsupported' in f) throw new Error(f.unsupported);
  const dy = be.upload(r.slice(), inputs.x.shape);
  const b = await be.fusedTraining!.blockBackward!({ ...inputs, dy, saved: f.saved });
  const read = async (t: Tensor) => (await be.read(t)) as Float32Array;
  const out = { y: await read(f.y), dx: await read(b.dx), dw: await Promise.all(b.dWeights.map(read)) };
  for (const t of [f.y, ...f.saved, dy, b.dx, ...b.dWeights, inputs.x, rope.cos, rope.sin]) be.dispose(t);
  for (const p of blockParams(model, l)) p.release();
  return out;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

/** max |got − want| relative to max |want|. */
function relErr(got: Float32Array, want: Float32Array): number {
  expect(got.length).toBe(want.length);
  let d = 0;
  for (let i = 0; i < got.length; i++) d = Math.max(d, Math.abs(got[i]! - want[i]!));
  const s = maxAbs(want);
  expect(s).toBeGreaterThan(0);
  return d / s;
}

describe('onnxruntime fused decoder block (Backend.fusedTraining.blockForward / blockBackward)', () => {
  let be: Backend;
  beforeAll(async () => {
    be = await createOnnxruntimeBackend({ device: 'cpu' });
  });
  afterAll(async () => {
    await be.close?.();
  });

  it('agrees with the per-op block and its tape gradients on stories260K (grouped-query attention)', async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    expect(model.config.numKvHeads).toBeLessThan(model.config.numHeads);
    const [B, T, D] = [2, 48, model.config.hiddenSize];
    for (const l of [0, model.blocks.length - 1]) {
      const x = rand(10 + l, B * T * D);
      const r = rand(20 + l, B * T * D);
      const want = await reference(model, l, x, r, B, T);
      const got = await fused(be, model, l, x, r, B, T);
      expect(relErr(got.y, want.y), `block ${l} y`).toBeLessThan(1e-5);
      expect(relErr(got.dx, want.dx), `block ${l} dx`).toBeLessThan(2e-5);
      FUSED_BLOCK_WEIGHTS.forEach((name, k) => {
        expect(relErr(got.dw[k]!, want.dw[k]!), `block ${l} d ${name}`).toBeLessThan(2e-5);
      });
    }
  });

  it('its gradient matches central finite differences of its own forward (tiny block, 3 directions)', async () => {
    const config = llamaConfig({
      dim: 16,
      layers: 1,
      heads: 4,
      kvHeads: 2,
      hidden: 24,
      vocab: 32,
      context: 16,
    });
    const model = initModel(config, { seed: 3 });
    const [B, T, D] = [2, 6, 16];
    const x = rand(1, B * T * D);
    const r = rand(2, B * T * D);
    const params = blockParams(model, 0);
    const base = params.map((p) => p.value.toF32().slice());
    const g = await fused(be, model, 0, x, r, B, T);
    // L(x, θ) = Σ y ⊙ r in float64 from the fused forward's f32 outputs
    const loss = async (xv: Float32Array) =>
      (await fused(be, model, 0, xv, r, B, T)).y.reduce((a, v, i) => a + v * r[i]!, 0);
    for (let dir = 0; dir < 3; dir++) {
      const vx = rand(100 + dir, x.length);
      const vw = base.map((w, k) => rand(200 + 10 * dir + k, w.length));
      const set = (eps: number) => {
        params.forEach((p, k) => {
          p.value = new HostTensor(
            'f32',
            p.shape,
            Float32Array.from(base[k]!, (w, i) => w + eps * vw[k]![i]!),
          );
        });
        return Float32Array.from(x, (v, i) => v + eps * vx[i]!);
      };
      const eps = 1e-2;
      const fd = ((await loss(set(eps))) - (await loss(set(-eps)))) / (2 * eps);
      set(0);
      let analytic = g.dx.reduce((a, v, i) => a + v * vx[i]!, 0);
      g.dw.forEach((d, k) => {
        analytic += d.reduce((a, v, i) => a + v * vw[k]![i]!, 0);
      });
      expect(Math.abs(fd - analytic), `direction ${dir}: fd ${fd}, vjp ${analytic}`).toBeLessThan(
        2e-3 * Math.abs(analytic) + 1e-3,
      );
    }
  });

  it('declines blocks it cannot express (the caller stays on the per-op path)', async () => {
    const ops = new Ops(be);
    const x = be.upload(new Float32Array(2 * 4 * 16), [2, 4, 16]);
    const w = be.upload(new Float32Array(16), [16]);
    const rope = {
      cos: ops.upload(new Float32Array(4 * 2), [4, 2]),
      sin: ops.upload(new Float32Array(4 * 2), [4, 2]),
    };
    const r = await be.fusedTraining!.blockForward!({
      x,
      weights: [w, w],
      ...rope,
      heads: 4,
      kvHeads: 2,
      headDim: 4,
      eps: 1e-5,
      save: false,
    });
    expect(r).toMatchObject({ unsupported: expect.stringContaining('block weights') });
    for (const t of [x, w, rope.cos, rope.sin]) be.dispose(t);
  });
});
