import { LineageError, type LlamaModel } from '@lineage/core';
import { type Command, InvalidArgumentError, Option } from 'commander';

export function addModelOptions(cmd: Command): Command {
  return cmd.option('--tokenizer <path>', 'tokenizer file or directory (default: found beside the model)');
}

export function addBackendOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--backend <name>', 'compute backend: js, onnxruntime, tfjs (default: fastest available)'),
    )
    .addOption(new Option('--device <device>', 'device for the backend: cpu, webgpu, cuda'));
}

export function addJsonOption(cmd: Command): Command {
  return cmd.option('--json', 'print one JSON object on stdout');
}

export function parseIntArg(min = 1) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`must be an integer ≥ ${min}, got '${v}'`);
    return n;
  };
}

export function parseFloatArg(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new InvalidArgumentError(`must be a number in [${min}, ${max}], got '${v}'`);
    return n;
  };
}

/** A peak learning rate, or 'auto' (a learning-rate range test on a copy picks it). */
export function parseLr(v: string): number | 'auto' {
  return v === 'auto' ? 'auto' : parseFloatArg(0, 10)(v);
}

/**
 * Evaluation and training need sequences of at least two tokens (one input, one target): a model whose
 * context is shorter is refused at once, naming the model file (not a --seq-len the user never gave).
 */
export function requireContext(model: LlamaModel, path: string, need = 2): void {
  const ctx = model.config.maxPositions;
  if (!(ctx >= need))
    throw new LineageError(
      `the model's context (max_position_embeddings ${ctx}) is too short: evaluating or training needs at least ${need} tokens`,
      path,
    );
}
