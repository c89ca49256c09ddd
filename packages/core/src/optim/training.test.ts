import { describe, expect, it } from 'vitest';
import { languageModelLoss } from '../autograd/losses.js';
import { randomTokens, tinyModel } from '../autograd/testing.js';
import { valueAndGrad } from '../autograd/value-and-grad.js';
import type { Backend } from '../backend/backend.js';
import { JsBackend } from '../backend/js/js-backend.js';
import { Ops } from '../backend/ops.js';
import { loadModel } from '../checkpoint/load-model.js';
import type { LlamaModel } from '../nn/llama.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { sharedPath } from '../testing/shared.js';
import { readTextFile } from '../util/text-file.js';
import { AdamW } from './adamw.js';
import { clipGradNorm } from './clip.js';
import { namedParameters, type Optimizer } from './optimizer.js';
import { lrSchedule } from './schedule.js';

/** One update: loss and gradients, clip to norm 1, scheduled lr. Returns the loss before the update. */
async function trainStep(
  backend: Backend,
  model: LlamaModel,
  opt: Optimizer,
  tokens: Int32Array,
  batch: number,
  lr: (step: number) => number,
): Promise<number> {
  const { loss, grads } = await valueAndGrad(
    backend,
    (ops) => languageModelLoss(ops, model, tokens, batch),
    namedParameters(model).values(),
  );
  clipGradNorm(grads, 1);
  opt.step(grads, lr(opt.stepCount));
  return loss;
}

function bits(model: LlamaModel): Uint32Array[] {
  return [...namedParameters(model).values()].map((p) => new Uint32Array(p.value.toF32().slice().buffer));
}

describe('training with AdamW', () => {
  it('fits a short repeated sequence to near-zero loss in a few hundred steps', async () => {
    const js = new JsBackend();
    const model = tinyModel({ vocab: 12, dim: 32, heads: 4, kvHeads: 2, hidden: 48, std: 0.1, seed: 1 });
    const pattern = [1, 5, 3, 9, 2, 7, 4, 11, 6, 8];
    const seq = Int32Array.from({ length: 21 }, (_, i) => pattern[i % pattern.length]!);
    const opt = new AdamW(namedParameters(model), { lr: 1e-2, weightDecay: 0 });
    const sched = lrSchedule({ lr: 1e-2, warmupSteps: 10, totalSteps: 200, decay: 'cosine', minLr: 1e-3 });
    const losses: number[] = [];
    for (let s = 0; s < 200; s++) losses.push(await trainStep(js, model, opt, seq, 1, sched));
    const ops = new Ops(js);
    const final = (await ops.readF32(await languageModelLoss(ops, model, seq, 1)))[0]!;
    expect(losses[0]).toBeGreaterThan(2);
    expect(final).toBeLessThan(0.02);
  });

  it('is bitwise reproducible from a seed, and resumes exactly from a checkpoint', async () => {
    const run = async (steps: number, resumeAt?: number) => {
      const js = new JsBackend();
      let model = tinyModel({ seed: 11 });
      let opt = new AdamW(namedParameters(model), { lr: 3e-3, weightDecay: 0.1 });
      const sched = lrSchedule({ lr: 3e-3, warmupSteps: 2, totalSteps: 6 });
      for (let s = 0; s < steps; s++) {
        if (s === resumeAt) {
          // checkpoint: parameter values + optimizer state, then restore into a fresh model and optimizer
          const saved = new Map([...namedParameters(model)].map(([n, p]) => [n, p.value.toF32().slice()]));
          const state = opt.state();
          model = tinyModel({ seed: 999 });
          for (const [n, p] of namedParameters(model))
            p.value = new HostTensor('f32', p.shape, saved.get(n)!);
          opt = new AdamW(namedParameters(model), { lr: 3e-3, weightDecay: 0.1 });
          opt.loadState(state);
        }
        await trainStep(js, model, opt, randomTokens(2 * 8, 11, 100 + s), 2, sched);
      }
      return bits(model);
    };
    const a = await run(6);
    const b = await run(6);
    const c = await run(6, 3);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    const moved = await run(1);
    expect(moved).not.toEqual(a);
  });
});

describe('training the real stories260K', () => {
  it('20 AdamW steps of LM loss on a TinyStories batch decrease the training loss', async () => {
    const js = new JsBackend();
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const text = await readTextFile(sharedPath('data', 'tinystories', 'train-head.txt'));
    // train-head.txt is one stream of stories: B windows of L tokens from its start
    const B = 4;
    const L = 65;
    const ids = model.tokenizer!.encode(text.slice(0, 4000), { bos: true });
    expect(ids.length).toBeGreaterThanOrEqual(B * L);
    const tokens = Int32Array.from(ids.slice(0, B * L));
    const opt = new AdamW(namedParameters(model), { lr: 5e-4, weightDecay: 0 });
    const sched = lrSchedule({ lr: 5e-4, warmupSteps: 3, totalSteps: 20, decay: 'constant' });
    const losses: number[] = [];
    for (let s = 0; s < 20; s++) losses.push(await trainStep(js, model, opt, tokens, B, sched));
    const ops = new Ops(js);
    const after = (await ops.readF32(await languageModelLoss(ops, model, tokens, B)))[0]!;
    console.log(`stories260K: training loss ${losses[0]!.toFixed(4)} → ${after.toFixed(4)} in 20 steps`);
    expect(losses[0]).toBeGreaterThan(0.5);
    expect(losses[0]).toBeLessThan(3);
    expect(after).toBeLessThan(losses[0]! * 0.9);
    for (let s = 5; s < 20; s++) expect(losses[s]).toBeLessThan(losses[0]!);
  });
});
