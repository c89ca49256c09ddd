import {
  type BlockRope,
  FUSED_BLOCK_WEIGHTS,
  GradOps,
  Linear,
  type LlamaModel,
  type Ops,
  registerGradient,
  type Tensor,
} from '@lineage/core';

const OP = 'distill.fusedBlock';

interface BlockAttrs {
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  /** Inputs: x, the weights, cos, sin, then the saved activations. */
  weights: number;
}

// The node's inputs are [x, ...weights, cos, sin, ...saved]: the saved activations are constants to the tape
// (kept alive by it until the backward pass, then freed). Registered on first use, not at import, so the
// package stays free of import-time side effects ("sideEffects": false).
let registered = false;
function ensureGradient(): void {
  if (registered) return;
  registered = true;
  registerGradient<BlockAttrs>(OP, {
    saves: (_a, needsGrad) => ({ inputs: needsGrad.map((_, i) => i), output: false }),
    vjp: async (ops, dy, n) => {
      const a = n.attrs;
      const fused = ops.backend.fusedTraining;
      if (!fused?.blockBackward) throw new Error('the fused block lost its backend capability');
      const [x, ...rest] = n.inputs as Tensor[];
      const weights = rest.slice(0, a.weights);
      const [cos, sin] = rest.slice(a.weights, a.weights + 2) as [Tensor, Tensor];
      const saved = rest.slice(a.weights + 2);
      const r = await fused.blockBackward({ ...a, x: x!, weights, cos, sin, dy, saved });
      // gradients of inputs that need none (frozen weights) are dropped by the tape
      return [r.dx, ...r.dWeights, ...rest.slice(a.weights).map(() => undefined)];
    },
  });
}

/**
 * Block `l` of `model` on the backend's fused block graphs (`Backend.fusedTraining.blockForward`, onnxruntime
 * cpu) when it serves it: a dense block (every linear a plain `linear` without bias) over a whole sequence
 * (RoPE from position 0). On a recording GradOps the block is one tape node whose forward saved its
 * activations on the backend and whose gradient is the fused backward graph; on plain Ops (the teacher) it
 * is the forward alone. Returns undefined when the fused path does not apply (the caller runs
 * `model.block`, the per-op reference).
 */
export async function fusedBlock(
  ops: Ops,
  model: LlamaModel,
  l: number,
  x: Tensor,
  rope: BlockRope,
): Promise<Tensor | undefined> {
  const fused = ops.backend.fusedTraining;
  if (!fused?.blockForward || !fused.blockBackward || rope.offset !== 0) return undefined;
  const blk = model.blocks[l];
  if (!blk) return undefined;
  const b = ops.backend;
  const weights: Tensor[] = [blk.inputNorm.tensor(b), blk.postNorm.tensor(b)];
  for (const name of FUSED_BLOCK_WEIGHTS.slice(2)) {
    const layer = blk.linears[name as keyof typeof blk.linears];
    if (!(layer instanceof Linear) || layer.kind !== 'linear' || layer.bias) return undefined;
    weights.push(layer.weight.tensor(b));
  }
  const c = model.config;
  const grad = ops instanceof GradOps ? ops : undefined;
  const tape = grad?.tape;
  const save = !!tape && [x, ...weights].some((t) => tape.requiresGrad(t));
  const attrs: BlockAttrs = {
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    eps: c.rmsNormEps,
    weights: weights.length,
  };
  const r = await fused.blockForward({ ...attrs, x, weights, cos: rope.cos, sin: rope.sin, save });
  if ('unsupported' in r) return undefined;
  // Into the current tidy scope (a reshape is a view: no copy), so the scope (or the tape) frees them.
  const hold = async (t: Tensor) => {
    const v = tape ? await tape.untaped(() => ops.reshape(t, t.shape)) : await ops.reshape(t, t.shape);
    b.dispose(t);
    return v;
  };
  const y = await hold(r.y);
  if (!grad || !save) return y;
  ensureGradient();
  const saved: Tensor[] = [];
  for (const t of r.saved) saved.push(await hold(t));
  return grad.custom(OP, [x, ...weights, rope.cos, rope.sin, ...saved], async () => y, attrs);
}
