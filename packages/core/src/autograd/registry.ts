import type { Tensor } from '../backend/backend.js';
import type { Ops } from '../backend/ops.js';
import type { Shape } from '../tensor/host-tensor.js';
import { BUILTIN_GRADIENTS } from './gradients.js';

/**
 * One recorded op of a forward pass. `inputs` and `output` are the forward's tensors; only those the
 * op's gradient declares in `saves` are kept alive for the backward pass (the others may already be
 * disposed: read their shapes from `inputShapes` / `outputShape`, never their values).
 */
export interface GradNode<A = unknown> {
  /** Gradient registry key: the Ops method (`matmul`, `rmsNorm`, …), `unary.<op>`, `binary.<op>`, `reduce.<op>`. */
  readonly op: string;
  readonly attrs: A;
  readonly inputs: readonly Tensor[];
  readonly inputShapes: readonly Shape[];
  readonly output: Tensor;
  readonly outputShape: Shape;
  /** Which inputs need a gradient (depend on a watched tensor); a VJP may skip the others. */
  readonly needsGrad: readonly boolean[];
}

/** Which forward tensors a VJP reads: input indices and whether the output. */
export interface Saved {
  inputs: readonly number[];
  output: boolean;
}

/**
 * The vector-Jacobian product of an op, written with other ops (so it runs on every backend). `vjp`
 * gets the gradient of the loss w.r.t. the node's output and returns one gradient per input, of that
 * input's shape (undefined for inputs that need none). It runs inside an `ops.tidy`: intermediates are
 * freed, returned tensors are handed to the tape, which disposes them when consumed. So return new
 * tensors (or `dy` itself), never a saved forward tensor. `saves` lists what `vjp` reads: nothing else
 * of the forward is kept alive, so reading an unsaved input's values fails (its shape is in `inputShapes`).
 */
export interface GradientSpec<A = unknown> {
  saves(attrs: A, needsGrad: readonly boolean[]): Saved;
  vjp(ops: Ops, dy: Tensor, node: GradNode<A>): Promise<(Tensor | undefined)[]>;
  /**
   * Optional, for row lookups (gather): input 0's gradient as the few rows it touches — distinct `rows`
   * along its first axis and their `values` on the host, row after row — equal to those rows of `vjp`'s
   * gradient (zero elsewhere). When the tape alone already holds another gradient of input 0 (a tied
   * output head's) and the backend has `addRowsInPlace`, the rows are added into it instead of calling
   * `vjp` for a dense table and summing. Only when no other input needs a gradient.
   */
  rowsVjp?(ops: Ops, dy: Tensor, node: GradNode<A>): Promise<{ rows: Int32Array; values: Float32Array }>;
}

const GRADIENTS = Symbol.for('@lineage/core/gradients');
type Global = typeof globalThis & { [GRADIENTS]?: Map<string, GradientSpec> };

function gradients(): Map<string, GradientSpec> {
  const g = globalThis as Global;
  g[GRADIENTS] ??= new Map();
  return g[GRADIENTS];
}

/**
 * Registers the gradient of an op key (e.g. a custom op recorded with `GradOps.custom`). Keys of the
 * op contract are built in; registering one of those, or a key twice, throws (no silent re-registration).
 */
export function registerGradient<A>(op: string, spec: GradientSpec<A>): void {
  if (BUILTIN_GRADIENTS.has(op)) throw new Error(`registerGradient: '${op}' is a built-in gradient`);
  const old = gradients().get(op);
  if (old && old !== spec) throw new Error(`registerGradient: '${op}' is already registered`);
  gradients().set(op, spec as GradientSpec);
}

/** The gradient of an op key, or undefined. */
export function getGradient(op: string): GradientSpec | undefined {
  return BUILTIN_GRADIENTS.get(op) ?? gradients().get(op);
}
