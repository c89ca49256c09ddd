import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { chromiumMissing, withPage } from './test-browser.js';
import { expectJson, expectOneLineError, lineage, MODEL, type Run, TRAIN, tempDir } from './test-support.js';

const dir = tempDir('lineage-report-');
const fam = join(dir, 'family');
let made: Run;

// a real small family: one-shot svd at two sizes, no recovery (seconds)
beforeAll(async () => {
  made = await lineage([
    'family',
    MODEL,
    '--method',
    'svd',
    '--schedule',
    '0.6,0.3',
    '--data',
    TRAIN,
    '--eval-limit',
    '20',
    '--backend',
    'js',
    '--out',
    fam,
    '--json',
  ]);
}, 120_000);

describe('lineage family writes its report', () => {
  it('report.html beside family.json, its path on stderr in one line and in --json', () => {
    const record = expectJson(made);
    expect(record.report).toBe(join(fam, 'report.html'));
    expect(existsSync(join(fam, 'report.html'))).toBe(true);
    expect(made.stderr.split('\n').filter((l) => l.startsWith('report: '))).toEqual([
      `report: ${join(fam, 'report.html')}`,
    ]);
  });
});

describe('lineage report', () => {
  it('HTML of a family: one point per member plus the parent, the table, no script or network', async () => {
    const out = join(dir, 'r.html');
    const r = await lineage(['report', fam, '--out', out, '--x', 'bytes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.trim()).toBe(`wrote ${out} (2 models in 1 series)`);
    const html = readFileSync(out, 'utf8');
    expect(html.match(/class="point"/g)).toHaveLength(2);
    expect(html.match(/class="point parent"/g)).toHaveLength(1);
    expect(html).toContain('bytes (as stored) (log scale)');
    expect(html).not.toMatch(/<script|<link|src=|url\(/);
    const record = JSON.parse(readFileSync(join(fam, 'family.json'), 'utf8'));
    for (const m of record.members) expect(html).toContain(m.perplexity.toFixed(4));
    expect(html).toContain(record.parent.perplexity.toFixed(4));
  });

  it('refuses to overwrite without --force, and replaces with it', async () => {
    const out = join(dir, 'again.html');
    writeFileSync(out, 'keep');
    expectOneLineError(
      await lineage(['report', fam, '--out', out]),
      /again\.html: output exists \(pass --force/,
    );
    expect(readFileSync(out, 'utf8')).toBe('keep');
    expect((await lineage(['report', fam, '--out', out, '--force'])).code).toBe(0);
    expect(statSync(out).size).toBeGreaterThan(1000);
  });

  it('Markdown of the family.json file and a model directory given directly (perplexity —)', async () => {
    const out = join(dir, 'card.md');
    const r = await lineage([
      'report',
      join(fam, 'family.json'),
      join(fam, 'svd-0.60'),
      '--format',
      'md',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const rows = readFileSync(out, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('| '));
    expect(rows).toHaveLength(2 + 3 + 1); // header and separator, the family's parent and 2 members, the model directory
    const direct = rows.at(-1)!;
    expect(direct).toContain(`| models | ${join(fam, 'svd-0.60')} | svd |`);
    expect(direct).toMatch(/\| — \| 0 \| [\d.]+ s \|$/);
  });

  it('a malformed family.json fails in one line naming it, nothing written', async () => {
    const bad = join(dir, 'bad');
    mkdirSync(bad);
    writeFileSync(
      join(bad, 'family.json'),
      '{"schema":"lineage.family/1","parent":{"params":1,"bytes":4},"members":[{"params":"x"}]}',
    );
    const out = join(dir, 'bad.html');
    expectOneLineError(
      await lineage(['report', bad, '--out', out]),
      /bad\/family\.json: malformed family record: members\[0\]\.params\/bytes are not non-negative numbers/,
    );
    writeFileSync(join(bad, 'family.json'), '{"schema": ');
    expectOneLineError(
      await lineage(['report', bad, '--out', out]),
      /bad\/family\.json: cannot read a family record/,
    );
    expect(existsSync(out)).toBe(false);
  });

  const why = chromiumMissing();
  it.skipIf(why)(
    `opens in headless Chromium without console errors or requests${why ? ` (skipped: ${why})` : ''}`,
    async () => {
      const shot = join(dir, 'report.png');
      const r = await withPage(
        `file://${join(fam, 'report.html')}`,
        async (page) => ({
          points: await page.$$eval('svg .point', (els) => els.length),
          parents: await page.$$eval('svg .point.parent', (els) => els.length),
          rows: await page.$$eval('table tbody tr', (els) => els.length),
        }),
        { screenshot: shot },
      );
      expect(r.errors).toEqual([]);
      expect(r.network).toEqual([]);
      expect(r.value).toEqual({ points: 3, parents: 1, rows: 3 });
      expect(statSync(shot).size).toBeGreaterThan(10_000);
    },
  );
});
