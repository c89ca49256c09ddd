import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as Vitest from 'vitest';
import { checkGradients } from '../autograd/grad-check.js';
import { randomParam, uniform } from '../autograd/testing.js';
import { JsBackend } from '../backend/js/js-backend.js';
import { Ops } from '../backend/ops.js';
import { loadModel } from '../checkpoint/load-model.js';
import { saveModel } from '../checkpoint/save-model.js';
import { initModel, llamaConfig } from '../nn/init.js';
import { getLinearKind, type Json, type LinearLayer } from '../nn/layer.js';
import type { Parameter } from '../nn/parameter.js';
import type { HostTensor } from '../tensor/host-tensor.js';
import { probeLoss } from './gradients.js';
import { seededChoice } from './surgery-suite.js';

/*
 * The conformance suite of a linear layer kind (`linear`, `low_rank`, and every later kind): what a kind
 * must do so that loading, saving, training, evaluation and model surgery work on it without knowing it.
 *
 * ```ts
 * import { describeLayerKind } from '@lineage/core/testing';
 * describeLayerKind('low_rank', { make: ({ out, in: inp, bias, seed }) => myLayer(out, inp, bias, seed) });
 * ```
 */

// vitest throws when imported outside its runner (see conformance.ts): load it only under vitest.
const vitest: typeof Vitest | undefined = process.env.VITEST ? await import('vitest') : undefined;

/** A temp directory removed when the current test finishes (not temp-dir.ts: it imports vitest eagerly). */
function scratchDir(v: typeof Vitest): string {
  const dir = mkdtempSync(join(tmpdir(), 'lineage-layer-kind-'));
  v.onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface LayerKindOptions {
  /** A layer of this kind mapping `in` → `out` features (with a bias when asked), its values seeded. */
  make: (o: { out: number; in: number; bias: boolean; seed: number }) => LinearLayer;
  /** Names this run in the test titles (e.g. 'bf16 storage'). */
  label?: string;
  /** The kind has no bias (its `make` ignores `bias`): bias checks are skipped. */
  noBias?: boolean;
  /** The kind does not train (e.g. integer codes): gradient checks are skipped. */
  frozen?: boolean;
  /** Relative tolerance of `forward` against x·denseWeight()ᵀ + bias in float64 (default 1e-5). */
  forwardTolerance?: number;
  /** Gradient error bound (checkGradients' relative measure; default 2e-3 as core's layer checks). */
  gradientTolerance?: number;
}

function sameTensor(a: HostTensor, b: HostTensor): boolean {
  if (a.dtype !== b.dtype || a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]))
    return false;
  const x = a.bytes();
  const y = b.bytes();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function tensorsOf(l: LinearLayer): Map<string, HostTensor> {
  return new Map([...l.parameters()].map(([k, p]) => [k, p.value]));
}

/** max |a − b| / max |b|, in float64. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den === 0 ? num : num / den;
}

/** W[rows][:, cols] of a dense [out, in] matrix, by index lists. */
function sliceDense(w: Float32Array, inp: number, rows: number[], cols: number[]): Float32Array {
  const out = new Float32Array(rows.length * cols.length);
  rows.forEach((r, i) => {
    cols.forEach((c, j) => {
      out[i * cols.length + j] = w[r * inp + c]!;
    });
  });
  return out;
}

