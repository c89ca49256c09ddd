import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectJson, lineage, MODEL, tempDir } from './test-support.js';

// `lineage export --to web`: the page, served locally and opened in headless Chromium (Debian's `chromium`;
// skipped with the reason where it is missing), generates lineage's greedy tokens; a screenshot is taken.

function findChromium(): string | undefined {
  for (const bin of ['chromium', 'chromium-browser', 'google-chrome'])
    if (spawnSync(bin, ['--version'], { encoding: 'utf8' }).status === 0) return bin;
  return undefined;
}
const chromium = findChromium();
const tmp = tempDir('lineage-export-web-');

const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
};

/** A static file server on 127.0.0.1 for `dir`. */
function serve(dir: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    const file = join(dir, path.endsWith('/') ? `${path}index.html` : path);
    if (!file.startsWith(dir) || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/**
 * Headless Chromium on `url` with virtual time (the page's async work runs to completion). Asynchronous:
 * the page's server runs in this process.
 */
function chrome(url: string, ...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      chromium!,
      ['--headless=new', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=60000', ...args, url],
      { encoding: 'utf8', timeout: 90_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => resolve({ status: err ? 1 : 0, stdout, stderr }),
    );
  });
}

describe.skipIf(!chromium)(
  `lineage export --to web${chromium ? '' : ' — skipped: no chromium (apt-get install chromium)'}`,
  () => {
    let server: Server | undefined;
    afterAll(() => server?.close());

    it('the page generates lineage’s 64 greedy tokens in the browser, offline; screenshot', async () => {
      const out = join(tmp, 'web');
      const r = expectJson(await lineage(['export', MODEL, '--to', 'web', '--out', out, '--json']));
      expect(r.files).toContain('vendor/transformers.min.js');
      expect(r.files).toContain('model/onnx/model.onnx');
      server = await serve(out);
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/index.html?prompt=Once%20upon%20a%20time&max=64`;
      const dom = await chrome(url, '--dump-dom');
      expect(dom.stdout, dom.stderr).toMatch(/<body data-done="1">/);
      const ids = JSON.parse(/<pre id="ids">([^<]*)<\/pre>/.exec(dom.stdout)![1]!);
      const g = expectJson(
        await lineage([
          'generate',
          MODEL,
          '--prompt',
          'Once upon a time',
          '--max-tokens',
          '64',
          '--json',
          '--backend',
          'js',
        ]),
      );
      expect(ids).toEqual(g.ids);
      expect(dom.stdout).toMatch(/64 tokens in [\d.]+ s/);
      const png = join(tmp, 'page.png');
      const shot = await chrome(url, `--screenshot=${png}`, '--window-size=900,700');
      expect(shot.status, shot.stderr).toBe(0);
      const bytes = readFileSync(png);
      expect(bytes.subarray(1, 4).toString()).toBe('PNG');
      expect(bytes.length).toBeGreaterThan(10_000);
    });
  },
);
