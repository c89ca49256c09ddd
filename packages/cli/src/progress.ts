import type { Progress } from '@lineage/core';
import cliProgress from 'cli-progress';
import { flushSoon } from './output.js';

/** A progress bar on stderr when it is a terminal; silent otherwise (logs and pipes stay clean). */
export function createProgress(enabled = process.stderr.isTTY === true): Progress {
  if (!enabled) return { start() {}, tick() {}, end() {} };
  let bar: cliProgress.SingleBar | undefined;
  let value = 0;
  return {
    start(label, total) {
      flushSoon();
      bar?.stop();
      value = 0;
      bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: `${label} [{bar}] {value}/{total} {eta_formatted} {info}`,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0, { info: '' });
    },
    tick(n = 1, info) {
      value += n;
      const text = info
        ? Object.entries(info)
            .map(([k, v]) => `${k} ${v}`)
            .join(' ')
        : '';
      bar?.update(value, { info: text });
    },
    end() {
      bar?.stop();
      bar = undefined;
    },
  };
}
