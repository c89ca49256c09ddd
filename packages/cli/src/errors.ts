import { LineageError } from '@lineage/core';
import { RecoveryInterrupted } from '@lineage/distill';

/**
 * Exit codes: 1 bad input or impossible request (a LineageError), 2 internal error (a bug: please report),
 * 130 a recovery stopped by Ctrl-C (its checkpoint is written; the message says how to resume).
 */
export function reportError(e: unknown, debug: boolean): number {
  if (debug && e instanceof Error) process.stderr.write(`${e.stack ?? e.message}\n`);
  if (e instanceof LineageError) {
    if (!debug) process.stderr.write(`lineage: ${oneLine(e.message)}\n`);
    return e instanceof RecoveryInterrupted && e.stopped === 'interrupted' ? 130 : 1;
  }
  const msg = e instanceof Error ? e.message : String(e);
  if (!debug)
    process.stderr.write(`lineage: internal error: ${oneLine(msg)} (run with --debug for the stack trace)\n`);
  return 2;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}
