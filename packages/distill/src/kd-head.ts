import {
  type GradOps,
  Linear,
  type LlamaModel,
  type Ops,
  registerGradient,
  type Tensor,
} from '@lineage/core';

/**
 * The model's output head as one dense [V, D] tensor on ops' backend (the tied embedding or lm_head), or
 * undefined when it is another layer kind (low rank, quantised) or has a bias: the fused head computes
 * h·Wᵀ itself, so only a plain matrix qualifies.
 */
export function denseHead(ops: Ops, model: LlamaModel): Tensor | undefined {
  const layer = model.lmHead ?? model.embedding;
  if (!(layer instanceof Linear) || layer.kind !== 'linear' || layer.bias) return undefined;
  return layer.weight.tensor(ops.backend);
}

/** Whether `fusedKdHead` can serve this pair on `ops` (the teacher's tensors must live on the same backend). */
export function canFuseKdHead(ops: Ops, student: LlamaModel, teacher: LlamaModel, teacherOps: Ops): boolean {
  return (
    !!ops.backend.fusedTraining &&
    teacherOps.backend === ops.backend &&
    !!denseHead(ops, student) &&
    !!denseHead(ops, teacher)
  );
}

const OP = 'distill.kdHead';

// The node's inputs are [h, W, dh, dW]: the fused head already computed d kl / d h and d kl / d W, saved
// on the tape as the last two inputs; the VJP only scales them by the incoming gradient. Registered on
// first use, not at import, so the package stays free of import-time side effects ("sideEffects": false).
let registered = false;
function ensureGradient(): void {
  if (registered) return;
  registered = true;
  registerGradient<null>(OP, KD_HEAD_GRADIENT);
}
const KD_HEAD_GRADIENT: Parameters<typeof registerGradient<null>>[1] = {
  saves: () => ({ inputs: [2, 3], output: false }),
  vjp: async (ops, dy, n) => {
    const s = (await ops.readF32(dy))[0]!;
    const [, , dh, dw] = n.inputs as [Tensor, Tensor, Tensor, Tensor];
    // The usual seed is 1 (the KL is the whole loss): a reshape is a new handle on the same values (no
    // copy of the [V, D] gradient), which the tape may free independently of the saved one.
    const by = (g: Tensor) => (s === 1 ? ops.reshape(g, g.shape) : ops.scale(g, s));
    return [
      n.needsGrad[0] ? await by(dh) : undefined,
      n.needsGrad[1] ? await by(dw) : undefined,
      undefined,
      undefined,
    ];
  },
};

/**
 * The distillation head on the backend's fused capability (`Backend.fusedTraining.kdHead`): the KL of the
 * student's logits to the teacher's (as `klDivergence`, mean over rows, × T² when T ≠ 1) recorded on the
 * tape as one node whose gradient w.r.t. the student's final hidden states and head weight was computed in
 * the same call, and the CE metric (not differentiated). `hidden` [N, D] and `teacherHidden` [N, Dt] are the
 * final hidden states (after the final norm). Returns undefined when the backend has no such capability or
 * declines (the caller computes the logits and uses the composite loss instead).
 */
export async function fusedKdHead(
  ops: GradOps,
  student: LlamaModel,
  hidden: Tensor,
  teacher: LlamaModel,
  teacherHidden: Tensor,
  targets: Int32Array,
  o: { temperature: number },
): Promise<{ kl: Tensor; ce: Tensor } | undefined> {
  const fused = ops.backend.fusedTraining;
  const weight = denseHead(ops, student);
  const teacherWeight = denseHead(ops, teacher);
  if (!fused || !weight || !teacherWeight || teacherHidden.backend !== ops.backend) return undefined;
  ensureGradient();
  const r = await fused.kdHead({
    hidden,
    weight,
    teacherHidden,
    teacherWeight,
    targets,
    temperature: o.temperature,
  });
  if ('unsupported' in r) return undefined;
  // Into the current tidy scope (a reshape is a view: no copy), so the tape frees them after backward.
  const hold = async (t: Tensor) => {
    const v = await ops.tape.untaped(() => ops.reshape(t, t.shape));
    ops.backend.dispose(t);
    return v;
  };
  const [kl, ce, dh, dw] = [await hold(r.kl), await hold(r.ce), await hold(r.dHidden), await hold(r.dWeight)];
  const loss = await ops.custom(OP, [hidden, weight, dh, dw], async () => kl);
  return { kl: loss, ce };
}
