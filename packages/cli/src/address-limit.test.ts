/*
 * Under an address-space limit (ulimit -v, prlimit --as: common on shared hosts) V8 refuses every wasm
 * memory, each refusal after full garbage collections; asked again for every product, an svd of
 * stories260K crawled for minutes. The linear algebra now falls back to plain JS once and finishes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, MODEL, tempDir } from './test-support.js';

const dir = tempDir('lineage-address-limit-');
const hasPrlimit = (() => {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'pipe' });
    return process.platform === 'linux';
  } catch {
    return false;
  }
})();

describe.skipIf(!hasPrlimit)('a 6 GB address-space limit', () => {
  it('compress --method svd finishes (wasm memory refused once, then plain JS)', () => {
    const out = join(dir, 'svd');
    const t0 = performance.now();
    const r = spawnSync(
      'prlimit',
      ['--as=6000000000', 'node', BIN, 'compress', MODEL, '--method', 'svd', '--params', '0.5', '--out', out],
      { encoding: 'utf8', timeout: 50_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(join(out))).toBe(true);
    expect(performance.now() - t0).toBeLessThan(50_000);
  }, 60_000);
});
