import type { LlamaModel } from '../nn/llama.js';
import type { Parameter } from '../nn/parameter.js';
import { HostTensor } from '../tensor/host-tensor.js';

/** Gradients by parameter (f32, host), as `valueAndGrad` returns them. */
export type Grads = ReadonlyMap<Parameter, Float32Array>;

/**
 * Serialisable optimiser state: the number of updates applied and named f32 buffers
 * (`${param}.exp_avg`, …). Saving it with the parameters and loading both resumes a run exactly.
 */
export interface OptimizerState {
  step: number;
  tensors: Map<string, HostTensor>;
}

export interface Optimizer {
  /** Updates applied so far. */
  readonly stepCount: number;
  /**
   * Applies one update to every parameter that has a gradient (others are left alone), with learning
   * rate `lr` (default: the optimiser's). Writes the new values back into each Parameter as f32 (its
   * device copies are refreshed on next use). `gradScale` (default 1) multiplies every gradient first,
   * exactly as scaling the arrays in place (rounded to f32) would, without changing them: a clipping
   * coefficient (`clipCoefficient`) applied on the fly, one pass over the gradients fewer.
   */
  step(grads: Grads, lr?: number, gradScale?: number): void;
  state(): OptimizerState;
  /** Restores a state from `state()` (buffers are copied). */
  loadState(state: OptimizerState): void;
}

/** Every parameter of a model by checkpoint name: `model.namedParameters()` (kept for existing callers). */
export function namedParameters(model: LlamaModel): Map<string, Parameter> {
  return model.namedParameters();
}

/** Named parameters with a name → Parameter map (or pairs); checks names are unique. */
export function toNamed(
  params: ReadonlyMap<string, Parameter> | Iterable<[string, Parameter]>,
): Map<string, Parameter> {
  const m = new Map<string, Parameter>();
  for (const [name, p] of params) {
    if (m.has(name)) throw new Error(`optimizer: parameter name '${name}' is repeated`);
    m.set(name, p);
  }
  return m;
}

/** Checks that every gradient belongs to a known parameter and has its size. */
export function checkGrads(params: ReadonlyMap<string, Parameter>, grads: Grads): void {
  const known = new Set(params.values());
  for (const [p, g] of grads) {
    if (!known.has(p))
      throw new Error('optimizer: a gradient was given for a parameter the optimizer does not own');
    if (g.length !== p.size)
      throw new RangeError(`optimizer: gradient of ${g.length} values for a parameter [${p.shape}]`);
  }
}

/** The parameter's current values as a fresh f32 array (never the stored array, which may be shared). */
export function valuesOf(p: Parameter): Float32Array {
  return Float32Array.from(p.value.toF32());
}

/**
 * Stores new f32 values in a parameter (its device copies are overwritten or dropped: `Parameter.update`);
 * `exclusive` when nothing else references `values` (the parameter may then hand it back for in-place writes).
 */
export function writeBack(p: Parameter, values: Float32Array, exclusive = false): void {
  p.update(new HostTensor('f32', p.shape, values), exclusive);
}

/** Copies a buffer into a state tensor. */
export function stateTensor(buf: Float32Array, shape: readonly number[]): HostTensor {
  return new HostTensor('f32', shape, buf.slice());
}

/** Reads a buffer from a loaded state, checking its size. */
export function loadBuffer(s: OptimizerState, key: string, size: number): Float32Array | undefined {
  const t = s.tensors.get(key);
  if (!t) return undefined;
  if (t.size !== size)
    throw new RangeError(`optimizer state '${key}' has ${t.size} values, expected ${size}`);
  return Float32Array.from(t.toF32());
}
