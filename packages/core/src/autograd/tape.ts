import type { Backend, Tensor } from '../backend/backend.js';
import { Ops } from '../backend/ops.js';
import { sizeOf } from '../tensor/host-tensor.js';
import { type GradientSpec, type GradNode, getGradient } from './registry.js';

interface Entry {
  node: GradNode;
  spec: GradientSpec;
  /** Tensors this node keeps alive for its VJP (one reference each). */
  keep: Tensor[];
}

export interface BackwardOptions {
  /** Gradient of the final objective w.r.t. `loss` (default: ones, i.e. the gradient of sum(loss)). Not consumed. */
  seed?: Tensor;
  /**
   * Called with each watched tensor's gradient as soon as it is complete (after the last node that
   * reads the watched tensor); the tape disposes the gradient when the callback returns, and `backward`
   * then returns an empty map.
   */
  onGrad?: (leaf: Tensor, grad: Tensor, sole: boolean) => Promise<void> | void;
}

/**
 * Records a forward pass as a list of op nodes and replays it backwards (reverse-mode autodiff). Only
 * ops that depend on a watched tensor are recorded; each node keeps alive only the tensors its
 * gradient reads (`GradientSpec.saves`), and those are freed as soon as the backward pass has consumed
 * them when their owner (an `Ops.tidy` scope, or `dispose`) has already let go of them.
 */
export class Tape {
  private entries: (Entry | undefined)[] = [];
  /** Tensors saved by recorded nodes → number of nodes that still need them. */
  private saved = new Map<Tensor, number>();
  /** Saved tensors whose owner released them: the tape disposes them after their last use. */
  private released = new Set<Tensor>();
  /** Tensors that depend on a watched tensor. */
  private requires = new Set<Tensor>();
  private leaves = new Set<Tensor>();
  private paused = 0;

  constructor(readonly backend: Backend) {}

  /** Marks a tensor (usually a parameter's device tensor) as one to differentiate with respect to. */
  watch(t: Tensor): void {
    this.leaves.add(t);
    this.requires.add(t);
  }

  isWatched(t: Tensor): boolean {
    return this.leaves.has(t);
  }

  /** True if t depends on a watched tensor (so ops on it are recorded). */
  requiresGrad(t: Tensor): boolean {
    return this.requires.has(t);
  }

  /** Recorded nodes (for tests and diagnostics). */
  get size(): number {
    return this.entries.length;
  }

  /** Tensors currently kept alive only for the backward pass. */
  get deferred(): number {
    return this.released.size;
  }

  /** Runs fn without recording (its ops are constants to the tape). */
  async untaped<R>(fn: () => Promise<R>): Promise<R> {
    this.paused++;
    try {
      return await fn();
    } finally {
      this.paused--;
    }
  }

  /** Records one op application (a no-op when no input depends on a watched tensor). */
  record(op: string, inputs: readonly Tensor[], output: Tensor, attrs: unknown): void {
    if (this.paused) return;
    const needsGrad = inputs.map((t) => this.requires.has(t));
    if (!needsGrad.some(Boolean)) return;
    const spec = getGradient(op);
    if (!spec) throw new Error(`autograd: no gradient is registered for op '${op}'`);
    const sv = spec.saves(attrs, needsGrad);
    const keep = sv.inputs.map((i) => inputs[i]!);
    if (sv.output) keep.push(output);
    for (const t of keep) this.saved.set(t, (this.saved.get(t) ?? 0) + 1);
    this.entries.push({
      node: {
        op,
        attrs,
        inputs: [...inputs],
        inputShapes: inputs.map((t) => t.shape),
        output,
        outputShape: output.shape,
        needsGrad,
      },
      spec,
      keep,
    });
    this.requires.add(output);
  }

  /** The owner of t lets go of it: returns true if the tape keeps it alive until backward consumed it. */
  defer(t: Tensor): boolean {
    if (!this.saved.has(t)) return false;
    this.released.add(t);
    return true;
  }

