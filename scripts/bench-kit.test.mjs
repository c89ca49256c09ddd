// The bench kit's method, checked without measuring anything: alternation order, medians, ratios of medians,
// verdicts refused under load, and the JSON record. `node --test scripts/bench-kit.test.mjs`; bench-smoke runs
// it first, as one test.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { alternate, median, summarize } from './bench-kit.mjs';

test('median and summarize', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.deepEqual(summarize([1, 2, 4]), { median: 2, min: 1, max: 4, spread: 1.5, n: 3 });
});

test('alternate runs the measures in turn, round after round', async () => {
  const order = [];
  const s = await alternate(3, {
    a: (r) => order.push(`a${r}`) && r,
    b: (r) => order.push(`b${r}`) && 10 + r,
  });
  assert.deepEqual(order, ['a0', 'b0', 'a1', 'b1', 'a2', 'b2']);
  assert.deepEqual(s, { a: [0, 1, 2], b: [10, 11, 12] });
});

/** Runs a full-size (not smoke) bench record in a child with the given load fraction; returns its JSON. */
function record(fraction) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-kit-test-'));
  try {
    const file = join(dir, 'r.json');
    const code = `
      const k = await import(${JSON.stringify(new URL('./bench-kit.mjs', import.meta.url).href)});
      const b = k.startBench('kit-test');
      b.ratio('fast / slow', [2, 4, 6], [1, 2, 3], { min: 1.5 });
      b.ratio('slow / fast', [1, 2, 3], [2, 4, 6], { min: 1 });
      b.ratio('no target', [1], [1]);
      b.finish({ x: 1 }, { log: () => {} });`;
    execFileSync(process.execPath, ['--input-type=module', '-e', code, '--', '--json', file], {
      env: { ...process.env, LINEAGE_BENCH_SMOKE: '0', LINEAGE_BENCH_LOAD_FRACTION: String(fraction) },
    });
    return JSON.parse(readFileSync(file, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('verdicts on an idle machine: met / not met from ratios of medians', () => {
  const r = record(1e9); // no load counts as load
  assert.equal(r.load.loaded, false);
  assert.deepEqual(
    r.ratios.map((x) => [x.value, x.verdict]),
    [
      [2, 'met'],
      [0.5, 'not met'],
      [1, 'quotable'],
    ],
  );
  assert.deepEqual(r.ratios[0].perRound, [2, 2, 2]);
  assert.equal(r.results.x, 1);
  assert.ok(r.command.includes('node'));
  assert.equal(r.machine.cores > 0, true);
  assert.equal(r.versions.node, process.version);
  assert.equal(r.load.before.loadavg.length, 3);
});

test('verdicts refused when the machine counts as loaded', () => {
  const r = record(-1); // any load average exceeds a negative threshold
  assert.match(r.load.loaded, /load .* before > -/);
  assert.deepEqual(
    r.ratios.map((x) => x.verdict),
    ['LOADED: ratio not quotable', 'LOADED: ratio not quotable', 'LOADED: not quotable'],
  );
});
