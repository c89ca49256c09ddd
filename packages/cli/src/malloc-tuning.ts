import { spawn } from 'node:child_process';

/**
 * glibc's malloc hands every large freed block back to the kernel (blocks over its adaptive mmap threshold,
 * at most 32 MB, always; the heap's top when more than twice that threshold is free), so each fresh large
 * array is paid again in page faults. onnxruntime-node copies every output into a new array (a
 * preallocated output is written and then copied too), so a training step makes hundreds of MB of fresh
 * arrays: the [32000 × 512] head gradient alone is 16k faults, ~0.1–0.2 s on the development VM, where a
 * page fault costs ~10 µs. With mmap off and no trimming, freed blocks are reused instead (the resident
 * size then stays at its peak). glibc reads these only at process start and Node has no mallopt, so the
 * CLI starts itself once more with them set: on Linux with glibc, unless LINEAGE_MALLOC is set (`system`
 * keeps the allocator as it is) or the user set them already.
 */
export const TUNED_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_MAX_: '0',
  MALLOC_TRIM_THRESHOLD_: String(2 ** 40),
};

/** Signals a terminal or a supervisor sends to the process it started: passed on to the relaunched one. */
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function usesGlibc(): boolean {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)
    ?.header;
  return typeof header?.glibcVersionRuntime === 'string';
}

/** Whether this process should start itself again with TUNED_MALLOC_ENV. */
export function wantsTunedMalloc(
  env: NodeJS.ProcessEnv = process.env,
  execArgv: readonly string[] = process.execArgv,
): boolean {
  if (process.platform !== 'linux' || env.LINEAGE_MALLOC !== undefined) return false;
  // a debugger attached to this process would not see the command run elsewhere
  if (execArgv.some((a) => a.startsWith('--inspect'))) return false;
  if (Object.keys(TUNED_MALLOC_ENV).some((k) => env[k] !== undefined)) return false;
  if (env.GLIBC_TUNABLES?.includes('glibc.malloc.')) return false;
  return usesGlibc();
}

/**
 * Runs this same command (node flags, script, arguments) in a child process with TUNED_MALLOC_ENV and
 * resolves true once it exited, with its exit code as this process's (a child killed by a signal kills
 * this one with the same signal); resolves false without doing anything when not wanted or when the
 * child cannot start (the caller runs the command itself). The child runs in its own process group so
 * that Ctrl-C reaches it once, passed on from here (a second Ctrl-C means "quit now" to `train`).
 */
export function relaunchWithTunedMalloc(): Promise<boolean> {
  if (process.env.LINEAGE_MALLOC_PARENT) dieWithParent(Number(process.env.LINEAGE_MALLOC_PARENT));
  if (!wantsTunedMalloc()) return Promise.resolve(false);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: {
        ...process.env,
        ...TUNED_MALLOC_ENV,
        LINEAGE_MALLOC: 'tuned',
        LINEAGE_MALLOC_PARENT: String(process.pid),
      },
      detached: true,
    });
    const pass = (signal: NodeJS.Signals) => child.kill(signal);
    const stopPassing = () => {
      for (const s of FORWARDED) process.off(s, pass);
    };
    for (const s of FORWARDED) process.on(s, pass);
    child.on('error', () => {
      stopPassing();
      resolve(false);
    });
    child.on('exit', (code, signal) => {
      stopPassing();
      if (signal) process.kill(process.pid, signal);
      else {
        process.exitCode = code ?? 1;
        resolve(true);
      }
    });
  });
}

/**
 * In the relaunched process: SIGKILL of the process that started it (a supervisor's timeout) cannot be
 * passed on, and the child, in its own process group, would run on alone; so it checks once a second
 * that its parent is still there and ends the same way otherwise.
 */
function dieWithParent(parent: number): void {
  delete process.env.LINEAGE_MALLOC_PARENT; // not inherited by processes this one starts
  const check = () => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGKILL');
  };
  check();
  setInterval(check, 1000).unref();
}
