import { CommanderError } from 'commander';
import { log } from '../output.js';

/** Ctrl-C during a long command: the first stops it at the next training step (with a checkpoint). */
export interface Interrupt {
  signal: AbortSignal;
  /** The error that ends the command after an interruption: exit 130, as a shell's Ctrl-C, after `message`. */
  stop(message: string): CommanderError;
  /** Removes the SIGINT handler. */
  dispose(): void;
}

/** Installs the SIGINT handler `train` uses: stop after this step and checkpoint; a second Ctrl-C quits now. */
export function onInterrupt(): Interrupt {
  const abort = new AbortController();
  let interrupts = 0;
  const handler = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    log('interrupt: stopping after this step and writing a checkpoint (press Ctrl-C again to quit now)');
    abort.abort();
  };
  process.on('SIGINT', handler);
  return {
    signal: abort.signal,
    stop(message) {
      log(message);
      // a CommanderError carries the exit code through run() without printing anything more
      return new CommanderError(130, 'lineage.interrupted', '');
    },
    dispose: () => process.off('SIGINT', handler),
  };
}
