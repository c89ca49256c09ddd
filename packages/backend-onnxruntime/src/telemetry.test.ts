import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// A fresh process (the runtime reads the variable once, when it creates its environment) running one
// MatMul through the built package, with its own temp directory to look for the telemetry SDK's files.
const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.js');
const script = `
  const { createOnnxruntimeBackend } = await import(${JSON.stringify(dist)});
  const b = await createOnnxruntimeBackend({ smallOpThreshold: 0 });
  const x = b.upload(new Float32Array(64 * 64).fill(1), [64, 64]);
  await b.read(await b.matmul(x, x));
  console.log(process.env.ORT_DISABLE_TELEMETRY);
`;

function run(env: Record<string, string | undefined>): { files: string[]; value: string } {
  const tmp = mkdtempSync(join(tmpdir(), 'lineage-telemetry-'));
  try {
    const childEnv: Record<string, string | undefined> = { ...process.env, TMPDIR: tmp, ...env };
    for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: childEnv,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    return { files: readdirSync(tmp), value: r.stdout.trim() };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

describe("onnxruntime's telemetry", () => {
  it('is off by default: no mat-debug-<pid>.log or .ses left in the temp directory', () => {
    const r = run({ ORT_DISABLE_TELEMETRY: undefined });
    expect(r.value).toBe('1');
    expect(r.files.filter((f) => f.startsWith('mat-debug-') || f === '.ses')).toEqual([]);
  });

  it("keeps the user's own setting", () => {
    expect(run({ ORT_DISABLE_TELEMETRY: '0' }).value).toBe('0');
  });
});
