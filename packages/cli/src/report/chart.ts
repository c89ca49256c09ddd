/*
 * The report's chart, written as SVG text here. Why not a library (npm checked): Chart.js, ECharts and Plotly
 * draw into a browser's canvas/DOM, so the page would need their script; Vega(-Lite) renders static SVG in
 * Node but brings ~27 vega-* packages (parser, dataflow, geo, wordcloud, …) into the CLI for one scatter
 * plot; d3-scale alone would give only the tick values. A log-log scatter with a frontier line is the ~100
 * lines below, and the page stays one static file with no script.
 */
import type { ReportPoint, ReportSeries } from './data.js';

export type XAxis = 'params' | 'bytes' | 'bits';

export const X_LABEL: Record<XAxis, string> = {
  params: 'parameters (as stored)',
  bytes: 'bytes (as stored)',
  bits: 'bits per parameter',
};

/** A point's coordinate on the chosen size axis. */
export function xOf(p: ReportPoint, axis: XAxis): number {
  return axis === 'params' ? p.params : axis === 'bytes' ? p.bytes : p.bitsPerParam;
}

/** Escapes text for HTML/SVG element content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The Pareto frontier of (size, perplexity), both smaller-is-better: the points no other point beats on
 * both, ordered by size. Points without a perplexity are not on the chart and so not on the frontier.
 */
export function paretoFrontier<T extends { x: number; y: number }>(points: readonly T[]): T[] {
  const sorted = [...points].sort((a, b) => a.x - b.x || a.y - b.y);
  const out: T[] = [];
  for (const p of sorted) if (!out.length || p.y < out[out.length - 1]!.y) out.push(p);
  return out;
}

/** A log10 axis over [lo, hi] (padded), with ticks at 1, 2, 5 × 10^k inside it. */
export function logAxis(lo: number, hi: number): { min: number; max: number; ticks: number[] } {
  const pad = 0.08 * Math.max(Math.log10(hi / lo), 0.1);
  const min = 10 ** (Math.log10(lo) - pad);
  const max = 10 ** (Math.log10(hi) + pad);
  const ticks: number[] = [];
  for (let k = Math.floor(Math.log10(min)); k <= Math.ceil(Math.log10(max)); k++)
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** k;
      if (t >= min && t <= max) ticks.push(t);
    }
  // a narrow range holds fewer than two of those: use evenly spaced ticks in log space
  if (ticks.length < 2) return { min, max, ticks: [0.2, 0.5, 0.8].map((f) => min * (max / min) ** f) };
  return { min, max, ticks };
}

function tickText(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

/** Colours of the series (Okabe–Ito, distinguishable with colour-blindness), cycled. */
export const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#F0E442'];

interface Plotted {
  x: number;
  y: number;
  series: number;
  point: ReportPoint;
  parent: boolean;
}

/**
 * The chart: every member with a recorded perplexity as a circle in its series' colour, each parent (once
 * per distinct parent measurement) as a black diamond outlined in its family's colour, and the Pareto frontier over all of them as a dashed line. Each
 * mark has class `point` (and `parent` for parents) and a <title> naming it.
 */
export function chartSvg(series: readonly ReportSeries[], axis: XAxis): string {
  const plotted: Plotted[] = [];
  const parents = new Set<string>();
  series.forEach((s, i) => {
    const p = s.parent;
    const key = p && `${p.path}|${p.params}|${p.bytes}|${p.perplexity}`;
    if (p && p.perplexity !== null && !parents.has(key!)) {
      parents.add(key!);
      plotted.push({ x: xOf(p, axis), y: p.perplexity, series: i, point: p, parent: true });
    }
    for (const m of s.members)
      if (m.perplexity !== null)
        plotted.push({ x: xOf(m, axis), y: m.perplexity, series: i, point: m, parent: false });
  });
  const usable = plotted.filter((p) => p.x > 0 && p.y > 0);
  const W = 720;
  const H = 440;
  const L = 70;
  const R = 20;
  const T = 20;
  const B = 60;
  const head = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="size against held-out perplexity">`;
  if (!usable.length)
    return `${head}<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no model has a recorded perplexity: nothing to plot</text></svg>`;
  const xa = logAxis(Math.min(...usable.map((p) => p.x)), Math.max(...usable.map((p) => p.x)));
  const ya = logAxis(Math.min(...usable.map((p) => p.y)), Math.max(...usable.map((p) => p.y)));
  const sx = (v: number) => L + ((W - L - R) * Math.log(v / xa.min)) / Math.log(xa.max / xa.min);
  const sy = (v: number) => H - B - ((H - T - B) * Math.log(v / ya.min)) / Math.log(ya.max / ya.min);
  const f = (v: number) => v.toFixed(1);
  const parts: string[] = [
    head,
    `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#999"/>`,
  ];
  for (const t of xa.ticks)
    parts.push(
      `<line x1="${f(sx(t))}" x2="${f(sx(t))}" y1="${T}" y2="${H - B}" stroke="#eee"/><text x="${f(sx(t))}" y="${H - B + 16}" text-anchor="middle" font-size="11">${tickText(t)}</text>`,
    );
  for (const t of ya.ticks)
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${f(sy(t))}" y2="${f(sy(t))}" stroke="#eee"/><text x="${L - 6}" y="${f(sy(t) + 4)}" text-anchor="end" font-size="11">${tickText(t)}</text>`,
    );
  parts.push(
    `<text x="${(L + W - R) / 2}" y="${H - 18}" text-anchor="middle" font-size="12">${escapeXml(X_LABEL[axis])} (log scale)</text>`,
    `<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle" font-size="12">held-out perplexity (log scale)</text>`,
  );
  const front = paretoFrontier(usable);
  if (front.length > 1)
    parts.push(
      `<polyline class="frontier" fill="none" stroke="#444" stroke-dasharray="5 4" points="${front.map((p) => `${f(sx(p.x))},${f(sy(p.y))}`).join(' ')}"/>`,
    );
  for (const p of usable) {
    const title = `<title>${escapeXml(`${series[p.series]!.name}: ${p.point.label} — ${tickText(p.x)} ${axis}, perplexity ${p.y.toFixed(3)}`)}</title>`;
    const cx = sx(p.x);
    const cy = sy(p.y);
    parts.push(
      p.parent
        ? `<path class="point parent" d="M${f(cx)} ${f(cy - 7)}L${f(cx + 7)} ${f(cy)}L${f(cx)} ${f(cy + 7)}L${f(cx - 7)} ${f(cy)}Z" fill="#000" stroke="${COLOURS[p.series % COLOURS.length]}" stroke-width="2" data-series="${p.series}">${title}</path>`
        : `<circle class="point" data-series="${p.series}" cx="${f(cx)}" cy="${f(cy)}" r="5" fill="${COLOURS[p.series % COLOURS.length]}" stroke="#fff">${title}</circle>`,
      `<text x="${f(cx + 9)}" y="${f(cy - 6)}" font-size="10" fill="#555">${escapeXml(p.point.label)}</text>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n');
}
