import { LineageError, type TextDataset } from '@lineage/core';
import { DEFAULTS } from './defaults.js';

/** Training data with a validation part split off for early stopping. */
export interface ValidationSplit {
  train: TextDataset[];
  validation: TextDataset;
}

/**
 * Splits the last `fraction` of the last dataset off as validation data (core's TextDataset.split:
 * documents when it has them, else the stream's tail), once, before any recovery: every run that uses the
 * result trains on `train` and early-stops on `validation`, never on text it trained on.
 */
export function splitValidation(
  data: readonly TextDataset[],
  fraction: number = DEFAULTS.validationFraction,
): ValidationSplit {
  const last = data[data.length - 1];
  if (!last) throw new LineageError('no training data to split validation data from');
  const { train, heldOut } = last.split({ fraction });
  return { train: [...data.slice(0, -1), train], validation: heldOut };
}

/**
 * `splitValidation`, or undefined (with the reason in `onSkip`) when the last dataset is too small to split
 * (one document, or a stream too short): early stopping is then off, and training keeps all the data.
 */
export function trySplitValidation(
  data: readonly TextDataset[],
  onSkip: (reason: string) => void,
  fraction: number = DEFAULTS.validationFraction,
): ValidationSplit | undefined {
  try {
    return splitValidation(data, fraction);
  } catch (e) {
    if (!(e instanceof LineageError)) throw e;
    onSkip(e.message);
    return undefined;
  }
}
