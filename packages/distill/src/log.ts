import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { LineageError, writeFileAtomic } from '@lineage/core';

/** One optimiser step as reported on stderr, in the JSONL log and to `onStep`. */
export interface StepRecord {
  type: 'step';
  step: number;
  totalSteps: number;
  /** Training tokens consumed after this step. */
  tokens: number;
  /** The objective (mean over the batch). */
  loss: number;
  /** Parts of the objective: kl, ce (the student's next-token loss, always reported), hidden. */
  kl?: number;
  ce?: number;
  hidden?: number;
  /** Weighted terms of the regularisers, by name (each is part of `loss`). */
  regularizers?: Record<string, number>;
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Training tokens per second over this session (excluding evaluation and checkpoints). */
  tokensPerSecond: number;
  /** Seconds of training so far (all sessions of a resumed run). */
  seconds: number;
  /** Estimated seconds to the end of the budget. */
  eta: number;
  /** True when the gradient was not finite and the update was skipped. */
  skipped?: boolean;
}

/** Appends JSON lines to a file; every record is one line, flushed as it is written. */
export class JsonlLog {
  private constructor(readonly path: string) {}

  /**
   * Opens a log. A fresh run truncates it; a resumed run keeps only the records up to `resumeStep`
   * (steps and evaluations of the interrupted session after its checkpoint would be repeated).
   */
  static async open(path: string, resumeStep?: number): Promise<JsonlLog> {
    mkdirSync(dirname(path), { recursive: true });
    if (resumeStep === undefined || !existsSync(path)) await writeFileAtomic(path, '');
    else {
      const kept = readFileSync(path, 'utf8')
        .split('\n')
        .filter((line) => {
          if (!line.trim()) return false;
          try {
            const r = JSON.parse(line) as { step?: unknown };
            return typeof r.step !== 'number' || r.step <= resumeStep;
          } catch {
            return false;
          }
        });
      await writeFileAtomic(path, kept.map((l) => `${l}\n`).join(''));
    }
    return new JsonlLog(path);
  }

  write(record: object): void {
    try {
      appendFileSync(this.path, `${JSON.stringify(record)}\n`);
    } catch (e) {
      throw new LineageError(`cannot write the log: ${(e as Error).message}`, this.path);
    }
  }
}

/** Reads a JSONL training log (for tests and reports). */
export function readJsonl(path: string): Record<string, unknown>[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatTokens(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

/** The stderr line for a step: `step 12/146  tokens 24.6K  loss 0.5123 (kl 0.5123 ce 1.2345)  lr 9.80e-4  1024 tok/s  ETA 2m13s`. */
export function formatStep(r: StepRecord): string {
  const parts = [['kl', r.kl], ['ce', r.ce], ['hidden', r.hidden], ...Object.entries(r.regularizers ?? {})]
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k} ${(v as number).toFixed(4)}`);
  return [
    `step ${r.step}/${r.totalSteps}`,
    `tokens ${formatTokens(r.tokens)}`,
    `loss ${r.loss.toFixed(4)}${parts.length ? ` (${parts.join(' ')})` : ''}${r.skipped ? ' [non-finite gradient: skipped]' : ''}`,
    `lr ${r.lr.toExponential(2)}`,
    `${Math.round(r.tokensPerSecond)} tok/s`,
    `ETA ${formatDuration(r.eta)}`,
  ].join('  ');
}
