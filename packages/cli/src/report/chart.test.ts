import { describe, expect, it } from 'vitest';
import { chartSvg, escapeXml, logAxis, paretoFrontier } from './chart.js';
import type { ReportPoint, ReportSeries } from './data.js';
import { reportHtml, reportMarkdown } from './render.js';

function pt(label: string, params: number, ppl: number | null, bytes = params * 4): ReportPoint {
  return {
    label,
    method: 'svd',
    params,
    bytes,
    bitsPerParam: (8 * bytes) / params,
    perplexity: ppl,
    tokens: 0,
    wallSeconds: 1.5,
    provenance: { method: 'svd', note: '<b>&"x"</b>' },
  };
}

// a hand-made family: the parent, two members on the frontier, one dominated, one without perplexity
const parent = { ...pt('parent', 1000, 5), method: 'parent', path: 'p.bin' };
const fam: ReportSeries = {
  name: 'svd (a<b)',
  heldOut: 'held.txt',
  parent,
  members: [pt('m-0.8', 800, 6), pt('m-0.6', 600, 9), pt('m-0.7', 700, 12), pt('m-0.3', 300, null)],
  wallSeconds: 3,
};

describe('paretoFrontier', () => {
  it('keeps the points no other point beats on both size and perplexity, by size', () => {
    const pts = [
      { x: 1000, y: 5 },
      { x: 800, y: 6 },
      { x: 600, y: 9 },
      { x: 700, y: 12 }, // dominated by 600/9
      { x: 900, y: 7 }, // dominated by 800/6
      { x: 1200, y: 5 }, // dominated by 1000/5 (same perplexity, larger)
    ];
    expect(paretoFrontier(pts)).toEqual([
      { x: 600, y: 9 },
      { x: 800, y: 6 },
      { x: 1000, y: 5 },
    ]);
  });
  it('of one point is that point, of none is empty', () => {
    expect(paretoFrontier([{ x: 1, y: 1 }])).toEqual([{ x: 1, y: 1 }]);
    expect(paretoFrontier([])).toEqual([]);
  });
});

describe('logAxis', () => {
  it('spans the data with 1-2-5 ticks evenly spaced in log10', () => {
    const a = logAxis(300, 260_000);
    expect(a.min).toBeLessThan(300);
    expect(a.max).toBeGreaterThan(260_000);
    expect(a.ticks).toContain(1000);
    expect(a.ticks).toContain(100_000);
    expect(a.ticks).toEqual([...a.ticks].sort((x, y) => x - y));
    for (const t of a.ticks)
      expect(Math.log10(t) % 1).toBeCloseTo(Math.log10(t / 10 ** Math.floor(Math.log10(t))), 9);
  });
  it('still has ticks on a narrow range', () => {
    const a = logAxis(5.1, 5.3);
    expect(a.ticks.length).toBeGreaterThanOrEqual(2);
    for (const t of a.ticks) expect(t > a.min && t < a.max).toBe(true);
  });
});

/** Centres of the members' circles, in the order drawn. */
function circles(svg: string): { x: number; y: number }[] {
  return [...svg.matchAll(/<circle class="point"[^>]*cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => ({
    x: Number(m[1]),
    y: Number(m[2]),
  }));
}

describe('chartSvg', () => {
  const svg = chartSvg([fam], 'params');
  it('draws one point per member with a perplexity plus the parent', () => {
    expect(svg.match(/class="point"/g)).toHaveLength(3);
    expect(svg.match(/class="point parent"/g)).toHaveLength(1);
  });
  it('places points on log scales: equal ratios are equal distances', () => {
    // a family whose sizes and perplexities are in geometric progression lies on a straight line, evenly spaced
    const geo: ReportSeries = {
      ...fam,
      parent: null,
      members: [pt('a', 100, 40), pt('b', 1000, 20), pt('c', 10_000, 10)],
    };
    const [a, b, c] = circles(chartSvg([geo], 'params'));
    expect(b!.x - a!.x).toBeCloseTo(c!.x - b!.x, 0);
    expect(b!.y - a!.y).toBeCloseTo(c!.y - b!.y, 0);
    expect(svg).toContain('(log scale)');
  });
  it('draws the frontier through the non-dominated points only', () => {
    const line = /<polyline class="frontier"[^>]*points="([^"]+)"/.exec(svg)![1]!.split(' ');
    expect(line).toHaveLength(3); // 600/9, 800/6 and the parent 1000/5; 700/12 is dominated
  });
  it('dedupes a parent shared by several families and colours each series', () => {
    const two = chartSvg([fam, { ...fam, name: 'other' }], 'bytes');
    expect(two.match(/class="point parent"/g)).toHaveLength(1);
    expect(two).toContain('data-series="1"');
  });
  it('escapes text', () => {
    expect(escapeXml('<a href="x">&\'')).toBe('&#60;a href=&#34;x&#34;&#62;&#38;&#39;');
    expect(svg).not.toContain('(a<b)');
  });
});

describe('reportHtml / reportMarkdown', () => {
  it('is one page with no script or external reference, a table row per model and provenance', () => {
    const html = reportHtml([fam], 'params');
    expect(html).not.toMatch(/<script|<link|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(html.match(/<tr><td>/g)).toHaveLength(5);
    expect(html.match(/<details>/g)).toHaveLength(5);
    expect(html).toContain('&#60;b&#62;'); // provenance escaped
    expect(html).toContain('1 of 4 models have no recorded perplexity');
  });
  it('says when the parent perplexity is not recorded, and does not plot it', () => {
    const noPpl = { ...fam, parent: { ...parent, perplexity: null } };
    const html = reportHtml([noPpl], 'bits');
    expect(html).toContain('the parent&#39;s perplexity is not recorded');
    expect(html.match(/class="point parent"/g)).toBeNull();
  });
  it('Markdown: a header, a separator and one row per model, with — for missing numbers', () => {
    const md = reportMarkdown([fam]).trim().split('\n');
    expect(md[0]).toBe(
      '| family | model | method | params | bytes | bits/param | held-out ppl | tokens | wall time |',
    );
    expect(md.filter((l) => l.startsWith('| svd (a<b) |'))).toHaveLength(5);
    expect(md.find((l) => l.includes('m-0.3'))).toContain('| — |');
  });
});
