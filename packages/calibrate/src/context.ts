import type { CalibrationWalkFn } from './capability.js';
import type { CalibrationStats } from './stats.js';

/**
 * The public surface of calibration statistics (every accessor of `CalibrationStats`, without its private
 * state), so that any object offering it — statistics from another copy of this package included — is
 * accepted where a method context's statistics are expected.
 */
export type CalibrationStatsAccess = Pick<CalibrationStats, keyof CalibrationStats>;

// A method context's `stats` (and what its `calibrate` capability returns) are this package's statistics:
// importing @lineage/calibrate anywhere in a program types `ctx.stats.hessian(...)` for every method.
declare module '@lineage/core' {
  interface MethodStats extends CalibrationStatsAccess {}
  interface MethodCapabilities {
    /**
     * Sequential (GPTQ-style) calibration: walks a model block by block over the context's calibration text,
     * each block compressed from Hessians of inputs that went through the blocks compressed before it.
     */
    calibrationWalk: CalibrationWalkFn;
  }
}
