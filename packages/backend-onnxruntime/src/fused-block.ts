import { OPSET } from './kernels.js';
import { FLOAT, GraphBuilder } from './onnx.js';

/**
 * A dense Llama decoder block's forward and its vector-Jacobian product as two onnxruntime graphs (issue #16,
 * fused training): RMSNorm → q/k/v → RoPE (rotate-half) → causal attention with grouped-query heads →
 * o_proj + residual → RMSNorm → SwiGLU MLP + residual, as `LlamaModel.block` computes it. The forward can
 * also return the activations the backward reads (so they stay onnxruntime tensors between the two and
 * nothing is recomputed but the cheap elementwise parts); the backward returns d x and every weight's
 * gradient in one run. Weights are inputs, not initializers: they change every optimiser step.
 *
 * Layouts inside: rows N = B·T for every linear part (Gemm with transB reads W [out, in] in place); the
 * attention in [B, Hkv, G, T, hd] (query head h = kvHead·G + g, as core's kernels), so each kv head serves
 * its G query heads by broadcasting.
 */
export interface BlockDims {
  /** Model width. */
  dim: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** RMSNorm epsilon. */
  eps: number;
}

/** The weights' input names, in the order of `BLOCK_WEIGHTS` (core FusedBlockWeights). */
export const WEIGHT_INPUTS = [
  'w_in',
  'w_post',
  'w_q',
  'w_k',
  'w_v',
  'w_o',
  'w_gate',
  'w_up',
  'w_down',
] as const;
/** The backward graph's inputs for the activations the forward saves, in this order. */
export const SAVED = ['s_h', 's_qh', 's_kh', 's_vh', 's_p', 's_a', 's_x1', 's_h2', 's_gate', 's_up'] as const;

const MIN_F32 = -3.4028234663852886e38;

/** Inputs shared by both graphs: x [B, T, dim], the weights, the RoPE tables [T, headDim/2]. */
function common(g: GraphBuilder, d: BlockDims) {
  const { dim, heads: H, kvHeads: Hkv, headDim: hd } = d;
  const F = 'F';
  const x = g.input('x_in', FLOAT, ['B', 'T', dim]);
  const dims: Record<(typeof WEIGHT_INPUTS)[number], (string | number)[]> = {
    w_in: [dim],
    w_post: [dim],
    w_q: [H * hd, dim],
    w_k: [Hkv * hd, dim],
    w_v: [Hkv * hd, dim],
    w_o: [dim, H * hd],
    w_gate: [F, dim],
    w_up: [F, dim],
    w_down: [dim, F],
  };
  const w = Object.fromEntries(WEIGHT_INPUTS.map((n) => [n, g.input(n, FLOAT, dims[n])])) as Record<
    (typeof WEIGHT_INPUTS)[number],
    string
  >;
  const cos = g.input('rope_cos', FLOAT, ['T', hd / 2]);
  const sin = g.input('rope_sin', FLOAT, ['T', hd / 2]);
  const one = g.int64([1]);
  // [T, 1, hd/2] against [B, T, heads, hd/2]
  const c = g.op('Unsqueeze', [cos, one]);
  const s = g.op('Unsqueeze', [sin, one]);
  const bt = g.op('Slice', [g.op('Shape', [x]), g.int64([0]), g.int64([2])]);
  const shape = (tail: number[]) => g.op('Concat', [bt, g.int64(tail)], { axis: 0 });
  const rows = (v: string, width: number) => g.op('Reshape', [v, g.int64([-1, width])]);
  const half = (v: string) => g.node('Split', [v], { axis: -1, num_outputs: 2 }, 2) as [string, string];
  const rms = (v: string) => {
    const ms = g.op('ReduceMean', [g.op('Mul', [v, v]), g.int64([-1])], { keepdims: 1 });
    const r = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [ms, g.float(d.eps)])])]);
    return { r, n: g.op('Mul', [v, r]) };
  };
  return { x, w, c, s, shape, rows, half, rms };
}

/**
 * The block's forward: output `y` [B, T, dim], and with `save` the activations in SAVED order, under the
 * names `saved` lists (h [N, dim],
 * rotated q [B, Hkv, G, T, hd], rotated k and v [B, Hkv, 1, T, hd], attention probabilities [B, Hkv, G, T, T],
 * the attention output [N, H·hd], x1 [N, dim], h2 [N, dim], gate and up [N, F]).
 */
