import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chromiumMissing, withPage } from './test-browser.js';
import { expectJson, lineage, MODEL, tempDir } from './test-support.js';

// `lineage export --to web`: the page, served locally and opened in headless Chromium (Debian's `chromium`;
// skipped with the reason where it is missing), generates lineage's greedy tokens; a screenshot is taken.

const missing = chromiumMissing();
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

describe.skipIf(missing)(`lineage export --to web${missing ? ` — skipped: ${missing}` : ''}`, () => {
  let server: Server | undefined;
  afterAll(() => server?.close());

  it('the page generates lineage’s 64 greedy tokens in the browser, offline; screenshot', async () => {
    const out = join(tmp, 'web');
    const r = expectJson(await lineage(['export', MODEL, '--to', 'web', '--out', out, '--json']));
    expect(r.files).toContain('vendor/transformers.min.js');
    expect(r.files).toContain('model/onnx/model.onnx');
    server = await serve(out);
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/index.html?prompt=Once%20upon%20a%20time&max=64`;
    const png = join(tmp, 'page.png');
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // the page sets data-done on <body> when generation has finished
    const page = await withPage(
      url,
      async (p) => {
        await p.waitForSelector('body[data-done="1"]', { timeout: 120_000 });
        return {
          ids: await p.$eval('#ids', (e) => e.textContent ?? ''),
          text: await p.$eval('body', (e) => e.textContent ?? ''),
        };
      },
      { screenshot: png, allowOrigin: origin, width: 900, height: 700, timeoutMs: 60_000 },
    );
    expect(page.errors).toEqual([]);
    expect(page.network).toEqual([]);
    const ids = JSON.parse(page.value.ids);
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
    expect(page.value.text).toMatch(/64 tokens in [\d.]+ s/);
    const bytes = readFileSync(png);
    expect(bytes.subarray(1, 4).toString()).toBe('PNG');
    expect(bytes.length).toBeGreaterThan(10_000);
  });
});
