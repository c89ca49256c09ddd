import { availableParallelism } from 'node:os';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';

/**
 * Worker threads for the GEMM macro-kernel. A worker holds an instance of the same wasm module bound to
 * a shared wasm memory; a job is a group of packed A blocks that all threads (the caller included) take
 * one at a time from a shared counter, each block writing its own rows of C. The caller never waits on a
 * worker that has not started a job (it cancels the job instead), so a busy machine degrades to the
 * single-threaded speed rather than stalling.
 *
 * Threads: opt-in with `LINEAGE_SVD_THREADS=n` (n > 1). Off by default: their speed-up was never measured
 * on an idle machine, and on an oversubscribed one a second thread measured no faster, at times 2× slower.
 */

// Per-worker control block (Int32 slots), then α as a float64 at byte 64.
const SEQ = 0;
const STATE = 1; // seq·4 + {1 posted, 2 claimed, 3 finished}; other values: idle/cancelled
const KIND = 2; // 1 gemm group, 2 bind memory, 3 release memory
const NBLK = 3;
const NFULL = 4;
const KCS = 5;
const AP0 = 6;
const APS = 7;
const BPP = 8;
const C0 = 9;
const CS = 10;
const LDC = 11;
const MFULL = 12;
const LAST = 13;
const ALPHA = 8; // Float64 index (byte 64)

