import { LineageError } from '@lineage/core';
import type { CheckpointState, EvalRecord } from './checkpoint.js';

/** Consecutive non-finite steps after which a run is declared diverged. */
const MAX_CONSECUTIVE_SKIPS = 10;

/**
 * The progress of a run: what a checkpoint stores besides weights, optimiser and sampler (step, tokens,
 * evaluations, early-stopping bookkeeping, skipped steps, time), and the session's own counters.
 */
export class TrainState {
  /** Optimiser updates done (the next step's index). */
  step = 0;
  /** Training tokens consumed. */
  tokens = 0;
  evals: EvalRecord[] = [];
  bestNll: number | null = null;
  bestStep: number | null = null;
  sinceBest = 0;
  skipped = 0;
  /** Training seconds of earlier sessions (a resumed run). */
  priorSeconds = 0;
  /** Training seconds of this session (evaluation and checkpoints excluded). */
  sessionSeconds = 0;
  resumedFrom: number | undefined;
  /** Step of the last checkpoint written or resumed from (−1: none). */
  lastCheckpoint = -1;
  /** Loss of the last step. */
  lastLoss = Number.NaN;
  private consecutiveSkips = 0;
  /** Step this session started at. */
  sessionStart = 0;

  /** Takes over a checkpoint's progress. */
  restore(st: CheckpointState): void {
    this.step = st.step;
    this.tokens = st.tokens;
    this.evals = st.evals;
    this.bestNll = st.early.bestNll;
    this.bestStep = st.early.bestStep;
    this.sinceBest = st.early.sinceBest;
    this.skipped = st.skippedSteps;
    this.priorSeconds = st.seconds;
    this.resumedFrom = st.step;
    this.lastCheckpoint = st.step;
    this.sessionStart = st.step;
  }

  /** Training seconds, all sessions. */
  get seconds(): number {
    return this.priorSeconds + this.sessionSeconds;
  }

  /** Steps done in this session. */
  get sessionSteps(): number {
    return this.step - this.sessionStart;
  }

  /** The best evaluation as early stopping counts it (improvements smaller than minDelta do not count). */
  best(): EvalRecord | undefined {
    return this.evals.find((e) => e.step === this.bestStep);
  }

  /** Records an evaluation and updates the early-stopping bookkeeping. */
  addEval(rec: EvalRecord, minDelta: number): void {
    this.evals.push(rec);
    if (this.bestNll === null || rec.nll < this.bestNll - minDelta) {
      this.bestNll = rec.nll;
      this.bestStep = rec.step;
      this.sinceBest = 0;
    } else this.sinceBest++;
  }

  /** Counts a step; a run of non-finite ones ends the run as diverged. */
  countStep(finite: boolean, stepTokens: number, loss: number, seconds: number): void {
    if (finite) this.consecutiveSkips = 0;
    else {
      this.skipped++;
      this.consecutiveSkips++;
      if (this.consecutiveSkips >= MAX_CONSECUTIVE_SKIPS)
        throw new LineageError(
          `training diverged: ${this.consecutiveSkips} consecutive steps with a non-finite loss or gradient (lower the learning rate)`,
        );
    }
    this.step++;
    this.tokens += stepTokens;
    this.lastLoss = loss;
    this.sessionSeconds += seconds;
  }

  /** The progress part of a checkpoint's state. */
  progress(): Pick<CheckpointState, 'step' | 'tokens' | 'evals' | 'early' | 'skippedSteps' | 'seconds'> {
    return {
      step: this.step,
      tokens: this.tokens,
      evals: this.evals,
      early: { bestNll: this.bestNll, bestStep: this.bestStep, sinceBest: this.sinceBest },
      skippedSteps: this.skipped,
      seconds: this.seconds,
    };
  }
}
