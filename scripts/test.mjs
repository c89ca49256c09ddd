// Runs every package's tests through turbo, then prints one summary line over all packages:
// "N passed, N failed, N skipped" (CI reads it). Each package's vitest writes .vitest-report.json.
// A full run (no arguments) then runs every bench's smoke mode (scripts/bench-smoke.mjs) and counts each
// bench as one test, so a bench that stops working fails CI; LINEAGE_BENCH_SMOKE=0 leaves them out.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runBenchSmoke } from './bench-smoke.mjs';

const root = join(import.meta.dirname, '..');
const pkgs = readdirSync(join(root, 'packages'))
  .map((d) => join(root, 'packages', d))
  .filter((d) => existsSync(join(d, 'package.json')))
  .filter((d) => JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')).scripts?.test);

// A stale report must never be counted: remove them; turbo restores cached ones from a valid cache hit.
for (const d of pkgs) rmSync(join(d, '.vitest-report.json'), { force: true });

// One package at a time: each vitest already uses both cores, and suites running side by side on a small
// machine only slow each other into timeouts.
const args = ['exec', 'turbo', 'run', 'test', '--continue', '--concurrency=1', ...process.argv.slice(2)];
const r = spawnSync('pnpm', args, { cwd: root, stdio: 'inherit' });

let passed = 0;
let failed = 0;
let skipped = 0;
for (const d of pkgs) {
  const f = join(d, '.vitest-report.json');
  if (!existsSync(f)) {
    console.error(`no test report from ${d} (its test run crashed or did not start): counted as 1 failed`);
    failed += 1;
    continue;
  }
  const rep = JSON.parse(readFileSync(f, 'utf8'));
  passed += rep.numPassedTests;
  failed += rep.numFailedTests;
  skipped += rep.numPendingTests + rep.numTodoTests;
  // Suites that failed to load report no tests but must not pass silently.
  for (const s of rep.testResults ?? [])
    if (s.status === 'failed' && s.assertionResults.length === 0) failed += 1;
}

const filtered = process.argv.length > 2;
if (!filtered && process.env.LINEAGE_BENCH_SMOKE !== '0') {
  console.log('\nbench smoke runs (tiny sizes; `pnpm bench` measures):');
  const smoke = await runBenchSmoke();
  passed += smoke.passed;
  failed += smoke.failed;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(r.status !== 0 || failed > 0 ? 1 : 0);
