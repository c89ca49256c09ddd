import { describe, expect, it } from 'vitest';
import type { Backend, Tensor } from '../backend/backend.js';
import { JsBackend } from '../backend/js/js-backend.js';
import {
  builtinGradientOps,
  compareGradients,
  GRADIENT_AGREEMENT_TOLERANCE,
  layerGradientCases,
  opGradientCases,
  recordedOps,
} from './gradients.js';

/*
 * The cross-backend gradient harness itself (backends run it with describeGradientAgreement): two js
 * backends agree exactly, the cases cover every op with a built-in gradient, and a backend with a subtly
 * wrong kernel fails the tolerance.
 */

/** A js backend whose RoPE rotates by a 2% larger angle: a plausible kernel bug, small in the forward. */
class SkewedRope extends JsBackend {
  override async rope(x: Tensor, cos: Tensor, sin: Tensor): Promise<Tensor> {
    const c = (await this.read(cos)) as Float32Array;
    const s = (await this.read(sin)) as Float32Array;
    const c2 = new Float32Array(c.length);
    const s2 = new Float32Array(s.length);
    for (let i = 0; i < c.length; i++) {
      const a = Math.atan2(s[i]!, c[i]!) * 1.02;
      c2[i] = Math.cos(a);
      s2[i] = Math.sin(a);
    }
    const [tc, ts] = [this.upload(c2, cos.shape), this.upload(s2, sin.shape)];
    try {
      return await super.rope(x, tc, ts);
    } finally {
      this.dispose(tc);
      this.dispose(ts);
    }
  }
}

const exceeds = async (backend: Backend, name: string) => {
  const c = layerGradientCases().find((x) => x.name.startsWith(name))!;
  const r = await compareGradients(c, new JsBackend(), backend);
  const { rel, abs } = GRADIENT_AGREEMENT_TOLERANCE;
  return r.params.filter((d) => d.maxAbsDiff > rel * d.scale + abs).map((d) => d.name);
};

describe('cross-backend gradient harness', () => {
  it('two js backends give identical gradients for every case', async () => {
    for (const c of [...opGradientCases(), ...layerGradientCases()]) {
      const r = await compareGradients(c, new JsBackend(), new JsBackend());
      expect(r.missing, c.name).toEqual([]);
      expect(r.params.length, c.name).toBeGreaterThan(0);
      for (const d of r.params) expect(d.maxAbsDiff, `${c.name}: ${d.name}`).toBe(0);
    }
  });

  it('the cases exercise every op with a built-in gradient', async () => {
    const seen = new Set<string>();
    for (const c of [...opGradientCases(), ...layerGradientCases()])
      for (const op of await recordedOps(c, new JsBackend())) seen.add(op);
    expect(builtinGradientOps().filter((op) => !seen.has(op))).toEqual([]);
  });

  it('a backend with a subtly wrong RoPE kernel fails the tolerance', async () => {
    const bad = await exceeds(new SkewedRope(), 'Llama, dim 32');
    expect(bad.length).toBeGreaterThan(0);
    expect(bad).toContain('model.layers.0.self_attn.q_proj.weight');
  });
});
