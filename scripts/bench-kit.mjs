// Shared by every bench (packages/*/bench/*.mjs): the smoke mode and its sanity checks.
//
// Smoke mode (`--smoke` or LINEAGE_BENCH_SMOKE=1): each bench runs the same code paths at tiny sizes in
// seconds and fails (non-zero exit) unless its figures are finite and positive. scripts/bench-smoke.mjs
// runs every bench this way (`pnpm bench:smoke`, and CI), so a bench that no longer starts or produces
// nonsense is caught the day it breaks, not the next time someone measures.
import { execFileSync } from 'node:child_process';

export const smoke = process.argv.includes('--smoke') || process.env.LINEAGE_BENCH_SMOKE === '1';

/** The stories42M shape the full benches measure, and the tiny shape smoke runs use instead. */
export const benchShape = smoke
  ? { dim: 64, layers: 2, heads: 4, hidden: 172, vocab: 512, context: 256 }
  : { dim: 512, layers: 8, heads: 8, hidden: 1376, vocab: 32000, context: 1024 };

/** Returns x when it is a finite positive number; throws (failing the bench) otherwise. */
export function sane(label, x) {
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0)
    throw new Error(`bench figure ${label} = ${x}: expected a finite positive number`);
  return x;
}

/** Returns x when it is a finite number ≥ 0 (differences that may be exactly zero). */
export function saneNonNegative(label, x) {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0)
    throw new Error(`bench figure ${label} = ${x}: expected a finite number ≥ 0`);
  return x;
}

/**
 * Why a Python yardstick cannot run here (python3 or one of `modules` missing), or undefined when it can.
 * Rows that compare against numpy/torch are skipped with this reason instead of failing the bench.
 */
export function pythonMissing(modules = ['numpy']) {
  try {
    execFileSync('python3', ['-c', modules.map((m) => `import ${m}`).join('; ')], { stdio: 'ignore' });
    return undefined;
  } catch {
    return `python3 with ${modules.join(', ')} not available`;
  }
}