  /**
   * Backpropagates from `loss` through the recorded nodes in reverse order. Returns the gradient of every
   * watched tensor that `loss` depends on (owned by the caller), unless `onGrad` is given. Each node's
   * saved tensors and output gradient are freed right after its VJP ran. The tape is empty afterwards
   * (watched tensors stay watched) and can record another forward pass.
   */
  async backward(loss: Tensor, options: BackwardOptions = {}): Promise<Map<Tensor, Tensor>> {
    const b = this.backend;
    const ops = new Ops(b);
    const refs = new Map<Tensor, number>();
    const own = (g: Tensor) => refs.set(g, (refs.get(g) ?? 0) + 1);
    const drop = (g: Tensor) => {
      const r = (refs.get(g) ?? 1) - 1;
      if (r > 0) refs.set(g, r);
      else {
        refs.delete(g);
        b.dispose(g);
      }
    };
    const grads = new Map<Tensor, Tensor>();
    const out = new Map<Tensor, Tensor>();
    const leafUses = new Map<Tensor, number>();
    for (const e of this.entries) {
      e!.node.inputs.forEach((t, i) => {
        if (e!.node.needsGrad[i] && this.leaves.has(t)) leafUses.set(t, (leafUses.get(t) ?? 0) + 1);
      });
    }
    const finishLeaf = async (leaf: Tensor) => {
      const g = grads.get(leaf);
      if (!g) return;
      grads.delete(leaf);
      if (options.onGrad) {
        try {
          await options.onGrad(leaf, g, (refs.get(g) ?? 1) === 1);
        } finally {
          drop(g);
        }
      } else if ((refs.get(g) ?? 0) > 1) {
        out.set(leaf, await ops.scale(g, 1));
        drop(g);
      } else {
        refs.delete(g);
        out.set(leaf, g);
      }
    };
    const accumulate = async (t: Tensor, g: Tensor) => {
      own(g);
      const old = grads.get(t);
      if (!old) {
        grads.set(t, g);
        return;
      }
      const sum = await ops.add(old, g);
      own(sum);
      drop(old);
      drop(g);
      grads.set(t, sum);
    };
    // A row lookup (gather) whose table already has a gradient that only the tape holds (a tied output
    // head's): the rows the lookup touched are added into it in place (GradientSpec.rowsVjp,
    // Backend.addRowsInPlace), not a dense table plus a dense sum. True when done.
    const addRowsInPlace = async (n: GradNode, spec: GradientSpec, dy: Tensor): Promise<boolean> => {
      const old = grads.get(n.inputs[0]!);
      if (!spec.rowsVjp || !b.addRowsInPlace || !old || refs.get(old) !== 1) return false;
      if (!n.needsGrad[0] || n.needsGrad.some((need, j) => need && j > 0)) return false;
      const r = await ops.tidy(() => spec.rowsVjp!(ops, dy, n));
      return b.addRowsInPlace(old, r.rows, r.values);
    };
    try {
      if (this.requires.has(loss)) {
        const seed = options.seed
          ? await ops.scale(options.seed, 1) // a copy: the caller keeps theirs
          : b.upload(new Float32Array(sizeOf(loss.shape)).fill(1), loss.shape);
        await accumulate(loss, seed);
        for (let i = this.entries.length - 1; i >= 0; i--) {
          const e = this.entries[i]!;
          this.entries[i] = undefined;
          const n = e.node;
          const dy = grads.get(n.output);
          if (dy && (await addRowsInPlace(n, e.spec, dy))) {
            grads.delete(n.output);
            drop(dy);
          } else if (dy) {
            grads.delete(n.output);
            const gs = await ops.tidy(() => e.spec.vjp(ops, dy, n));
            for (const g of gs) if (g) own(g);
            for (let j = 0; j < n.inputs.length; j++) {
              const g = gs[j];
              if (!g) continue;
              if (!n.needsGrad[j]) {
                drop(g);
                continue;
              }
              const want = n.inputShapes[j]!;
              if (g.shape.length !== want.length || g.shape.some((d, k) => d !== want[k])) {
                throw new Error(
                  `autograd: the gradient of '${n.op}' for input ${j} has shape [${g.shape}], expected [${want}]`,
                );
              }
              await accumulate(n.inputs[j]!, g);
              drop(g);
            }
            drop(dy);
          }
          for (const t of e.keep) this.unsave(t);
          for (let j = 0; j < n.inputs.length; j++) {
            const t = n.inputs[j]!;
            if (!n.needsGrad[j] || !this.leaves.has(t)) continue;
            const left = (leafUses.get(t) ?? 1) - 1;
            leafUses.set(t, left);
            if (left === 0) await finishLeaf(t);
          }
        }
        for (const leaf of this.leaves) await finishLeaf(leaf); // e.g. loss itself watched
      }
    } catch (err) {
      for (const t of out.values()) b.dispose(t);
      throw err;
    } finally {
      for (const g of refs.keys()) b.dispose(g);
      this.reset();
    }
    return out;
  }

  private unsave(t: Tensor): void {
    const left = (this.saved.get(t) ?? 1) - 1;
    if (left > 0) {
      this.saved.set(t, left);
      return;
    }
    this.saved.delete(t);
    if (this.released.delete(t)) this.backend.dispose(t);
  }

  /** Drops the recorded nodes and frees every tensor kept only for them. Watched tensors stay watched. */
  reset(): void {
    for (const t of this.released) this.backend.dispose(t);
    this.released.clear();
    this.saved.clear();
    this.entries = [];
    this.requires = new Set(this.leaves);
  }

  /** Forgets everything, watched tensors included (frees deferred tensors). */
  dispose(): void {
    this.reset();
    this.leaves.clear();
    this.requires.clear();
  }
}
