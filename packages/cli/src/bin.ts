#!/usr/bin/env node
import { relaunchWithTunedMalloc } from './malloc-tuning.js';

// `lineage … | head` closes the pipe early: that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

// On Linux the command runs in a child with glibc's malloc set to reuse large blocks (malloc-tuning.ts);
// the program's modules load only where it runs.
if (!(await relaunchWithTunedMalloc())) {
  const { run } = await import('./index.js');
  process.exitCode = await run(process.argv);
}
