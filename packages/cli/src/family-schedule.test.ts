import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createProgram } from './index.js';
import { MODEL, TRAIN, tempDir } from './test-support.js';

const tmp = tempDir('lineage-family-schedule-');
const out = join(tmp, 'never');

/** The error `lineage family MODEL --method <method> --schedule <schedule>` stops with (run in process). */
async function refusal(method: string, schedule: string, ...extra: string[]): Promise<string> {
  const argv = ['node', 'lineage', 'family', MODEL, '--method', method, '--schedule', schedule, ...extra];
  argv.push('--data', TRAIN, '--out', out);
  try {
    await createProgram(argv).parseAsync(argv);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error(`family --method ${method} --schedule ${schedule} was accepted`);
}

describe('lineage family --schedule: checked by the method’s sizes schema, named as the flag', () => {
  it('names the flag, and the entry as the user counts it, for every family method', async () => {
    expect(await refusal('plrd', '0.5,0.8')).toBe('plrd: --schedule must be decreasing, got [0.5,0.8]');
    expect(await refusal('plrd', '0.8,1.5')).toBe('plrd: --schedule entry 2 must be in (0, 1), got 1.5');
    expect(await refusal('svd', '0.8,1.5')).toBe('svd: --schedule entry 2 must be in (0, 1), got 1.5');
    expect(await refusal('basis', '0.3,0.5', '--tokens', '1000')).toBe(
      'basis: --schedule must be decreasing, got [0.3,0.5]',
    );
    expect(await refusal('minitron', '1.2')).toBe('minitron: --schedule entry 1 must be in (0, 1), got 1.2');
    expect(await refusal('caldera', '3,0')).toBe('caldera: --schedule entry 2 must be positive, got 0');
    expect(existsSync(out)).toBe(false);
  });
});