export function blockForwardGraph(d: BlockDims, save: boolean): { model: Uint8Array; saved: string[] } {
  const g = new GraphBuilder();
  const { dim, heads: H, kvHeads: Hkv, headDim: hd } = d;
  const G = H / Hkv;
  const { x, w, c, s, shape, rows, half, rms } = common(g, d);
  const gemm = (a: string, b: string) => g.op('Gemm', [a, b], { transB: 1 });
  const x2 = rows(x, dim);
  const h = g.op('Mul', [rms(x2).n, w.w_in]);
  const rope = (v: string, heads: number) => {
    const [a, b] = half(g.op('Reshape', [v, shape([heads, hd])]));
    return g.op(
      'Concat',
      [
        g.op('Sub', [g.op('Mul', [a, c]), g.op('Mul', [b, s])]),
        g.op('Add', [g.op('Mul', [b, c]), g.op('Mul', [a, s])]),
      ],
      { axis: -1 },
    );
  };
  const two = g.int64([2]);
  // q [B, T, H, hd] → [B, T, Hkv, G, hd] → [B, Hkv, G, T, hd]; k, v [B, T, Hkv, hd] → [B, Hkv, 1, T, hd]
  const qh = g.op('Transpose', [g.op('Reshape', [rope(gemm(h, w.w_q), H), shape([Hkv, G, hd])])], {
    perm: [0, 2, 3, 1, 4],
  });
  const kvHeads = (v: string) => g.op('Unsqueeze', [g.op('Transpose', [v], { perm: [0, 2, 1, 3] }), two]);
  const kh = kvHeads(rope(gemm(h, w.w_k), Hkv));
  const vh = kvHeads(g.op('Reshape', [gemm(h, w.w_v), shape([Hkv, hd])]));
  // additive causal mask [T, T]: key j visible to query t when j ≤ t
  const T = g.op('Gather', [g.op('Shape', [x]), g.int64([1], true)]);
  const r = g.op('Range', [g.int64([0], true), T, g.int64([1], true)]);
  const visible = g.op('LessOrEqual', [
    g.op('Unsqueeze', [r, g.int64([0])]),
    g.op('Unsqueeze', [r, g.int64([1])]),
  ]);
  const mask = g.op('Where', [visible, g.float(0), g.float(MIN_F32)]);
  const scores = g.op('Mul', [
    g.op('MatMul', [qh, g.op('Transpose', [kh], { perm: [0, 1, 2, 4, 3] })]),
    g.float(1 / Math.sqrt(hd)),
  ]);
  const p = g.op('Softmax', [g.op('Add', [scores, mask])], { axis: -1 });
  const a = rows(g.op('Transpose', [g.op('MatMul', [p, vh])], { perm: [0, 3, 1, 2, 4] }), H * hd);
  const x1 = g.op('Add', [x2, gemm(a, w.w_o)]);
  const h2 = g.op('Mul', [rms(x1).n, w.w_post]);
  const gate = gemm(h2, w.w_gate);
  const up = gemm(h2, w.w_up);
  const m = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  const y = g.op('Add', [x1, gemm(m, w.w_down)]);
  g.node('Reshape', [y, g.op('Shape', [x])], {}, ['y']);
  g.output('y', FLOAT);
  // the saved activations are graph outputs under their own value names: an Identity per output would copy
  // each one (a fifth of the forward's kernel time, measured in onnxruntime's profile)
  const saved = save ? [h, qh, kh, vh, p, a, x1, h2, gate, up] : [];
  for (const v of saved) g.output(v, FLOAT);
  return { model: g.build(OPSET), saved };
}

/**
 * The block's vector-Jacobian product: from d y [B, T, dim], the input x, the weights, the RoPE tables and
 * the forward's SAVED activations, `dx` [B, T, dim] and `d_<weight>` for every weight (float32 throughout;
 * checked against the tape's per-op gradients and float64 finite differences in fused-block.test.ts).
 */
