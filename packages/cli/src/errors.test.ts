import { LineageError } from '@lineage/core';
import { RecoveryInterrupted } from '@lineage/distill';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { noteOutput, reportError } from './errors.js';

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

describe('errors of the environment', () => {
  afterEach(() => vi.restoreAllMocks());

  function sysError(code: string, props: Record<string, string>): NodeJS.ErrnoException {
    return Object.assign(new Error(`${code}: something, ${props.syscall ?? ''}`), { code, ...props });
  }

  it('are one line naming the path and the reason in words, exit 1 (temp siblings named as their output)', () => {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => lines.push(String(s)) > 0);
    expect(
      reportError(sysError('EROFS', { syscall: 'mkdir', path: '/ro/.out.tmp-123-0a1b2c3d' }), false),
    ).toBe(1);
    expect(lines.pop()).toBe('lineage: /ro/out: read-only file system (mkdir)\n');
    // a write through a file handle carries no path: the output being written is named
    noteOutput('stats.st');
    expect(reportError(sysError('ENOSPC', { syscall: 'write' }), false)).toBe(1);
    expect(lines.pop()).toBe('lineage: stats.st: no space left on the device (write)\n');
    noteOutput(undefined);
    for (const code of ['ENOTDIR', 'ENAMETOOLONG', 'EACCES', 'EEXIST', 'EISDIR']) {
      expect(reportError(sysError(code, { syscall: 'open', path: '/x/y' }), false)).toBe(1);
      expect(lines.pop()).toMatch(/^lineage: \/x\/y: [a-z ]+ \(open\)\n$/);
    }
    // core's 'cannot create: ENOSPC' gets the words too
    const wrapped = new LineageError('cannot create: ENOSPC', 'm.bin', { cause: sysError('ENOSPC', {}) });
    expect(reportError(wrapped, false)).toBe(1);
    expect(lines.pop()).toBe('lineage: m.bin: cannot create: ENOSPC (no space left on the device)\n');
    // anything else is still an internal error
    expect(reportError(new TypeError('x is undefined'), false)).toBe(2);
  });
});

describe("a method's error about a layer of the model it was given", () => {
  it('gets the model path in front when marked inModel and naming no file; others are left as they are', async () => {
    const { withModelNamed } = await import('./commands/compress.js');
    const inModel = new LineageError("rtn: layer 'l' is a 'low_rank' layer", undefined, { inModel: true });
    const named = withModelNamed(inModel, 'tiny.bin') as LineageError;
    expect(named.message).toBe("tiny.bin: rtn: layer 'l' is a 'low_rank' layer");
    expect(named.file).toBe('tiny.bin');
    const plain = new LineageError("layer 'l' mentioned, but not about the model");
    expect(withModelNamed(plain, 'tiny.bin')).toBe(plain);
    const hasFile = new LineageError('x', 'other.bin', { inModel: true });
    expect(withModelNamed(hasFile, 'tiny.bin')).toBe(hasFile);
  });
});
