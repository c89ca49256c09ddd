import { AdamW, crossEntropyLoss, HostTensor, loadModel, Ops, Parameter, valueAndGrad } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { createOnnxruntimeBackend } from './base.js';

// Gradients are handed over without a copy when nothing else holds them (Backend.readOnce), and an
// optimiser step overwrites a parameter's cpu tensor in place (Backend.overwrite) instead of a fresh
// upload of every weight each step; kernels must then see the new values.

const backend = await createOnnxruntimeBackend({ device: 'cpu', smallOpThreshold: 0 });
afterAll(() => backend.close?.());

describe('onnxruntime cpu: parameters updated in place', () => {
  it('keeps the device tensor, whose values are the new ones, and never writes the host array given before', async () => {
    const first = Float32Array.from([1, 2, 3, 4]);
    const p = new Parameter(new HostTensor('f32', [2, 2], first));
    const dev = p.tensor(backend);
    p.update(new HostTensor('f32', [2, 2], Float32Array.from([5, 6, 7, 8])));
    expect(p.tensor(backend)).toBe(dev);
    expect([...(await backend.read(dev))]).toEqual([5, 6, 7, 8]);
    expect([...first]).toEqual([1, 2, 3, 4]); // the upload was a copy
    const ops = new Ops(backend);
    const y = await ops.matmul(dev, dev);
    expect([...(await backend.read(y))]).toEqual([67, 78, 91, 106]);
    backend.dispose(y);
  });

  it('falls back to a fresh upload while a view shares the storage', async () => {
    const p = new Parameter(new HostTensor('f32', [4], Float32Array.from([1, 2, 3, 4])));
    const dev = p.tensor(backend);
    const view = await new Ops(backend).reshape(dev, [2, 2]);
    p.update(new HostTensor('f32', [4], Float32Array.from([0, 0, 0, 1])));
    expect([...(await backend.read(view))]).toEqual([1, 2, 3, 4]);
    expect([...(await backend.read(p.tensor(backend)))]).toEqual([0, 0, 0, 1]);
    backend.dispose(view);
  });

  it('AdamW steps on stories260K give the same logits as uploading the stepped weights afresh', async () => {
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const named = model.namedParameters();
    const ops = new Ops(backend);
    const ids = Int32Array.from({ length: 16 }, (_, i) => (i * 37) % model.config.vocabSize);
    await ops.tidy(() => model.forward(ops, ids, 1)); // device copies exist before the steps
    const opt = new AdamW(named, { lr: 1e-2 });
    for (let s = 0; s < 2; s++)
      opt.step(
        new Map(
          [...named.values()].map((p) => [
            p,
            Float32Array.from({ length: p.size }, (_, i) => Math.sin(i + s)),
          ]),
        ),
      );
    const inPlace = await ops.tidy(async () => ops.read(await model.forward(ops, ids, 1)));
    const fresh = model.clone(); // new Parameters: fresh uploads of the same values
    const ref = await ops.tidy(async () => ops.read(await fresh.forward(ops, ids, 1)));
    expect(inPlace).toEqual(ref);
    model.release();
    fresh.release();
  }, 60_000);

  it('readOnce hands over the array of an unshared tensor and copies a shared one', async () => {
    const a = backend.upload(Float32Array.from([1, 2, 3, 4]), [4]);
    const view = await new Ops(backend).reshape(a, [2, 2]);
    const copy = await backend.readOnce!(a);
    copy[0] = 9;
    expect([...(await backend.read(view))]).toEqual([1, 2, 3, 4]);
    backend.dispose(view);
    backend.dispose(a);
    const data = Float32Array.from([5, 6]);
    const b = backend.upload(data, [2]);
    expect(await backend.readOnce!(b)).toBe(data);
    backend.dispose(b);
  });

  it('a gradient shared by two parameters reaches each as its own array', async () => {
    // d(sum(x + y))/dx and /dy are the same tensor on the tape: one is copied, the last may be taken
    const x = new Parameter(new HostTensor('f32', [3], Float32Array.from([1, 2, 3])));
    const y = new Parameter(new HostTensor('f32', [3], Float32Array.from([4, 5, 6])));
    const live = backend.liveTensors();
    const { grads } = await valueAndGrad(
      backend,
      async (ops) => ops.reduce('sum', await ops.add(x.tensor(backend), y.tensor(backend)), [0]),
      [x, y],
    );
    const gx = grads.get(x)!;
    const gy = grads.get(y)!;
    expect(gx).not.toBe(gy);
    expect([...gx]).toEqual([1, 1, 1]);
    gx[0] = 7;
    expect([...gy]).toEqual([1, 1, 1]);
    x.release();
    y.release();
    expect(backend.liveTensors()).toBe(live);
  });

  it('addRowsInPlace adds rows into an unshared tensor and declines a shared one', async () => {
    const t = backend.upload(Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]);
    expect(backend.addRowsInPlace!(t, Int32Array.of(0, 2), Float32Array.of(10, 20, 30, 40))).toBe(true);
    expect([...(await backend.read(t))]).toEqual([11, 22, 3, 4, 35, 46]);
    expect(() => backend.addRowsInPlace!(t, Int32Array.of(3), Float32Array.of(1, 1))).toThrow(/row 3 of 3/);
    expect(() => backend.addRowsInPlace!(t, Int32Array.of(1), Float32Array.of(1))).toThrow(/1 values/);
    const view = await new Ops(backend).reshape(t, [6]);
    expect(backend.addRowsInPlace!(t, Int32Array.of(1), Float32Array.of(1, 1))).toBe(false);
    expect([...(await backend.read(view))]).toEqual([11, 22, 3, 4, 35, 46]);
    backend.dispose(view);
    backend.dispose(t);
  });

  it("a tied embedding's rows are added into the head's gradient in place: the same gradients bit for bit", async () => {
    // stories260K ties its output head to the embedding: the head's dW arrives first, the lookup's rows
    // are then added into it (GradientSpec.rowsVjp) instead of a dense [vocab × dim] table and a sum.
    const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
    const params = [...model.namedParameters().values()];
    const V = model.config.vocabSize;
    const ids = Int32Array.from({ length: 64 }, (_, i) => (i * i * 7 + 3) % V); // repeats included
    const targets = Int32Array.from(ids, (x) => (x * 5 + 1) % V);
    const ops = new Ops(backend);
    await ops.tidy(() => model.forward(ops, ids, 2)); // device copies exist before the leak checks
    const grads = async () => {
      const live = backend.liveTensors();
      const r = await valueAndGrad(
        backend,
        async (ops) => crossEntropyLoss(ops, await model.forward(ops, ids, 2), ops.upload(targets, [64])),
        params,
      );
      expect(backend.liveTensors()).toBe(live);
      return r.grads;
    };
    const add = backend.addRowsInPlace!.bind(backend);
    let calls = 0;
    backend.addRowsInPlace = (t, rows, values) => {
      calls++;
      return add(t, rows, values);
    };
    const inPlace = await grads();
    // the dense path: no in-place capability
    backend.addRowsInPlace = undefined as unknown as typeof backend.addRowsInPlace;
    const dense = await grads();
    backend.addRowsInPlace = add;
    expect(calls).toBe(1);
    expect(inPlace.size).toBe(params.length);
    for (const p of params) expect(inPlace.get(p)).toEqual(dense.get(p));
    model.release();
  }, 60_000);
});
