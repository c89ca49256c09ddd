import { afterAll, describe, expect, it } from 'vitest';
import type { Tensor } from '../backend/backend.js';
import { JsBackend } from '../backend/js/js-backend.js';
import type { Ops } from '../backend/ops.js';
import { loadModel } from '../checkpoint/load-model.js';
import { Linear } from '../nn/linear.js';
import type { Parameter } from '../nn/parameter.js';
import { namedParameters } from '../optim/optimizer.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { sharedPath } from '../testing/shared.js';
import { checkGradients, type GradCheckResult } from './grad-check.js';
import { crossEntropyLoss, klDivergence, languageModelLoss, mseLoss } from './losses.js';
import { randomParam, randomTokens, tinyModel, uniform } from './testing.js';

/*
 * Gradient checks of every layer kind and of whole models: autodiff on the f32 js backend against float64
 * central differences of the same layer code run on F64Backend (see gradients.test.ts for the error
 * measure). Layers and models are deeper than single ops, so f32 rounding compounds a little more:
 * observed errors stay below ~1e-4; we require < 2e-3.
 */
const TOL = 2e-3;
const js = new JsBackend();
const measured: [string, number][] = [];

afterAll(() => {
  measured.sort((a, b) => b[1] - a[1]);
  console.log(
    `layer/model gradient checks: ${measured.length} tensors, worst: ${measured
      .slice(0, 6)
      .map(([n, e]) => `${n} ${e.toExponential(1)}`)
      .join(', ')}`,
  );
});

function expectClose(label: string, results: GradCheckResult[]): void {
  for (const r of results) {
    measured.push([`${label}:${r.name}`, r.maxError]);
    expect(r.scale, `${label}: gradient of ${r.name} is all zeros`).toBeGreaterThan(0);
    expect(r.maxError, `${label}: d/d${r.name}`).toBeLessThan(TOL);
  }
}

/** sum(y ⊙ R) for a fixed random probe R: makes every output element matter with a distinct weight. */
async function probe(ops: Ops, y: Tensor, seed: number): Promise<Tensor> {
  const r = ops.upload(uniform(y.shape, seed), y.shape);
  return ops.reduce(
    'sum',
    await ops.mul(y, r),
    y.shape.map((_, i) => i),
  );
}

function input(shape: number[], seed: number): Parameter {
  return randomParam(shape, seed);
}