export function blockBackwardGraph(d: BlockDims): Uint8Array {
  const g = new GraphBuilder();
  const { dim, heads: H, kvHeads: Hkv, headDim: hd } = d;
  const G = H / Hkv;
  const { x, w, c, s, shape, rows, half, rms } = common(g, d);
  const dy = g.input('dy', FLOAT, ['B', 'T', dim]);
  const dimsOf: Record<(typeof SAVED)[number], (string | number)[]> = {
    s_h: ['N', dim],
    s_qh: ['B', Hkv, G, 'T', hd],
    s_kh: ['B', Hkv, 1, 'T', hd],
    s_vh: ['B', Hkv, 1, 'T', hd],
    s_p: ['B', Hkv, G, 'T', 'T'],
    s_a: ['N', H * hd],
    s_x1: ['N', dim],
    s_h2: ['N', dim],
    s_gate: ['N', 'F'],
    s_up: ['N', 'F'],
  };
  const sv = Object.fromEntries(SAVED.map((n) => [n, g.input(n, FLOAT, dimsOf[n])])) as Record<
    (typeof SAVED)[number],
    string
  >;
  const op = g.op.bind(g);
  const wgrad = (dz: string, input: string) => op('Gemm', [dz, input], { transA: 1 }); // dzᵀ·input = [out, in]
  const out = (name: string, v: string) => {
    g.node('Identity', [v], {}, [name]);
    g.output(name, FLOAT);
  };
  const minusLast = [0, 1, 2, 4, 3];
  // RMSNorm's VJP: y = n·w, n = v·r, r = (mean v² + eps)^-½ → dw = Σ_rows dy·n, dv = r·(dn − n·mean(dn·n))
  const rmsBack = (v: string, dh: string, weight: string) => {
    const { r, n } = rms(v);
    const dn = op('Mul', [dh, weight]);
    const proj = op('ReduceMean', [op('Mul', [dn, n]), g.int64([-1])], { keepdims: 1 });
    return {
      dv: op('Mul', [r, op('Sub', [dn, op('Mul', [n, proj])])]),
      dw: op('ReduceSum', [op('Mul', [dh, n]), g.int64([0])], { keepdims: 0 }),
    };
  };
  const dy2 = rows(dy, dim);
  // MLP: y = x1 + down(silu(gate)·up)
  const sg = op('Sigmoid', [sv.s_gate]);
  const silu = op('Mul', [sv.s_gate, sg]);
  const dm = op('MatMul', [dy2, w.w_down]);
  out('d_w_down', wgrad(dy2, op('Mul', [silu, sv.s_up])));
  const du = op('Mul', [dm, silu]);
  // silu'(z) = σ(z)·(1 + z·(1 − σ(z)))
  const dsilu = op('Mul', [sg, op('Add', [g.float(1), op('Mul', [sv.s_gate, op('Sub', [g.float(1), sg])])])]);
  const dgate = op('Mul', [op('Mul', [dm, sv.s_up]), dsilu]);
  out('d_w_up', wgrad(du, sv.s_h2));
  out('d_w_gate', wgrad(dgate, sv.s_h2));
  const dh2 = op('Add', [op('MatMul', [du, w.w_up]), op('MatMul', [dgate, w.w_gate])]);
  const post = rmsBack(sv.s_x1, dh2, w.w_post);
  out('d_w_post', post.dw);
  const dx1 = op('Add', [dy2, post.dv]);
  // attention: x1 = x + o(a)
  out('d_w_o', wgrad(dx1, sv.s_a));
  const da = op('MatMul', [dx1, w.w_o]);
  const daH = op('Transpose', [op('Reshape', [da, shape([Hkv, G, hd])])], { perm: [0, 2, 3, 1, 4] });
  const dp = op('MatMul', [daH, op('Transpose', [sv.s_vh], { perm: minusLast })]);
  const sumGroups = (v: string) => (G === 1 ? v : op('ReduceSum', [v, g.int64([2])], { keepdims: 1 }));
  const dvh = sumGroups(op('MatMul', [op('Transpose', [sv.s_p], { perm: minusLast }), daH]));
  // softmax's VJP, then the 1/√hd scale of the scores (the mask is a constant)
  const dsRaw = op('Mul', [
    sv.s_p,
    op('Sub', [dp, op('ReduceSum', [op('Mul', [dp, sv.s_p]), g.int64([-1])], { keepdims: 1 })]),
  ]);
  // the scores' 1/√hd applied to the [T, hd] products rather than the [T, T] gradient (a quarter of the work)
  const scale = g.float(1 / Math.sqrt(hd));
  const dqh = op('Mul', [op('MatMul', [dsRaw, sv.s_kh]), scale]);
  const dkh = op('Mul', [
    sumGroups(op('MatMul', [op('Transpose', [dsRaw], { perm: minusLast }), sv.s_qh])),
    scale,
  ]);
  // back to [B, T, heads, hd]
  const tokensFirst = (v: string, heads: number) =>
    op('Reshape', [op('Transpose', [v], { perm: [0, 3, 1, 2, 4] }), shape([heads, hd])]);
  // RoPE's VJP: the inverse rotation
  const ropeBack = (v: string) => {
    const [a, b] = half(v);
    return op(
      'Concat',
      [op('Add', [op('Mul', [a, c]), op('Mul', [b, s])]), op('Sub', [op('Mul', [b, c]), op('Mul', [a, s])])],
      { axis: -1 },
    );
  };
  const dq = rows(ropeBack(tokensFirst(dqh, H)), H * hd);
  const dk = rows(ropeBack(tokensFirst(dkh, Hkv)), Hkv * hd);
  const dv = rows(tokensFirst(dvh, Hkv), Hkv * hd);
  out('d_w_q', wgrad(dq, sv.s_h));
  out('d_w_k', wgrad(dk, sv.s_h));
  out('d_w_v', wgrad(dv, sv.s_h));
  const dh = op('Add', [
    op('Add', [op('MatMul', [dq, w.w_q]), op('MatMul', [dk, w.w_k])]),
    op('MatMul', [dv, w.w_v]),
  ]);
  const input = rmsBack(rows(x, dim), dh, w.w_in);
  out('d_w_in', input.dw);
  g.node('Reshape', [op('Add', [dx1, input.dv]), op('Shape', [x])], {}, ['dx']);
  g.output('dx', FLOAT);
  return g.build(OPSET);
}
