import { afterAll, describe, expect, it } from 'vitest';
import type { Backend } from '../backend/backend.js';
import { JsBackend } from '../backend/js/js-backend.js';
import { type GradientCase, opGradientCases } from '../testing/gradients.js';
import { checkGradients } from './grad-check.js';

/*
 * Gradient checks of every op of the contract (the shared cases of @lineage/core/testing): autodiff on the
 * f32 js backend against float64 central differences (F64Backend). Each case differentiates
 * sum(op(inputs) ⊙ R) for a fixed random probe R.
 *
 * Tolerance: the error is |analytic − numeric| / (|numeric| + 1e-3·max|analytic|). The numeric side is
 * accurate to ~1e-9 (float64, h = 1e-6), so the error is the f32 rounding of the forward and backward
 * kernels: ~1e-7 per op, amplified by sums over ≤ 100 terms and cancellation, so 1e-5 … 1e-4 in practice.
 * We require < 1e-3 (TOL), which any wrong term of a VJP (an error of order 1) fails by orders of magnitude.
 */
const TOL = 1e-3;
const js = new JsBackend();
const measured: [string, number][] = [];

afterAll(() => {
  measured.sort((a, b) => b[1] - a[1]);
  console.log(
    `op gradient checks: ${measured.length}, worst errors: ${measured
      .slice(0, 5)
      .map(([n, e]) => `${n} ${e.toExponential(1)}`)
      .join(', ')}`,
  );
});

/** Checks d loss / d parameter for every parameter of `c` against float64 differences. */
async function check(c: GradientCase, backend: Backend = js): Promise<void> {
  const { params, loss, coords, seed } = c;
  const results = await checkGradients({ backend, params, loss, coords, seed });
  for (const r of results) {
    measured.push([`${c.name}:${r.name}`, r.maxError]);
    expect(r.scale, `${c.name}: gradient of ${r.name} is all zeros`).toBeGreaterThan(0);
    expect(r.maxError, `${c.name}: d/d${r.name}`).toBeLessThan(TOL);
  }
}

describe('gradients of the op contract vs float64 finite differences', () => {
  const cases = opGradientCases();
  for (const c of cases) it(c.name, () => check(c));

  it('attention on a backend without a fused kernel (composite forward)', async () => {
    const plain = new JsBackend() as Backend & { attention?: unknown };
    Object.defineProperty(plain, 'attention', { value: undefined });
    expect(plain.attention).toBeUndefined();
    await check(cases.find((c) => c.name === 'attention GQA causal')!, plain);
  });
});