const WORKER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { module, ctrlBuf, nextBuf, port } = workerData;
const c = new Int32Array(ctrlBuf);
const f = new Float64Array(ctrlBuf);
const next = new Int32Array(nextBuf);
let ex = null;
let seen = 0;
for (;;) {
  Atomics.wait(c, ${SEQ}, seen);
  seen = Atomics.load(c, ${SEQ});
  const tag = (seen & 0x1fffffff) * 4;
  if (Atomics.compareExchange(c, ${STATE}, tag + 1, tag + 2) !== tag + 1) continue;
  const kind = c[${KIND}];
  if (kind === 2) {
    let m;
    for (;;) {
      m = receiveMessageOnPort(port);
      if (m && m.message.seq === seen) break;
      if (!m) Atomics.wait(c, 15, 0, 1);
    }
    ex = new WebAssembly.Instance(module, { env: { mem: m.message.memory } }).exports;
  } else if (kind === 3) {
    ex = null;
  } else if (kind === 1 && ex) {
    const n = c[${NBLK}], nFull = c[${NFULL}], kc = c[${KCS}], ap0 = c[${AP0}], aps = c[${APS}], bp = c[${BPP}];
    const c0 = c[${C0}], cs = c[${CS}], ldc = c[${LDC}], mFull = c[${MFULL}], last = c[${LAST}], alpha = f[${ALPHA}];
    for (;;) {
      const b = Atomics.add(next, 0, 1);
      if (b >= n) break;
      ex.macroAcc(b === n - 1 ? last : mFull, nFull, kc, ap0 + b * aps, bp, c0 + b * cs, ldc, alpha);
      Atomics.add(c, 14, 1);
    }
  }
  Atomics.store(c, ${STATE}, tag + 3);
  Atomics.notify(c, ${STATE});
}
`;

interface PoolWorker {
  ctrl: Int32Array;
  f64: Float64Array;
  port: MessagePort;
  bound: object | undefined;
}

interface Pool {
  workers: PoolWorker[];
  next: Int32Array;
  seq: number;
  module: object;
}

let pool: Pool | null | undefined;
let jobsPosted = 0;

/** Counters for tests and measurements: group jobs posted to workers, blocks the workers ran. */
export function parallelStats(): { workers: number; jobs: number; workerBlocks: number } {
  const workers = pool ? pool.workers : [];
  return {
    workers: workers.length,
    jobs: jobsPosted,
    workerBlocks: workers.reduce((s, w) => s + Atomics.load(w.ctrl, 14), 0),
  };
}

function threadCount(): number {
  const env = Number(process.env['LINEAGE_SVD_THREADS']);
  if (Number.isInteger(env) && env >= 1) return Math.min(env, 16);
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** The worker pool for `module`'s kernels, started on first use; null when single-threaded. */
function getPool(module: object): Pool | null {
  if (pool !== undefined) return pool && pool.module === module ? pool : null;
  const extra = threadCount() - 1;
  if (extra < 1 || typeof SharedArrayBuffer !== 'function') {
    pool = null;
    return null;
  }
  try {
    const next = new Int32Array(new SharedArrayBuffer(64));
    const workers: PoolWorker[] = [];
    for (let i = 0; i < extra; i++) {
      const ctrlBuf = new SharedArrayBuffer(128);
      const { port1, port2 } = new MessageChannel();
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { module, ctrlBuf, nextBuf: next.buffer, port: port2 },
        transferList: [port2],
      });
      w.unref();
      port1.unref();
      workers.push({
        ctrl: new Int32Array(ctrlBuf),
        f64: new Float64Array(ctrlBuf),
        port: port1,
        bound: undefined,
      });
    }
    pool = { workers, next, seq: 0, module };
  } catch {
    pool = null;
  }
  return pool;
}

function post(p: Pool, w: PoolWorker, kind: number): number {
  const seq = p.seq;
  w.ctrl[KIND] = kind;
  Atomics.store(w.ctrl, STATE, (seq & 0x1fffffff) * 4 + 1);
  Atomics.store(w.ctrl, SEQ, seq);
  Atomics.notify(w.ctrl, SEQ);
  return seq;
}

/**
 * Waits for `w` to finish job `seq` (false after `timeoutMs`); with `cancel`, returns at once if the
 * worker has not claimed the job yet.
 */
function join(w: PoolWorker, seq: number, cancel: boolean, timeoutMs: number): boolean {
  const tag = (seq & 0x1fffffff) * 4;
  if (cancel && Atomics.compareExchange(w.ctrl, STATE, tag + 1, tag) === tag + 1) return true;
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = Atomics.load(w.ctrl, STATE);
    if (s === tag + 3) return true;
    if (Date.now() > until) return false;
    Atomics.wait(w.ctrl, STATE, s, 100);
  }
}

/** Points `w` at `memory` (undefined: drops its reference); false if the worker did not answer. */
function bind(p: Pool, w: PoolWorker, memory: object | undefined): boolean {
  p.seq++;
  if (memory) w.port.postMessage({ seq: p.seq, memory });
  // A worker that never answers (it failed to start) leaves the caller single-threaded.
  if (!join(w, post(p, w, memory ? 2 : 3), false, 10_000)) {
    pool = null;
    return false;
  }
  w.bound = memory;
  return true;
}

/** Whether workers may run: only when LINEAGE_SVD_THREADS asks for them. */
function machineIdle(): boolean {
  if (process.env['LINEAGE_SVD_THREADS'] !== undefined) return true;
  return false;
}

/** Whether GEMM groups on `memory` (of a shared instance of `module`) can run on worker threads. */
export function parallelAvailable(module: object, shared: boolean): boolean {
  return shared && machineIdle() && getPool(module) !== null;
}

/** Drops the workers' references to `memory` (called when a workspace ends). */
export function releaseMemory(memory: object): void {
  if (!pool) return;
  const p = pool;
  for (const w of p.workers) if (w.bound === memory && !bind(p, w, undefined)) return;
}

/**
 * Runs `n` macro-kernel blocks (block b: rows `b === n−1 ? last : mFull`, A at ap0 + b·aps, C at
 * c0 + b·cs) on the caller and the workers; `run(b)` is the caller's own call for block b.
 */
export function runBlocks(
  module: object,
  memory: object,
  job: {
    n: number;
    nFull: number;
    kc: number;
    ap0: number;
    aps: number;
    bp: number;
    c0: number;
    cs: number;
    ldc: number;
    mFull: number;
    last: number;
    alpha: number;
  },
  run: (b: number) => void,
): void {
  const p = getPool(module);
  if (!p || job.n < 2) {
    for (let b = 0; b < job.n; b++) run(b);
    return;
  }
  for (const w of p.workers) {
    if (w.bound !== memory && !bind(p, w, memory)) {
      for (let b = 0; b < job.n; b++) run(b);
      return;
    }
  }
  jobsPosted++;
  Atomics.store(p.next, 0, 0);
  p.seq++;
  const seqs: number[] = [];
  for (const w of p.workers) {
    const c = w.ctrl;
    c[NBLK] = job.n;
    c[NFULL] = job.nFull;
    c[KCS] = job.kc;
    c[AP0] = job.ap0;
    c[APS] = job.aps;
    c[BPP] = job.bp;
    c[C0] = job.c0;
    c[CS] = job.cs;
    c[LDC] = job.ldc;
    c[MFULL] = job.mFull;
    c[LAST] = job.last;
    w.f64[ALPHA] = job.alpha;
    seqs.push(post(p, w, 1));
  }
  for (;;) {
    const b = Atomics.add(p.next, 0, 1);
    if (b >= job.n) break;
    run(b);
  }
  p.workers.forEach((w, i) => {
    // A claimed block takes milliseconds; a worker silent for 30 s has died mid-job.
    if (!join(w, seqs[i]!, true, 30_000)) {
      pool = null;
      throw new Error(
        'linalg: a GEMM worker thread stopped responding (set LINEAGE_SVD_THREADS=1 to run without)',
      );
    }
  });
}
