import { statSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { log, printJson } from '../output.js';
import { checkNoOverlap, checkOutput } from '../output-policy.js';
import type { XAxis } from '../report/chart.js';
import { reportSeries } from '../report/data.js';
import { type ReportFormat, writeReport } from '../report/write.js';
import { addJsonOption } from './common.js';

export function reportCommand(program: Command): void {
  const cmd = program
    .command('report')
    .description(
      'one self-contained HTML page (or a Markdown table) of families and models: size against held-out perplexity with the Pareto frontier, a table and each model’s provenance',
    )
    .argument(
      '<inputs...>',
      'family.json files or family directories (lineage family --out), or model directories',
    )
    .requiredOption(
      '--out <file>',
      'the report file to write (report.html, or README-table.md with --format md)',
    )
    .addOption(
      new Option('--format <format>', 'html page or Markdown table').choices(['html', 'md']).default('html'),
    )
    .addOption(
      new Option('--x <axis>', 'size axis of the chart')
        .choices(['params', 'bytes', 'bits'])
        .default('params'),
    )
    .option('--force', 'replace an existing --out');
  addJsonOption(cmd);
  cmd.action(
    async (
      inputs: string[],
      o: { out: string; format: ReportFormat; x: XAxis; force?: boolean; json?: boolean },
    ) => {
      checkOutput({
        path: o.out,
        kind: 'file',
        force: o.force,
        // the files read, not their directories: report.html beside family.json is the usual place
        inputs: inputs.flatMap((path) =>
          (statSync(path, { throwIfNoEntry: false })?.isDirectory()
            ? ['family.json', 'config.json', 'model.safetensors'].map((f) => join(path, f))
            : [path]
          ).map((p) => ({ path: p, what: 'an input of the report' })),
        ),
        noun: 'the report',
      });
      const series = await reportSeries(inputs);
      // the models a family lists are read too (their sizes, provenance): never written over
      checkNoOverlap(
        o.out,
        series.flatMap((f) =>
          [f.parent, ...f.members].flatMap((m) =>
            m?.path ? [{ path: m.path, what: `the model ${m.label} of ${f.name}` }] : [],
          ),
        ),
      );
      await writeReport(o.out, series, o);
      const models = series.reduce((a, s) => a + s.members.length, 0);
      if (o.json) printJson({ out: o.out, format: o.format, families: series.length, models });
      else log(`wrote ${o.out} (${models} models in ${series.length} series)`);
    },
  );
}
