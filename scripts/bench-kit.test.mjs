// The bench kit's method, checked without measuring anything: alternation order, medians, ratios of medians,
// verdicts refused under load, and the JSON record. `node --test scripts/bench-kit.test.mjs`; bench-smoke runs
// it first, as one test.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  alternate,
  forwardFlops,
  lcgFloats,
  median,
  scoringPaths,
  summarize,
  syntheticTokens,
  timeBackendOps,
  timeCalls,
} from './bench-kit.mjs';

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

test('workload plumbing: seeded operands, synthetic tokens, FLOPs of a forward', () => {
  const a = lcgFloats(1000, 1);
  assert.deepEqual(a, lcgFloats(1000, 1));
  assert.notDeepEqual(a, lcgFloats(1000, 2));
  assert.ok(a.every((x) => x >= -0.5 && x < 0.5));
  const { ids, targets } = syntheticTokens(6, 512);
  assert.deepEqual([...ids], [13, 7932 % 512, 15851 % 512, 23770 % 512, 31689 % 512, 39608 % 512]);
  assert.deepEqual([...targets.slice(0, 5)], [...ids.slice(1)]);
  // two 4×8 linears and a tied 10×8 head: 2·(64 + 80) per token; attention 4·1·2·4 per attended position
  const model = {
    config: { vocabSize: 10, hiddenSize: 8, numLayers: 1, numHeads: 2, headDim: 4 },
    linearLayers: () => [
      ['a', { inFeatures: 8, outFeatures: 4 }],
      ['b', { inFeatures: 4, outFeatures: 8 }],
    ],
  };
  assert.equal(forwardFlops(model, [3]), 2 * 144 * 3 + 32 * 6);
  assert.equal(forwardFlops(model, [3, 3]), 2 * forwardFlops(model, [3]));
  assert.equal(forwardFlops({ ...model, lmHead: {} }, [1]), 2 * 64 + 32);
});

test('timeCalls: a warm-up, then timed calls for the time asked', async () => {
  let calls = 0;
  const t = await timeCalls(() => {
    calls++;
  }, 0.01);
  assert.ok(calls >= 2);
  assert.ok(t.wall >= 0 && t.cpu >= 0);
});

test('scoringPaths reads LINEAGE_BENCH_PATH against what the backend offers', () => {
  const saved = process.env.LINEAGE_BENCH_PATH;
  try {
    delete process.env.LINEAGE_BENCH_PATH;
    assert.deepEqual(scoringPaths({ fused: {} }), ['fused']);
    assert.deepEqual(scoringPaths({}), ['per-op']);
    process.env.LINEAGE_BENCH_PATH = 'both';
    assert.deepEqual(scoringPaths({ fused: {} }), ['fused', 'per-op']);
    assert.throws(() => scoringPaths({ name: 'js' }), /js has no fused evaluation/);
    process.env.LINEAGE_BENCH_PATH = 'fast';
    assert.throws(() => scoringPaths({ fused: {} }), /must be fused, per-op or both, got 'fast'/);
  } finally {
    if (saved === undefined) delete process.env.LINEAGE_BENCH_PATH;
    else process.env.LINEAGE_BENCH_PATH = saved;
  }
});

test('timeBackendOps hears each outermost op once, sync or async', async () => {
  const backend = {};
  for (const name of ['matmul', 'binary', 'unary', 'scale', 'reduce', 'softmax', 'logSoftmax', 'rmsNorm'])
    backend[name] = (x) => x;
  for (const name of ['rope', 'gather', 'crossEntropy', 'reshape', 'transpose', 'slice', 'concat'])
    backend[name] = (x) => x;
  backend.attention = async (x) => backend.matmul(x) + 1; // an op calling another
  backend.read = async (x) => x;
  backend.upload = (x) => x;
  const heard = [];
  timeBackendOps(backend, (name, args, y, s) => heard.push([name, args[0], y, s >= 0]));
  assert.equal(backend.matmul(2), 2);
  assert.equal(await backend.attention(3), 4);
  assert.deepEqual(heard, [
    ['matmul', 2, 2, true],
    ['attention', 3, 4, true],
  ]);
});
