import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TUNED_MALLOC_ENV, wantsTunedMalloc } from './malloc-tuning.js';
import { BIN, tempDir } from './test-support.js';

const glibc =
  process.platform === 'linux' &&
  typeof (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header
    ?.glibcVersionRuntime === 'string';

// A stand-in for bin.js: relaunches itself through the built module, then reports what the process that
// runs the command sees; `exit3` exits 3, `wait` counts SIGINTs (a second one quits with 130, as train).
const dir = tempDir('lineage-malloc-');
const script = join(dir, 'command.mjs');
writeFileSync(
  script,
  `import { relaunchWithTunedMalloc } from ${JSON.stringify(pathToFileURL(join(dirname(BIN), 'malloc-tuning.js')).href)};
if (!(await relaunchWithTunedMalloc())) {
  if (process.argv[2] === 'exit3') process.exitCode = 3;
  if (process.argv[2] === 'wait') {
    // the handler first: the test signals as soon as it reads the line below
    let n = 0;
    process.on('SIGINT', () => {
      console.log('SIGINT ' + ++n);
      if (n === 2) process.exit(130);
    });
    setInterval(() => {}, 1000);
  }
  console.log(JSON.stringify({ mmapMax: process.env.MALLOC_MMAP_MAX_ ?? null, marker: process.env.LINEAGE_MALLOC ?? null, args: process.argv.slice(2) }));
}
`,
);
const env = (extra: Record<string, string> = {}) => {
  const e: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of [...Object.keys(TUNED_MALLOC_ENV), 'LINEAGE_MALLOC']) if (!(k in extra)) delete e[k];
  return e;
};
const report = (out: string) => JSON.parse(out.trim().split('\n')[0]!);

/** The fixture in `wait` mode, its output so far, and a promise for when that output first matches `re`. */
function waiting(): { child: ChildProcess; output: () => string; saw: (re: RegExp) => Promise<void> } {
  const child = spawn(process.execPath, [script, 'wait'], { env: env() });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  const saw = (re: RegExp) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (re.test(out)) resolve();
        else setTimeout(check, 20);
      };
      check();
    });
  return { child, output: () => out, saw };
}

describe('glibc malloc tuned by relaunching (malloc-tuning.ts)', () => {
  it('is wanted on Linux with glibc only, and not when the user chose', () => {
    expect(wantsTunedMalloc(env(), [])).toBe(glibc);
    expect(wantsTunedMalloc(env({ LINEAGE_MALLOC: 'system' }))).toBe(false);
    expect(wantsTunedMalloc(env({ MALLOC_MMAP_MAX_: '65536' }))).toBe(false);
    expect(wantsTunedMalloc({ ...env(), GLIBC_TUNABLES: 'glibc.malloc.mmap_max=0' })).toBe(false);
    expect(wantsTunedMalloc(env(), ['--inspect-brk'])).toBe(false);
  });

  it.runIf(glibc)('runs the command once, in a child with the tuned allocator and the same arguments', () => {
    const r = report(
      execFileSync(process.execPath, [script, 'a', '--b=c'], { env: env(), encoding: 'utf8' }),
    );
    expect(r).toEqual({ mmapMax: '0', marker: 'tuned', args: ['a', '--b=c'] });
    const own = report(
      execFileSync(process.execPath, [script, 'x'], {
        env: env({ LINEAGE_MALLOC: 'system' }),
        encoding: 'utf8',
      }),
    );
    expect(own).toEqual({ mmapMax: null, marker: 'system', args: ['x'] });
  });

  it.runIf(glibc)("passes on the child's exit code", () => {
    let status: number | null = null;
    try {
      execFileSync(process.execPath, [script, 'exit3'], { env: env(), stdio: 'pipe' });
    } catch (e) {
      status = (e as { status: number }).status;
    }
    expect(status).toBe(3);
  });

  it.runIf(glibc)(
    'delivers each SIGINT sent to it exactly once, and exits as the child did',
    async () => {
      const { child, output, saw } = waiting();
      const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await saw(/"args"/);
      child.kill('SIGINT');
      await saw(/SIGINT 1/);
      await new Promise((r) => setTimeout(r, 300)); // a second delivery of the same Ctrl-C would show by now
      expect(output()).not.toMatch(/SIGINT 2/);
      child.kill('SIGINT');
      expect(await exit).toBe(130);
      expect(output().match(/SIGINT \d/g)).toEqual(['SIGINT 1', 'SIGINT 2']);
    },
    20_000,
  );

  it.runIf(glibc)(
    'the relaunched process ends when the one that started it is killed outright',
    async () => {
      const { child, saw } = waiting();
      await saw(/"args"/);
      const grandchild = Number(
        execFileSync('pgrep', ['-f', '-n', `${script} wait`], { encoding: 'utf8' }).trim(),
      );
      expect(grandchild).not.toBe(child.pid);
      child.kill('SIGKILL');
      const alive = () => {
        try {
          process.kill(grandchild, 0);
          return true;
        } catch {
          return false;
        }
      };
      const t0 = Date.now();
      while (alive() && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 50));
      expect(alive()).toBe(false);
    },
    20_000,
  );
});
