import { getLinearKind, JsBackend, LineageError, Ops } from '@lineage/core';
import { describeLayerKind, uniform } from '@lineage/core/testing';
import { gaussian64 } from '@lineage/linalg';
import { describe, expect, it } from 'vitest';
import { e8pDequantize, ldlqE8p, padForE8p } from './e8p.js';
import { E8pLinear } from './e8p-linear.js';
import { randomIncoherence, transformWeight, untransformWeight } from './hadamard.js';
import { QUANTIZED_KIND } from './quantized-linear.js';

/** An E8P12 layer of uniform random weights (nearest codewords), optionally under a two-sided transform. */
function make(sides?: 'input' | 'both') {
  return ({ out, in: inp, bias, seed }: { out: number; in: number; bias: boolean; seed: number }) => {
    const t = sides ? randomIncoherence(out, inp, seed + 9, sides) : undefined;
    const w0 = Float64Array.from(uniform([out, inp], seed));
    const p = padForE8p(t ? transformWeight(w0, out, inp, t) : w0, out, inp);
    return E8pLinear.fromE8p(ldlqE8p(p.w, out, p.cols, undefined), inp, {
      ...(t ? { incoherence: t } : {}),
      ...(bias ? { bias: uniform([out], seed + 2) } : {}),
    });
  };
}

describeLayerKind(QUANTIZED_KIND, { make: make(), frozen: true, label: 'E8P12 codebook' });
describeLayerKind(QUANTIZED_KIND, {
  make: make('both'),
  frozen: true,
  label: 'E8P12 codebook, Hadamard on both sides',
});

describe('E8pLinear', () => {
  const js = new JsBackend();
  const [out, inp] = [20, 172]; // stories260K's FFN width: padded to 176
  const w = gaussian64(out, inp, 1).data;

  it('stores u16 codes per 8 columns (width padded), an f16 scale per row and the signs: bytes exact', () => {
    const t = randomIncoherence(out, inp, 3);
    const p = padForE8p(transformWeight(w, out, inp, t), out, inp);
    expect(p.cols).toBe(176);
    const q = ldlqE8p(p.w, out, p.cols, undefined);
    const l = E8pLinear.fromE8p(q, inp, { incoherence: t, bias: uniform([out], 2) });
    expect([l.outFeatures, l.inFeatures]).toEqual([out, inp]);
    expect(l.codes.value.dtype).toBe('u16');
    expect(l.codes.value.shape).toEqual([out, 22]);
    expect(l.scales.value.shape).toEqual([out, 1]);
    expect(l.stats().bytes).toBe(2 * out * 22 + 2 * out + Math.ceil(inp / 8) + 4 * out);
    expect(l.meta()).toEqual({ codebook: 'e8p12', bits: 2, hadamard: true, columns: 172 });
    // decoding: the codewords of the first 172 columns, then the transform undone
    const stored = e8pDequantize(q, inp);
    expect(l.storedWeight64()).toEqual(stored);
    const back = untransformWeight(stored, out, inp, t);
    const dense = l.denseWeight64();
    for (let i = 0; i < dense.length; i++) expect(dense[i]).toBeCloseTo(back[i]!, 12);
  });

  it('forward decodes per call or from its cache, leaking nothing', async () => {
    const l = make('input')({ out: 12, in: 20, bias: true, seed: 4 });
    const x = uniform([3, 20], 5);
    const run = async () => {
      const ops = new Ops(js);
      return ops.tidy(async () => ops.readF32(await l.forward(ops, ops.upload(x, [3, 20]))));
    };
    const y = await run();
    const live = js.liveTensors?.() ?? 0; // the bias's device copy stays with its parameter
    l.cacheDequantized = true;
    expect(await run()).toEqual(y);
    expect(await run()).toEqual(y);
    l.release();
    expect(js.liveTensors?.() ?? 0).toBe(live);
  });

  it('its loader refuses a bad codebook, bits, codes or meta in one line naming the layer', () => {
    const l = make()({ out: 6, in: 12, bias: false, seed: 1 });
    const tensors = new Map([...l.parameters()].map(([k, p]) => [k, p.value]));
    const kind = getLinearKind(QUANTIZED_KIND);
    const meta = l.meta() as Record<string, unknown>;
    const load = (m: Record<string, unknown>, shape: [number, number] = [6, 12]) =>
      kind.load(tensors, m as never, 'model.layers.0.mlp.up_proj', shape);
    expect(load(meta).denseWeight()).toEqual(l.denseWeight());
    expect(() => load({ ...meta, codebook: 'e8p' })).toThrow(
      new LineageError(
        `quantized layer 'model.layers.0.mlp.up_proj': codebook "e8p" in config.json is not 'e8p12'`,
      ),
    );
    expect(() => load({ ...meta, bits: 3 })).toThrow(/stores 2 bits per weight, config\.json says bits 3/);
    expect(() => load({ ...meta, columns: 20 })).toThrow(
      /\(e8p12\): codes must be u16 \[out, 3\] for 20 columns, got u16 \[6,2\]/,
    );
    expect(() => load({ ...meta, inputs: [0, 12] }, [6, 2])).toThrow(/selected inputs .* indices below 12/);
    expect(() => load(meta, [6, 11])).toThrow(/make \[6, 12\], the config implies \[6, 11\]/);
    expect(() => load({ ...meta, hadamard: true })).toThrow(/Hadamard signs are missing/);
  });
});
