// Cost of the finite check on load (#17): every float tensor is scanned for NaN/Inf as it is read.
//
// A stories42M-shaped synthetic checkpoint (dim 512, 8 layers, 8 heads, hidden 1376, vocab 32000; 41.7M
// params) saved as a Hugging Face directory in f32 and in bf16, then loaded alternately with the check
// (the default) and without it (allowNonfinite) LINEAGE_BENCH_ROUNDS times (default 6, alternating which
// goes first); each figure is the best seen. Freshly read memory is slow on its first touch (several times
// slower than the second), and the scan is that first touch: a load alone makes the check look far dearer
// than it is, since any use of the weights pays that touch later. So each load is followed by a first use
// (a plain sum over every weight) and "load + first use" is compared; the scan on warm memory is timed too.
//
// Run after `pnpm build`: node packages/core/bench/finite-check-bench.mjs
// --smoke (or LINEAGE_BENCH_SMOKE=1): a tiny model, one round; fails unless every figure is finite and positive.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { firstNonFinite, initModel, llamaConfig, loadModel, saveModel } from '@lineage/core';
import { benchShape, sane, smoke } from '../../../scripts/bench-kit.mjs';

const rounds = smoke ? 1 : Number(process.env.LINEAGE_BENCH_ROUNDS ?? 6);
const dir = mkdtempSync(join(os.tmpdir(), 'lineage-finite-bench-'));
try {
  const model = initModel(llamaConfig({ ...benchShape, tied: true }), { seed: 1 });
  const params = model.stats().params;
  console.log(
    `model: ${benchShape.dim} dim, ${benchShape.layers} layers, vocab ${benchShape.vocab}: ${params} params`,
  );
  for (const dtype of ['f32', 'bf16']) {
    const out = join(dir, dtype);
    await saveModel(model, out, { format: 'hf', dtype });
    const best = {
      checked: Number.POSITIVE_INFINITY,
      unchecked: Number.POSITIVE_INFINITY,
      scan: Number.POSITIVE_INFINITY,
    };
    for (let r = 0; r < rounds; r++) {
      // alternate which goes first, so neither always meets a colder page cache
      for (const allow of r % 2 ? [true, false] : [false, true]) {
        const t0 = performance.now();
        const { model: m } = await loadModel(out, { tokenizerOptional: true, allowNonfinite: allow });
        let sum = 0;
        for (const t of m.stateDict().values()) {
          const a = t.data;
          for (let i = 0; i < a.length; i++) sum += a[i];
        }
        if (Number.isNaN(sum)) throw new Error('NaN weights');
        const ms = performance.now() - t0;
        const key = allow ? 'unchecked' : 'checked';
        best[key] = Math.min(best[key], ms);
        if (!allow) {
          const t1 = performance.now();
          for (const t of m.stateDict().values()) if (firstNonFinite(t) >= 0) throw new Error('non-finite');
          best.scan = Math.min(best.scan, performance.now() - t1);
        }
      }
    }
    console.log(
      `${dtype}: load + first use ${sane('checked', best.checked).toFixed(0)} ms checked, ${sane('unchecked', best.unchecked).toFixed(0)} ms unchecked ` +
        `(${(((best.checked - best.unchecked) / best.unchecked) * 100).toFixed(1)}%); scan on warm memory ${sane('scan', best.scan).toFixed(1)} ms ` +
        `(${(params / best.scan / 1e6).toFixed(2)} G params/s) = ${((best.scan / best.unchecked) * 100).toFixed(1)}% of an unchecked load + first use`,
    );
  }
  console.log(
    `load average: ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
