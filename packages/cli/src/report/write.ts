import { existsSync } from 'node:fs';
import { LineageError, writeFileAtomic } from '@lineage/core';
import type { XAxis } from './chart.js';
import type { ReportSeries } from './data.js';
import { reportHtml, reportMarkdown } from './render.js';

export type ReportFormat = 'html' | 'md';

/** Writes a report atomically (temp file, then rename); refuses to replace a file unless `force`. */
export async function writeReport(
  out: string,
  series: readonly ReportSeries[],
  o: { format?: ReportFormat; x?: XAxis; force?: boolean } = {},
): Promise<void> {
  if (!o.force && existsSync(out)) throw new LineageError('output exists (pass --force to replace it)', out);
  const text = o.format === 'md' ? reportMarkdown(series) : reportHtml(series, o.x ?? 'params');
  await writeFileAtomic(out, text);
}
