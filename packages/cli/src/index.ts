import { DEFAULT_MAX_DATA_BYTES, setAllowNonfinite, setMaxDataBytes } from '@lineage/core';
import { Command, CommanderError } from 'commander';
import pkg from '../package.json' with { type: 'json' };
import { calibrateCommand } from './commands/calibrate.js';
import { parseIntArg } from './commands/common.js';
import { compressCommand, loadPlugins } from './commands/compress.js';
import { convertCommand } from './commands/convert.js';
import { distillCommand } from './commands/distill.js';
import { evalCommand } from './commands/eval.js';
import { exportCommand } from './commands/export.js';
import { familyCommand } from './commands/family.js';
import { generateCommand } from './commands/generate.js';
import { initCommand } from './commands/init.js';
import { inspectCommand } from './commands/inspect.js';
import { reportCommand } from './commands/report.js';
import { runCommand } from './commands/run.js';
import { trainCommand } from './commands/train.js';
import { oneLine, reportError } from './errors.js';
import { dropSoon, flushSoon } from './output.js';

/** This package's version (from its package.json, inlined at build time): `lineage --version`. */
export const VERSION: string = pkg.version;

/** The `lineage` program; exported so tests and embedders can run it in process. */
export function createProgram(argv: readonly string[] = []): Command {
  const program = new Command('lineage')
    .description('Turn one pretrained language model into a family of smaller ones.')
    .version(VERSION)
    .option('--debug', 'print stack traces on errors')
    .option(
      '--allow-nonfinite',
      'accept NaN or infinite weights (by default a model holding one, or a compression step producing one, is an error)',
    )
    .option(
      '--max-data-bytes <n>',
      `refuse text data (--data, --eval-data, all files of a directory together, or '-' for stdin) larger than this (default ${DEFAULT_MAX_DATA_BYTES}, the most a string can hold)`,
      parseIntArg(),
    )
    // usage errors as every other error: one line, `lineage: …`, with where to look for usage
    .configureOutput({
      outputError: (str, write) =>
        write(`lineage: ${oneLine(str.replace(/^error: /, ''))} (run with --help for usage)\n`),
    })
    .exitOverride();
  // Process-wide settings of core, set (or reset to their defaults) before every command runs.
  program.hook('preAction', () => {
    const o = program.opts<{ allowNonfinite?: boolean; maxDataBytes?: number }>();
    setAllowNonfinite(o.allowNonfinite ?? false);
    setMaxDataBytes(o.maxDataBytes);
  });
  inspectCommand(program);
  evalCommand(program);
  generateCommand(program);
  convertCommand(program);
  exportCommand(program);
  calibrateCommand(program);
  initCommand(program);
  trainCommand(program);
  distillCommand(program);
  compressCommand(program, argv);
  familyCommand(program, argv);
  reportCommand(program);
  runCommand(program);
  for (const c of program.commands) c.exitOverride();
  return program;
}

/** Runs the CLI with `argv` (process.argv form) and returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  // --debug is accepted anywhere on the line, before or after the subcommand.
  const debug = argv.includes('--debug');
  try {
    const args = argv.filter((a, i) => i < 2 || a !== '--debug');
    await loadPlugins(args);
    await createProgram(args).parseAsync(args);
    flushSoon();
    return 0;
  } catch (e) {
    dropSoon();
    // Commander has already printed its own usage errors (and help/version output).
    if (e instanceof CommanderError) return e.exitCode;
    return reportError(e, debug);
  }
}

// glibc malloc set to reuse large blocks, as the `lineage` command runs: call at the top of a script of your own
export { relaunchWithTunedMalloc, TUNED_MALLOC_ENV, wantsTunedMalloc } from './malloc-tuning.js';
// recipe output kinds (`outputs: - kind: …` in `lineage run` recipes): a package adds one, e.g. `export`
export { type RecipeOutputKind, type RecipeResult, registerRecipeOutput } from './recipe/outputs.js';