describe('layer gradients vs float64 finite differences', () => {
  it('embedding (gather from the table)', async () => {
    const model = tinyModel();
    const ids = randomTokens(8, model.config.vocabSize, 3);
    expectClose(
      'embedding',
      await checkGradients({
        backend: js,
        params: new Map([['embed', model.embed]]),
        loss: async (ops) => probe(ops, await model.embedTokens(ops, ids, 2), 1),
      }),
    );
  });

  it('RMSNorm (input and weight)', async () => {
    const model = tinyModel();
    const x = input([2, 3, 16], 4);
    expectClose(
      'rmsnorm',
      await checkGradients({
        backend: js,
        params: new Map([
          ['x', x],
          ['norm', model.norm],
        ]),
        loss: async (ops) => probe(ops, await model.finalNorm(ops, x.tensor(ops.backend)), 2),
      }),
    );
  });

  it('Linear with and without bias', async () => {
    for (const bias of [true, false]) {
      const lin = new Linear(
        new HostTensor('f32', [5, 6], uniform([5, 6], 10)),
        bias ? new HostTensor('f32', [5], uniform([5], 11)) : undefined,
      );
      const x = input([2, 3, 6], 12);
      const params = new Map<string, Parameter>([['x', x]]);
      for (const [k, p] of lin.parameters()) params.set(k, p);
      expectClose(
        `linear bias=${bias}`,
        await checkGradients({
          backend: js,
          params,
          loss: async (ops) => probe(ops, await lin.forward(ops, x.tensor(ops.backend)), 3),
        }),
      );
    }
  });

  it('SwiGLU MLP (gate, up, down)', async () => {
    const model = tinyModel();
    const L = model.blocks[0]!.linears;
    const x = input([2, 3, 16], 13);
    const params = new Map<string, Parameter>([['x', x]]);
    for (const s of ['mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const)
      for (const [k, p] of L[s].parameters()) params.set(`${s}.${k}`, p);
    expectClose(
      'swiglu',
      await checkGradients({
        backend: js,
        params,
        coords: 24,
        loss: async (ops) => {
          const h = x.tensor(ops.backend);
          const g = await ops.unary('silu', await L['mlp.gate_proj'].forward(ops, h));
          const u = await L['mlp.up_proj'].forward(ops, h);
          return probe(ops, await L['mlp.down_proj'].forward(ops, await ops.mul(g, u)), 4);
        },
      }),
    );
  });

  it('decoder block: attention with RoPE and GQA, q/k/v/o biases, SwiGLU, norms, residuals', async () => {
    const model = tinyModel();
    const x = input([2, 5, 16], 14);
    const blk = model.blocks[0]!;
    const params = new Map<string, Parameter>([
      ['x', x],
      ['input_layernorm', blk.inputNorm],
      ['post_attention_layernorm', blk.postNorm],
    ]);
    for (const [s, l] of Object.entries(blk.linears))
      for (const [k, p] of l.parameters()) params.set(`${s}.${k}`, p);
    expectClose(
      'block',
      await checkGradients({
        backend: js,
        params,
        coords: 24,
        loss: async (ops) => {
          const rope = model.rope(ops, 5);
          return probe(ops, await model.block(ops, 0, x.tensor(ops.backend), rope), 5);
        },
      }),
    );
  });

  it('tied head (logits through the embedding)', async () => {
    const model = tinyModel({ tied: true });
    const h = input([4, 16], 15);
    expectClose(
      'tied head',
      await checkGradients({
        backend: js,
        params: new Map([
          ['h', h],
          ['embed', model.embed],
        ]),
        loss: async (ops) => probe(ops, await model.logits(ops, h.tensor(ops.backend)), 6),
      }),
    );
  });

  it('cross-entropy loss (weighted mean, padding masked)', async () => {
    const logits = randomParam([6, 9], 16, -3, 3);
    const targets = Int32Array.from([1, 8, 0, 4, 4, 2]);
    const weights = Float32Array.from([1, 1, 0, 1, 0.5, 1]);
    expectClose(
      'cross-entropy',
      await checkGradients({
        backend: js,
        params: new Map([['logits', logits]]),
        loss: async (ops) => crossEntropyLoss(ops, logits.tensor(ops.backend), targets, { weights }),
      }),
    );
  });

  it('KL(teacher ‖ student) with temperature, both sides differentiated; MSE', async () => {
    const teacher = randomParam([2, 3, 7], 17, -3, 3);
    const student = randomParam([2, 3, 7], 18, -3, 3);
    expectClose(
      'kl T=2',
      await checkGradients({
        backend: js,
        params: new Map([
          ['teacher', teacher],
          ['student', student],
        ]),
        loss: async (ops) =>
          klDivergence(ops, teacher.tensor(ops.backend), student.tensor(ops.backend), { temperature: 2 }),
      }),
    );
    expectClose(
      'mse',
      await checkGradients({
        backend: js,
        params: new Map([
          ['a', teacher],
          ['b', student],
        ]),
        loss: async (ops) => mseLoss(ops, teacher.tensor(ops.backend), student.tensor(ops.backend)),
      }),
    );
  });
});

describe('full LlamaModel gradients vs float64 finite differences (random coordinates of every parameter)', () => {
  for (const tied of [false, true]) {
    it(`GQA, q/k/v/o/mlp biases, ${tied ? 'tied' : 'untied'} head: d(LM loss)/d(every parameter)`, async () => {
      const model = tinyModel({ tied });
      const tokens = randomTokens(2 * 7, model.config.vocabSize, tied ? 21 : 22);
      const params = namedParameters(model);
      const results = await checkGradients({
        backend: js,
        params,
        coords: 6,
        seed: 5,
        loss: (ops) => languageModelLoss(ops, model, tokens, 2),
      });
      expect(results.length).toBe(params.size);
      expectClose(tied ? 'tied model' : 'untied model', results);
    });
  }

  it('KL distillation of a student model from a frozen teacher', async () => {
    const teacher = tinyModel({ seed: 3 });
    const student = tinyModel({ seed: 4, biases: false });
    for (const p of namedParameters(teacher).values()) p.trainable = false;
    const ids = randomTokens(2 * 5, 11, 30);
    const results = await checkGradients({
      backend: js,
      params: new Map([
        ...namedParameters(student),
        ...[...namedParameters(teacher)].map(([k, p]) => [`t.${k}`, p] as [string, Parameter]),
      ]),
      coords: 4,
      loss: async (ops) => {
        const t = await teacher.forward(ops, ids, 2);
        const s = await student.forward(ops, ids, 2);
        return klDivergence(ops, t, s, { temperature: 1.5 });
      },
    });
    // frozen teacher parameters are not checked (nor differentiated)
    expect(results.length).toBe(namedParameters(student).size);
    expectClose('distill', results);
  });

  it('the real stories260K (tied, GQA 8/4): d(LM loss)/d(every parameter)', async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const ids = Int32Array.from(
      model
        .tokenizer!.encode('Once upon a time, there was a little girl named Lily. She', { bos: true })
        .slice(0, 12),
    );
    const results = await checkGradients({
      backend: js,
      params: namedParameters(model),
      coords: 2,
      seed: 9,
      loss: (ops) => languageModelLoss(ops, model, ids, 1),
    });
    expectClose('stories260K', results);
  });
});
