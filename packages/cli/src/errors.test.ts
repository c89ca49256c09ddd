import { LineageError } from '@lineage/core';
import { RecoveryInterrupted } from '@lineage/distill';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { reportError } from './errors.js';

describe('exit codes', () => {
  afterEach(() => vi.restoreAllMocks());

  it('1 for bad input, 130 for a recovery stopped by Ctrl-C (one line naming its checkpoint)', () => {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => lines.push(String(s)) > 0);
    expect(reportError(new LineageError('bad'), false)).toBe(1);
    expect(reportError(new RecoveryInterrupted(2, 'interrupted', 40, 97, '/run/recover-2'), false)).toBe(130);
    expect(reportError(new RecoveryInterrupted(1, 'stop-after', 3, 9, undefined), false)).toBe(1);
    expect(lines[1]).toBe(
      'lineage: recovery 2 interrupted at step 40 of 97; checkpoint in /run/recover-2 (run again with resume to continue)\n',
    );
  });
});
