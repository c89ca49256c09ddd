// Runs every bench's smoke mode (packages/*/bench/*.mjs with --smoke: tiny sizes, seconds, figures checked),
// one at a time, each under a time limit, and prints one line per bench. `pnpm bench:smoke` runs it alone;
// scripts/test.mjs runs it after the test suites and counts each bench as one test, so CI catches a bench
// that no longer starts. Needs built packages (`pnpm build`).
//
// Env: LINEAGE_BENCH_SMOKE_TIMEOUT: seconds per bench (default 300). Arguments: substrings of bench paths
// to run only those (`pnpm bench:smoke distill`).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Every bench script: the .mjs files in packages/<pkg>/bench that no sibling imports (those are shared
 * setup modules, e.g. svd's stories-setup.mjs).
 */
export function listBenches() {
  const benches = [];
  for (const pkg of readdirSync(join(root, 'packages')).sort()) {
    const dir = join(root, 'packages', pkg, 'bench');
    let files;
    try {
      files = readdirSync(dir).filter((f) => f.endsWith('.mjs'));
    } catch {
      continue;
    }
    const texts = files.map((f) => readFileSync(join(dir, f), 'utf8'));
    const imported = (f) => texts.some((t) => t.includes(`'./${f}'`));
    for (const f of files.sort()) if (!imported(f)) benches.push(join(dir, f));
  }
  return benches;
}

function runOne(file, limitSeconds) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [file, '--smoke'], {
      cwd: dirname(dirname(file)),
      env: { ...process.env, LINEAGE_BENCH_SMOKE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so a timeout also stops what it spawned
    });
    let out = '';
    const keep = (d) => {
      out = (out + d).slice(-20_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, limitSeconds * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, seconds: (performance.now() - t0) / 1000, out });
    });
  });
}

/** Runs the smoke benches; returns { passed, failed, results }. `log` receives one line per bench. */
export async function runBenchSmoke({ only = [], log = console.log } = {}) {
  const limit = Number(process.env.LINEAGE_BENCH_SMOKE_TIMEOUT ?? 300);
  // the kit's own checks first (node:test; its exit code says whether they passed), then every bench
  const benches = [join(root, 'scripts', 'bench-kit.test.mjs'), ...listBenches()].filter(
    (f) => only.length === 0 || only.some((s) => f.includes(s)),
  );
  const results = [];
  for (const file of benches) {
    const name = relative(root, file);
    // A bench without a smoke mode would run at full size (minutes to hours): fail it instead.
    if (!readFileSync(file, 'utf8').includes('bench-kit.mjs')) {
      results.push({ name, ok: false, why: 'no smoke mode (import smoke from scripts/bench-kit.mjs)' });
      log(`FAIL ${name}: no smoke mode (import { smoke } from scripts/bench-kit.mjs)`);
      continue;
    }
    const r = await runOne(file, limit);
    const ok = r.code === 0 && !r.timedOut;
    const why = r.timedOut
      ? `over the ${limit} s limit`
      : r.code !== 0
        ? `exit ${r.code ?? r.signal}: ${
            r.out
              .trim()
              .split('\n')
              .filter((l) => /error|fail/i.test(l))
              .pop() ??
            r.out.trim().split('\n').pop() ??
            ''
          }`
        : '';
    results.push({ name, ok, seconds: r.seconds, why });
    if (ok) log(`ok   ${name} (${r.seconds.toFixed(1)} s)`);
    else {
      log(
        `---- output of ${basename(file)} (last 40 lines)\n${r.out.trim().split('\n').slice(-40).join('\n')}`,
      );
      log(`FAIL ${name} (${r.seconds.toFixed(1)} s): ${why}`);
    }
  }
  const passed = results.filter((r) => r.ok).length;
  return { passed, failed: results.length - passed, results };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { passed, failed } = await runBenchSmoke({ only: process.argv.slice(2) });
  console.log(`bench smoke: ${passed} passed, ${failed} failed`);
  process.exit(failed > 0 ? 1 : 0);
}
