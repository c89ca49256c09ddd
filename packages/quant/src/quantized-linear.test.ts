import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getLinearKind, initModel, JsBackend, llamaConfig, loadModel, Ops, saveModel } from '@lineage/core';
import { tempDir, uniform } from '@lineage/core/testing';
import { gaussian64 } from '@lineage/linalg';
import { describe, expect, it } from 'vitest';
import { dequantize, quantizedBytes } from './grid.js';
import { randomIncoherence, transformWeight } from './hadamard.js';
import { QuantizedLinear } from './quantized-linear.js';
import { rtn } from './rtn.js';

const js = new JsBackend();

async function forward(l: QuantizedLinear, x: Float32Array, rows: number): Promise<Float32Array> {
  const ops = new Ops(js);
  return ops.tidy(async () => ops.readF32(await l.forward(ops, ops.upload(x, [rows, l.inFeatures]))));
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

describe('QuantizedLinear', () => {
  const out = 20;
  const inp = 172; // groups of 64, 64, 44
  const w = gaussian64(out, inp, 1).data;

  it('stores packed codes, f16 scales and zero points: bytes are quantizedBytes exactly', () => {
    for (const bits of [2, 3, 4, 8] as const) {
      const q = rtn(w, out, inp, { bits, groupSize: 64, zeroPoint: true });
      const l = QuantizedLinear.fromQuantized(q);
      expect(l.codes.value.dtype).toBe(bits === 8 ? 'u8' : `u${bits}`);
      expect(l.scales.value.dtype).toBe('f16');
      expect(l.scales.value.shape).toEqual([out, 3]);
      expect(l.stats().bytes).toBe(quantizedBytes(q));
      expect(l.denseWeight()).toEqual(Float32Array.from(dequantize(q)));
      expect(l.toQuantized().codes).toEqual(q.codes);
    }
  });

  it('with Hadamard signs: the transform is undone in the forward, signs cost one bit each', async () => {
    const t = randomIncoherence(out, inp, 7, 'both');
    const q = rtn(transformWeight(w, out, inp, t), out, inp, { bits: 8, groupSize: 64 });
    const l = QuantizedLinear.fromQuantized(q, { incoherence: t, bias: uniform([out], 3) });
    expect(l.stats().bytes).toBe(quantizedBytes(q) + Math.ceil(inp / 8) + Math.ceil(out / 8) + 4 * out);
    expect(l.incoherence()).toEqual(t);
    // 8 bits: the dense weight is W up to the grid's step
    expect(relErr(l.denseWeight(), w)).toBeLessThan(0.02);
    const x = uniform([3, inp], 4);
    const y = await forward(l, x, 3);
    const dw = l.denseWeight();
    const b = l.denseBias()!;
    const ref = new Float64Array(3 * out);
    for (let r = 0; r < 3; r++)
      for (let o = 0; o < out; o++) {
        let s = b[o]!;
        for (let i = 0; i < inp; i++) s += x[r * inp + i]! * dw[o * inp + i]!;
        ref[r * out + o] = s;
      }
    expect(relErr(y, ref)).toBeLessThan(1e-5);
    // cached or not: the same output, and nothing leaks
    const live = js.liveTensors?.() ?? 0;
    l.cacheDequantized = true;
    expect(await forward(l, x, 3)).toEqual(y);
    expect(await forward(l, x, 3)).toEqual(y);
    l.release();
    expect(js.liveTensors?.() ?? 0).toBe(live);
    // loader round trip
    const meta = JSON.parse(JSON.stringify(l.meta()));
    expect(meta).toEqual({ bits: 8, groupSize: 64, zeroPoint: false, hadamard: true });
    const copy = getLinearKind('quantized').load(
      new Map([...l.parameters()].map(([k, p]) => [k, p.value])),
      meta,
      'x',
      [out, inp],
    );
    expect(copy.denseWeight()).toEqual(l.denseWeight());
  });

  it('refuses slices it cannot make exactly, and bad stored tensors, in one line', () => {
    const grouped = QuantizedLinear.fromQuantized(rtn(w, out, inp, { bits: 4, groupSize: 64 }));
    expect(grouped.select({ rows: [3, 1] }).denseWeight()).toEqual(
      Float32Array.from([
        ...grouped.denseWeight().subarray(3 * inp, 4 * inp),
        ...grouped.denseWeight().subarray(inp, 2 * inp),
      ]),
    );
    expect(() => grouped.select({ cols: [0, 1] })).toThrow(
      /groups of 64 cannot be sliced exactly; prune before quantizing/,
    );
    const t = randomIncoherence(out, inp, 1, 'both');
    const had = QuantizedLinear.fromQuantized(
      rtn(transformWeight(w, out, inp, t), out, inp, { bits: 4, groupSize: 0 }),
      {
        incoherence: t,
      },
    );
    expect(() => had.select({ rows: [0] })).toThrow(
      /output rows of a quantized layer with output-side Hadamard incoherence cannot be sliced exactly/,
    );
    // input side only: rows slice exactly, columns do not
    const tin = randomIncoherence(out, inp, 2);
    expect(tin.signsOut.length).toBe(0);
    const hin = QuantizedLinear.fromQuantized(
      rtn(transformWeight(w, out, inp, tin), out, inp, { bits: 4, groupSize: 0 }),
      {
        incoherence: tin,
      },
    );
    expect(hin.parameters().has('signs_out')).toBe(false);
    const dense = hin.denseWeight();
    expect(hin.select({ rows: [4, 0] }).denseWeight()).toEqual(
      Float32Array.from([...dense.subarray(4 * inp, 5 * inp), ...dense.subarray(0, inp)]),
    );
    expect(() => hin.select({ cols: [0] })).toThrow(
      /input columns of a quantized layer with Hadamard incoherence/,
    );
    const tensors = new Map([...grouped.parameters()].map(([k, p]) => [k, p.value]));
    const kind = getLinearKind('quantized');
    expect(() =>
      kind.load(tensors, { bits: 5, groupSize: 64 }, 'model.layers.0.mlp.up_proj', [out, inp]),
    ).toThrow("quantized layer 'model.layers.0.mlp.up_proj': bits 5 in config.json is not one of 2, 3, 4, 8");
    expect(() => kind.load(tensors, { bits: 2, groupSize: 64 }, 'l', [out, inp])).toThrow(
      "quantized layer 'l': codes are u4, 2 bits need u2",
    );
    expect(() => kind.load(tensors, { bits: 4, groupSize: 32 }, 'l', [out, inp])).toThrow(
      "quantized layer 'l': scales must be f16 [20, 6], got f16 [20,3]",
    );
  });

  it('a model of quantized layers saves as safetensors and reloads bit for bit; file size follows the bytes', async () => {
    const config = llamaConfig({
      dim: 64,
      layers: 1,
      heads: 4,
      kvHeads: 2,
      hidden: 172,
      vocab: 40,
      tied: true,
    });
    const model = initModel(config, { seed: 2 });
    for (const [i, [name, l]] of model.linearLayers().entries()) {
      const dw = Float64Array.from(l.denseWeight());
      const grid = { bits: ([2, 3, 4] as const)[i % 3]!, groupSize: 32, zeroPoint: i % 2 === 0 };
      const t =
        i % 2 === 1
          ? randomIncoherence(l.outFeatures, l.inFeatures, i, i % 4 === 1 ? 'both' : 'input')
          : undefined;
      const q = rtn(
        t ? transformWeight(dw, l.outFeatures, l.inFeatures, t) : dw,
        l.outFeatures,
        l.inFeatures,
        grid,
      );
      model.setLinear(name, QuantizedLinear.fromQuantized(q, t ? { incoherence: t } : {}));
    }
    const dir = tempDir('lineage-quant-');
    await saveModel(model, dir, { format: 'hf' });
    const { model: back } = await loadModel(dir, { tokenizerOptional: true });
    expect(back.layerKinds()).toEqual(model.layerKinds());
    const ops = new Ops(js);
    const ids = Int32Array.from([1, 5, 9, 2, 30, 7]);
    const logits = async (m: typeof model) => ops.tidy(async () => ops.readF32(await m.forward(ops, ids)));
    expect(await logits(back)).toEqual(await logits(model));
    for (const [name, l] of model.linearLayers()) expect(back.getLinear(name).stats()).toEqual(l.stats());
    // the file holds 8 + header + exactly the bytes the model reports
    const file = readFileSync(join(dir, 'model.safetensors'));
    const header = Number(file.readBigUInt64LE(0));
    expect(file.length - 8 - header).toBe(model.stats().bytes);
  });
});
