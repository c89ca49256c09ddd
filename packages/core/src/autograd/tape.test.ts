import { describe, expect, it } from 'vitest';
import type { Tensor } from '../backend/backend.js';
import { JsBackend } from '../backend/js/js-backend.js';
import { Ops } from '../backend/ops.js';
import { namedParameters } from '../optim/optimizer.js';
import { GradOps } from './grad-ops.js';
import { languageModelLoss } from './losses.js';
import { getGradient, registerGradient } from './registry.js';
import { randomParam, randomTokens, tinyModel } from './testing.js';
import { valueAndGrad } from './value-and-grad.js';

describe('tape: recording, memory and API', () => {
  it('valueAndGrad leaves no tensor behind and matches a plain forward loss', async () => {
    const js = new JsBackend();
    const model = tinyModel();
    const tokens = randomTokens(2 * 9, 11, 1);
    const ops = new Ops(js);
    const plain = await ops.tidy(async () => ops.readF32(await languageModelLoss(ops, model, tokens, 2)));
    const base = js.liveTensors(); // parameter device copies only
    const { loss, grads } = await valueAndGrad(
      js,
      (g) => languageModelLoss(g, model, tokens, 2),
      namedParameters(model).values(),
    );
    expect(js.liveTensors()).toBe(base);
    expect(loss).toBe(plain[0]);
    expect(grads.size).toBe(namedParameters(model).size);
    for (const [p, g] of grads) expect(g.length).toBe(p.value.size);
  });

  it('valueAndGrad reports metrics returned beside the loss', async () => {
    const js = new JsBackend();
    const model = tinyModel();
    const tokens = randomTokens(2 * 5, 11, 4);
    const ops = new Ops(js);
    await ops.tidy(() => languageModelLoss(ops, model, tokens, 2)); // uploads the parameters
    const base = js.liveTensors();
    const { loss, metrics, grads } = await valueAndGrad(
      js,
      async (g) => {
        const ce = await languageModelLoss(g, model, tokens, 2);
        const l2 = await g.reduce('sum', await g.unary('square', model.norm.tensor(js)), [0]);
        return { loss: await g.add(ce, await g.scale(l2, 1e-3)), metrics: { ce, l2 } };
      },
      namedParameters(model).values(),
    );
    expect(js.liveTensors()).toBe(base);
    expect(loss).toBeCloseTo(metrics.ce! + 1e-3 * metrics.l2!, 5);
    expect(metrics.l2).toBeGreaterThan(0);
    expect(grads.size).toBe(namedParameters(model).size);
  });

  it('keeps only what the backward pass needs, and frees it progressively during backward', async () => {
    const js = new JsBackend();
    const model = tinyModel({ layers: 3 });
    const tokens = randomTokens(2 * 9, 11, 2);
    const params = [...namedParameters(model).values()];
    const ops = new GradOps(js);
    for (const p of params) ops.watch(p);
    const base = js.liveTensors();
    const loss = await ops.tidy(() => languageModelLoss(ops, model, tokens, 2));
    const afterForward = js.liveTensors() - base;
    expect(ops.tape.size).toBeGreaterThan(50);
    // Saved activations outlived their tidy scopes (deferred), the rest was freed with its scope.
    expect(ops.tape.deferred).toBeGreaterThan(0);
    expect(afterForward).toBeLessThan(ops.tape.size * 1.5);
    const seen: number[] = [];
    await ops.backward(loss, {
      onGrad: () => {
        seen.push(js.liveTensors() - base);
      },
    });
    // Gradients complete from the head towards the embedding, and activations are released on the way.
    expect(seen.length).toBe(params.length);
    expect(seen[seen.length - 1]!).toBeLessThan(seen[0]! / 2);
    expect(ops.tape.deferred).toBe(0);
    ops.dispose(loss);
    expect(js.liveTensors()).toBe(base);
  });

  it('ops that do not depend on a watched tensor are not recorded nor kept', async () => {
    const js = new JsBackend();
    const ops = new GradOps(js);
    const w = randomParam([3, 3], 1);
    w.trainable = false;
    expect(ops.watch(w)).toBeUndefined();
    const base = js.liveTensors();
    const y = await ops.tidy(async () => {
      const x = ops.upload(new Float32Array(9).fill(1), [3, 3]);
      return ops.unary('exp', await ops.matmul(x, w.tensor(js)));
    });
    expect(ops.tape.size).toBe(0);
    expect(js.liveTensors()).toBe(base + 2); // w's device copy + y
    ops.dispose(y);
  });

  it('frozen parameters get no gradient; the others still do', async () => {
    const js = new JsBackend();
    const model = tinyModel();
    const tokens = randomTokens(2 * 6, 11, 3);
    const named = namedParameters(model);
    for (const [n, p] of named) if (n.includes('layers.0.')) p.trainable = false;
    const { grads } = await valueAndGrad(js, (g) => languageModelLoss(g, model, tokens, 2), named.values());
    for (const [n, p] of named) expect(grads.has(p), n).toBe(!n.includes('layers.0.'));
  });

  it('tape.backward returns device gradients (accumulated over every use) and takes a seed', async () => {
    const js = new JsBackend();
    const ops = new GradOps(js);
    const x = ops.upload(Float32Array.from([1, 2, 3]), [3]);
    ops.watch(x);
    // y = x·x + 2x  →  dy/dx = 2x + 2, seeded with [1, 10, 100]
    const y = await ops.add(await ops.mul(x, x), await ops.scale(x, 2));
    const seed = ops.upload(Float32Array.from([1, 10, 100]), [3]);
    const grads = await ops.backward(y, { seed });
    expect([...(await ops.readF32(grads.get(x)!))]).toEqual([4, 60, 800]);
    expect([...(await ops.readF32(seed))]).toEqual([1, 10, 100]); // the caller's seed is untouched
    expect(ops.tape.size).toBe(0);
  });

  it('custom ops with a registered gradient (straight-through estimator)', async () => {
    registerGradient<null>('test.round-ste', {
      saves: () => ({ inputs: [], output: false }),
      vjp: async (_ops, dy) => [dy],
    });
    expect(() => registerGradient('matmul', getGradient('matmul')!)).toThrow(/built-in/);
    expect(() =>
      registerGradient('test.round-ste', {
        saves: () => ({ inputs: [], output: false }),
        vjp: async () => [],
      }),
    ).toThrow(/already registered/);
    const js = new JsBackend();
    const w = randomParam([4], 3);
    const { grads } = await valueAndGrad(
      js,
      async (ops) => {
        const t = w.tensor(js);
        const r = await ops.custom('test.round-ste', [t], async () => {
          const v = await ops.readF32(t);
          return ops.upload(v.map(Math.round), t.shape);
        });
        return ops.reduce('sum', await ops.mul(r, ops.upload(Float32Array.from([1, 2, 3, 4]), [4])), [0]);
      },
      [w],
    );
    expect([...grads.get(w)!]).toEqual([1, 2, 3, 4]);
  });

  it('stopGradient blocks the gradient; an unknown op fails at record time', async () => {
    const js = new JsBackend();
    const ops = new GradOps(js);
    const x = ops.upload(Float32Array.from([1, 2]), [2]);
    ops.watch(x);
    const c = await ops.stopGradient(await ops.scale(x, 3));
    expect(ops.tape.requiresGrad(c)).toBe(false);
    const y = await ops.mul(x, c); // d/dx = c = 3x
    const grads = await ops.backward(y);
    expect([...(await ops.readF32(grads.get(x)!))]).toEqual([3, 6]);
    const t = ops.upload(Float32Array.from([1]), [1]);
    ops.watch(t);
    expect(() => ops.tape.record('no-such-op', [t], t as Tensor, null)).toThrow(/no gradient/);
  });
});
