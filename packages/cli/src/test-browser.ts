/*
 * Headless Chromium for tests (not part of the package's API): opens a page with puppeteer-core driving the
 * system's Chromium (Debian's `chromium`, installed by scripts/setup-chromium.sh), and collects what went
 * wrong on it — console errors, uncaught exceptions, failed requests — and every request that left the
 * machine, since the pages Lineage writes must work offline. Reusable by any page test (the report, the web
 * export): `const why = chromiumMissing(); it.skipIf(why)(…)`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Browser, Page } from 'puppeteer-core';

const NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];

/** The Chromium binary: $LINEAGE_CHROMIUM, else the first of the usual names on PATH. */
export function findChromium(): string | undefined {
  const env = process.env.LINEAGE_CHROMIUM;
  if (env) return existsSync(env) ? env : undefined;
  for (const n of NAMES) {
    try {
      const p = execFileSync('sh', ['-c', `command -v ${n}`], { encoding: 'utf8' }).trim();
      if (p) return p;
    } catch {}
  }
  return undefined;
}

/** Why browser tests cannot run here (a reason for `it.skipIf`), or undefined when they can. */
export function chromiumMissing(): string | undefined {
  if (findChromium()) return undefined;
  return 'no Chromium found (run scripts/setup-chromium.sh as root, or set LINEAGE_CHROMIUM)';
}

export interface PageProblems {
  /** Console errors, uncaught exceptions and failed requests, in order. */
  errors: string[];
  /** Requests to anything but file:, data: and blob: URLs (or `allowOrigin`), which an offline page must not make. */
  network: string[];
}

/**
 * Opens `url` in headless Chromium, waits for the load (and `ready`, when given) and calls `fn` with the
 * page; returns what went wrong on it. `screenshot` writes a PNG of the full page.
 */
export async function withPage<T>(
  url: string,
  fn: (page: Page) => Promise<T>,
  o: { screenshot?: string; width?: number; height?: number; allowOrigin?: string; timeoutMs?: number } = {},
): Promise<PageProblems & { value: T }> {
  const executablePath = findChromium();
  if (!executablePath) throw new Error(chromiumMissing());
  const { default: puppeteer } = await import('puppeteer-core');
  const browser: Browser = await puppeteer.launch({
    executablePath,
    headless: true,
    // containers run as root without user namespaces; no GPU in CI
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  const errors: string[] = [];
  const network: string[] = [];
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: o.width ?? 1000, height: o.height ?? 800 });
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`exception: ${(e as Error).message ?? String(e)}`));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
    page.on('request', (r) => {
      const u = r.url();
      if (!/^(file|data|blob|about):/.test(u) && !(o.allowOrigin && u.startsWith(o.allowOrigin)))
        network.push(u);
    });
    await page.goto(url, { waitUntil: 'load', timeout: o.timeoutMs ?? 30_000 });
    const value = await fn(page);
    if (o.screenshot) await page.screenshot({ path: o.screenshot as `${string}.png`, fullPage: true });
    return { errors, network, value };
  } finally {
    await browser.close();
  }
}