/** Registers the conformance tests of layer kind `kind` (see LayerKindOptions). */
export function describeLayerKind(kind: string, options: LayerKindOptions): void {
  if (!vitest) throw new Error('describeLayerKind runs under vitest only');
  const { describe, expect, it } = vitest;
  const js = new JsBackend();
  const biases = options.noBias ? [false] : [false, true];
  const make = (out: number, inp: number, bias: boolean, seed: number) => {
    const l = options.make({ out, in: inp, bias, seed });
    expect(l.kind).toBe(kind);
    expect([l.outFeatures, l.inFeatures]).toEqual([out, inp]);
    return l;
  };
  const forward = async (l: LinearLayer, x: Float32Array, shape: number[]) => {
    const ops = new Ops(js);
    return ops.tidy(async () => ops.readF32(await l.forward(ops, ops.upload(x, shape))));
  };
  /** x·Wᵀ + b in float64 from the layer's dense weight and bias. */
  const denseForward = (l: LinearLayer, x: Float32Array, rows: number): Float64Array => {
    const w = l.denseWeight();
    const b = l.denseBias();
    const { outFeatures: O, inFeatures: I } = l;
    const y = new Float64Array(rows * O);
    for (let t = 0; t < rows; t++)
      for (let o = 0; o < O; o++) {
        let s = b ? b[o]! : 0;
        for (let i = 0; i < I; i++) s += x[t * I + i]! * w[o * I + i]!;
        y[t * O + o] = s;
      }
    return y;
  };

  describe(`layer kind '${kind}' conformance${options.label ? ` (${options.label})` : ''}`, () => {
    for (const bias of biases) {
      const tag = bias ? 'with bias' : 'without bias';

      it(`is registered, and its loader rebuilds it from its tensors and meta (JSON round trip) — ${tag}`, async () => {
        const l = make(12, 10, bias, 1);
        const meta = JSON.parse(JSON.stringify(l.meta())) as Json;
        expect(meta).toEqual(l.meta());
        const copy = getLinearKind(kind).load(tensorsOf(l), meta, 'layer', [12, 10]);
        expect(copy.kind).toBe(kind);
        expect(copy.meta()).toEqual(l.meta());
        expect([...copy.parameters().keys()]).toEqual([...l.parameters().keys()]);
        for (const [k, p] of l.parameters())
          expect(sameTensor(copy.parameters().get(k)!.value, p.value), k).toBe(true);
        const x = uniform([3, 10], 2);
        expect(await forward(copy, x, [3, 10])).toEqual(await forward(l, x, [3, 10]));
        expect(copy.parameters().has('bias')).toBe(bias);
        expect(() => getLinearKind(kind).load(tensorsOf(l), meta, 'layer', [12, 11])).toThrow(/layer/);
      });

      it(`forward agrees with x·denseWeight()ᵀ + denseBias() — ${tag}`, async () => {
        const l = make(9, 14, bias, 3);
        const x = uniform([2, 3, 14], 4);
        const y = await forward(l, x, [2, 3, 14]);
        expect(y.length).toBe(2 * 3 * 9);
        expect(relErr(y, denseForward(l, x, 6))).toBeLessThan(options.forwardTolerance ?? 1e-5);
        expect(l.denseWeight().length).toBe(9 * 14);
        expect(l.denseBias()?.length).toBe(bias ? 9 : undefined);
      });

      it(`stats() are the stored tensors' element count and bytes — ${tag}`, () => {
        const l = make(8, 6, bias, 5);
        let params = 0;
        let bytes = 0;
        for (const p of l.parameters().values()) {
          params += p.value.size;
          bytes += p.value.byteLength;
        }
        expect(l.stats()).toEqual({ params, bytes });
      });

      it(`select() agrees with slicing the dense weight (rows, columns, both; any order) — ${tag}`, async () => {
        const l = make(10, 12, bias, 6);
        const w = l.denseWeight();
        const b = l.denseBias();
        const before = [...l.parameters()].map(([k, p]) => [k, p.value] as const);
        const all = (n: number) => [...Array(n).keys()];
        const cases: [number[] | undefined, number[] | undefined][] = [
          [seededChoice(10, 4, 1), undefined],
          [undefined, seededChoice(12, 7, 2)],
          [seededChoice(10, 6, 3), seededChoice(12, 5, 4)],
          [all(10).reverse(), all(12)],
        ];
        for (const [rows, cols] of cases) {
          const s = l.select({ ...(rows ? { rows } : {}), ...(cols ? { cols: Int32Array.from(cols) } : {}) });
          const R = rows ?? all(10);
          const C = cols ?? all(12);
          expect(s.kind).toBe(kind);
          for (const [k, p] of s.parameters())
            expect(p.value.dtype, `${k}'s stored dtype`).toBe(l.parameters().get(k)?.value.dtype);
          expect([s.outFeatures, s.inFeatures]).toEqual([R.length, C.length]);
          expect(relErr(s.denseWeight(), sliceDense(w, 12, R, C))).toBeLessThan(1e-6);
          if (b) expect([...s.denseBias()!]).toEqual(R.map((r) => b[r]!));
          else expect(s.denseBias()).toBeUndefined();
          const x = uniform([2, C.length], 7);
          expect(relErr(await forward(s, x, [2, C.length]), denseForward(s, x, 2))).toBeLessThan(
            options.forwardTolerance ?? 1e-5,
          );
          // it is rebuilt by the kind's loader like any saved layer
          const meta = JSON.parse(JSON.stringify(s.meta())) as Json;
          getLinearKind(kind).load(tensorsOf(s), meta, 'selected', [R.length, C.length]);
        }
        // the parent is untouched
        for (const [k, v] of before) expect(l.parameters().get(k)!.value).toBe(v);
        expect(() => l.select({ rows: [10] })).toThrow(/index 10 is outside 0\.\.9/);
        expect(() => l.select({ cols: [1, 1] })).toThrow(/index 1 is repeated/);
        expect(() => l.select({ rows: [] })).toThrow(/keeps nothing/);
      });

      it(`lookup() (the embedding slot), where the kind has it, gives rows of the dense weight — ${tag}`, async () => {
        const l = make(11, 6, bias, 12);
        if (!l.lookup) return;
        const ids = Int32Array.from([3, 0, 10, 3, 7, 1]);
        const ops = new Ops(js);
        const rows = await ops.tidy(async () => ops.readF32(await l.lookup!(ops, ops.upload(ids, [2, 3]))));
        const w = l.denseWeight();
        const want = Float64Array.from([...ids].flatMap((id) => [...w.subarray(id * 6, id * 6 + 6)]));
        expect(rows.length).toBe(2 * 3 * 6);
        expect(relErr(rows, want)).toBeLessThan(options.forwardTolerance ?? 1e-5);
        if (options.frozen) return;
        const results = await checkGradients({
          backend: js,
          params: new Map([...l.parameters()].filter(([k, p]) => k !== 'bias' && p.trainable)),
          loss: async (o) => probeLoss(o, await l.lookup!(o, o.upload(ids, [2, 3])), 13),
        });
        for (const r of results)
          expect(r.maxError, `d/d${r.name}`).toBeLessThan(options.gradientTolerance ?? 2e-3);
      });

      if (!options.frozen) {
        it(`gradients of its parameters and input match float64 finite differences — ${tag}`, async () => {
          const l = make(5, 6, bias, 8);
          const x = randomParam([2, 3, 6], 9);
          const params = new Map<string, Parameter>([['x', x]]);
          for (const [k, p] of l.parameters()) if (p.trainable) params.set(k, p);
          const results = await checkGradients({
            backend: js,
            params,
            loss: async (ops) => probeLoss(ops, await l.forward(ops, x.tensor(ops.backend)), 10),
          });
          expect(results.map((r) => r.name)).toEqual([...params.keys()]);
          for (const r of results) {
            expect(r.scale, `d/d${r.name} is all zeros`).toBeGreaterThan(0);
            expect(r.maxError, `d/d${r.name}`).toBeLessThan(options.gradientTolerance ?? 2e-3);
          }
        });
      }
    }

    it('a model whose every linear (head included) is of this kind saves, reloads, clones and counts alike', async () => {
      const config = llamaConfig({
        dim: 16,
        layers: 2,
        heads: 4,
        kvHeads: 2,
        hidden: 24,
        vocab: 32,
        tied: false,
      });
      const model = initModel(config, { seed: 3 });
      let seed = 100;
      for (const [name, l] of model.linearLayers())
        model.setLinear(name, make(l.outFeatures, l.inFeatures, false, seed++));
      const frozen = model.linearLayers()[2]![1].parameters().values().next().value!;
      frozen.trainable = false;
      const dir = join(scratchDir(vitest), 'model');
      await saveModel(model, dir, { format: 'hf' });
      const { model: loaded } = await loadModel(dir, { tokenizerOptional: true });
      expect(loaded.layerKinds()).toEqual(model.layerKinds());
      const sd = model.stateDict();
      const lsd = loaded.stateDict();
      expect([...lsd.keys()]).toEqual([...sd.keys()]);
      for (const [k, t] of sd) expect(sameTensor(lsd.get(k)!, t), k).toBe(true);
      const ops = new Ops(js);
      const ids = Int32Array.from([1, 5, 9, 2, 30]);
      const logits = async (m: typeof model) => ops.tidy(async () => ops.readF32(await m.forward(ops, ids)));
      const ref = await logits(model);
      expect(await logits(loaded)).toEqual(ref);

      const copy = model.clone();
      expect(await logits(copy)).toEqual(ref);
      const orig = model.namedParameters();
      for (const [k, p] of copy.namedParameters()) {
        expect(p, k).not.toBe(orig.get(k));
        expect(p.trainable, k).toBe(orig.get(k)!.trainable);
      }
      expect(copy.linearLayers().every(([, l]) => l.kind === kind)).toBe(true);

      // honest accounting: the model's counts are its stored tensors, per layer and in total
      const stats = model.stats();
      let params = 0;
      let bytes = 0;
      for (const t of sd.values()) {
        params += t.size;
        bytes += t.byteLength;
      }
      expect([stats.params, stats.bytes]).toEqual([params, bytes]);
      for (const r of stats.layers)
        expect({ params: r.params, bytes: r.bytes }).toEqual(model.getLinear(r.name).stats());
    });
  });
}
