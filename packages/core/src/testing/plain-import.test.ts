import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Benches and scripts import @lineage/core's entries from plain node, where vitest refuses to load; a
// static vitest import in any of them crashed every bench at import. Each built entry must import cleanly.
const dist = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist');
const entries = ['index.js', 'backend.js', 'testing/index.js'];

describe('built entries import outside vitest', () => {
  for (const entry of entries) {
    it(entry, () => {
      const file = join(dist, entry);
      expect(existsSync(file), `${file} (run pnpm build)`).toBe(true);
      const env = { ...process.env };
      for (const k of Object.keys(env)) if (k.startsWith('VITEST')) delete env[k];
      const code =
        entry === 'testing/index.js'
          ? `const t = await import(${JSON.stringify(file)}); const fs = await import('node:fs');
             const ds = Array.from({ length: 12 }, () => t.tempDir('lineage-plain-'));
             if (!ds.every((d) => fs.existsSync(d))) throw new Error('no dir');
             console.log(ds.join('\\n'));`
          : `await import(${JSON.stringify(file)}); console.log('ok');`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env, encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      // tempDir outside vitest removes its directories when the process exits
      // (twelve of them: one exit listener, so no MaxListenersExceededWarning on stderr).
      if (entry === 'testing/index.js')
        for (const d of r.stdout.trim().split('\n')) expect(existsSync(d), d).toBe(false);
    });
  }
});
