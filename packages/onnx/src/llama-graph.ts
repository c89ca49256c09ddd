import {
  type BlockLinear,
  EMBED_NAME,
  FINAL_NORM_NAME,
  HEAD_NAME,
  type Linear,
  type LinearLayer,
  type LlamaModel,
  type Parameter,
  ropeInvFreq,
  ropeTables,
} from '@lineage/core';
import { exportContext, isHalf, layerExporter, type WeightDType } from './exporters.js';
import { BOOL, FLOAT, GraphBuilder, INT32, INT64 } from './graph-builder.js';

/**
 * The default-domain opset and IR version of exported graphs: opset 17 / IR 8 is what Debian's python3-onnx
 * (1.12) checks, and every op used is older; onnxruntime's fused ops come from com.microsoft.
 */
export const LLAMA_OPSET = 17;
export const LLAMA_IR_VERSION = 8;
const MS = 'com.microsoft';

export interface LlamaGraphOptions {
  /**
   * Inputs `past_key_values.N.key/value` and outputs `present.N.key/value` (the layout transformers.js and
   * optimum use for decoding); without it the graph is one full forward (e.g. for evaluation).
   */
  kvCache?: boolean;
  /** How float weights are stored: fp16 halves the file; compute is f32 either way. */
  dtype?: WeightDType;
  /**
   * What the graph ends in: `logits` [batch, seq, vocab], or `nll` [batch, seq] = −log softmax(logits)[target]
   * for an extra int64 input `targets` [batch, seq], so the logits never leave the runtime (evaluation;
   * no KV cache).
   */
  head?: 'logits' | 'nll';
  /**
   * onnxruntime contrib kernels in place of standard-op subgraphs, for graphs onnxruntime runs itself (the
   * fused evaluation: see FUSED_NLL_KERNELS); exports keep the default, standard ops. Each is decided by
   * measurement (BENCHMARKS.md, "Fused evaluation on onnxruntime-cpu").
   */
  kernels?: LlamaKernels;
  /** Names every node after its part of the model (`l3.attention/Softmax2s`), for a runtime's profiler. */
  nodeNames?: boolean;
}

/** Which kernels a graph computes a block's parts with (see LlamaGraphOptions.kernels); default all 'ops'. */
export interface LlamaKernels {
  /**
   * Causal self-attention: 'ops' is MatMul / Softmax with an additive mask (any padding, KV cache);
   * 'gqa' is com.microsoft GroupQueryAttention, which needs right padding (each attention_mask row 1s then
   * 0s) and no KV cache ('ops' where the head size is not a multiple of 8).
   */
  attention?: 'ops' | 'gqa';
  /**
   * RoPE: 'ops' (Split / Mul / Concat on small angle tables), 'rotary' (com.microsoft RotaryEmbedding on q
   * and k), or 'gqa' (inside GroupQueryAttention, `do_rotary`; positions 0…T−1 of each row, so position_ids
   * must be those; 'rotary' where the head size is not a multiple of 16).
   */
  rope?: 'ops' | 'rotary' | 'gqa';
  /**
   * RMSNorm: 'ops' (ReduceMean / Sqrt / Mul), 'simplified' (SimplifiedLayerNormalization), or 'skip'
   * (com.microsoft SkipSimplifiedLayerNormalization: the residual Add fused into the next norm).
   */
  norm?: 'ops' | 'simplified' | 'skip';
  /**
   * q/k/v, and gate/up, as one MatMul on their concatenated weights where all are dense `linear` layers
   * without bias (other kinds keep their own exporters): with attention 'gqa' and rope 'gqa' the packed qkv
   * goes to GroupQueryAttention as it is, elsewhere a Split follows.
   */
  pack?: boolean;
}

/** The kernels the fused evaluation graph uses: the fastest measured on onnxruntime-cpu (BENCHMARKS.md). */
export const FUSED_NLL_KERNELS: Readonly<LlamaKernels> = { attention: 'gqa', rope: 'gqa', norm: 'skip' };

/** A built Llama graph and what it needs to be serialised. */
export interface LlamaGraph {
  graph: GraphBuilder;
  opset: number;
  opsets: Record<string, number>;
  irVersion: number;
}

/**
 * The forward of `model` as one ONNX graph, with HF/optimum names: inputs `input_ids`, `attention_mask`,
 * `position_ids` (int64) and, with a KV cache, `past_key_values.N.key/value` [batch, kv heads, past, head
 * dim]; outputs `logits` and `present.N.key/value` (or, with `head: 'nll'`, input `targets` and output `nll`). Every layer is exported by its kind's registered
 * exporter (see registerLayerExporter), never densified. RoPE's cos/sin come from small tables of float64
 * angles gathered by position_ids; attention is causal over
 * the whole (past + new) sequence and masked by attention_mask; grouped-query attention broadcasts each
 * kv head over its query heads without copies.
 */
export function buildLlamaGraph(model: LlamaModel, o: LlamaGraphOptions = {}): LlamaGraph {
  const head = o.head ?? 'logits';
  const kvCache = o.kvCache ?? head === 'logits';
  if (kvCache && head === 'nll') throw new Error("buildLlamaGraph: the 'nll' head has no KV cache");
  const c = model.config;
  const D = c.headDim;
  // onnxruntime's cpu GroupQueryAttention takes head sizes that are multiples of 8, and its RoPE multiples of
  // 16: other heads fall back (to the ops, to RotaryEmbedding)
  const attention = D % 8 === 0 ? (o.kernels?.attention ?? 'ops') : 'ops';
  let ropeKind = o.kernels?.rope ?? 'ops';
  if (ropeKind === 'gqa' && (D % 16 !== 0 || attention !== 'gqa')) ropeKind = 'rotary';
  const norm = o.kernels?.norm ?? 'ops';
  if (attention === 'gqa' && kvCache)
    throw new Error('buildLlamaGraph: GroupQueryAttention kernels are for graphs without a KV cache');
  if (o.kernels?.rope === 'gqa' && o.kernels.attention !== 'gqa')
    throw new Error("buildLlamaGraph: rope 'gqa' needs attention 'gqa'");
  const dtype = o.dtype ?? 'fp32';
  const { numHeads: H, numKvHeads: Hkv, vocabSize: V } = c;
  const half = D / 2;
  const rep = H / Hkv;
  const g = new GraphBuilder();
  const op = g.op.bind(g);
  const ints = (v: readonly number[]) => g.int64(v);
  const scalar = (v: number) => g.int64([v], true);
  const part = (name: string) => {
    if (o.nodeNames) g.scope = name;
  };

  part('inputs');
  const ids = g.input('input_ids', INT64, ['batch_size', 'sequence_length']);
  const mask = g.input('attention_mask', INT64, ['batch_size', 'total_sequence_length']);
  const pos = g.input('position_ids', INT64, ['batch_size', 'sequence_length']);
  const targets = head === 'nll' ? g.input('targets', INT64, ['batch_size', 'sequence_length']) : '';
  const past: [string, string][] = [];
  if (kvCache)
    for (let l = 0; l < c.numLayers; l++) {
      const dims = ['batch_size', Hkv, 'past_sequence_length', D];
      past.push([
        g.input(`past_key_values.${l}.key`, FLOAT, dims),
        g.input(`past_key_values.${l}.value`, FLOAT, dims),
      ]);
    }

  const linear = (name: string, layer: LinearLayer, x: string, tied = false) =>
    layerExporter(layer, name).linear(exportContext(g, name, dtype), layer, x, { tied });
  // Dense layers without bias side by side: x · [W₁ᵀ | W₂ᵀ | …], one GEMM reading x once.
  const packed = (name: string, layers: readonly LinearLayer[], x: string): string | undefined => {
    if (!o.kernels?.pack || !layers.every((l) => l.kind === 'linear' && !(l as Linear).bias))
      return undefined;
    const inp = layers[0]!.inFeatures;
    const total = layers.reduce((a, l) => a + l.outFeatures, 0);
    const data = new Float32Array(inp * total);
    let off = 0;
    for (const l of layers) {
      const w = (l as Linear).weight.value.toF32();
      const out = l.outFeatures;
      for (let r = 0; r < inp; r++) for (let c = 0; c < out; c++) data[r * total + off + c] = w[c * inp + r]!;
      off += out;
    }
    const f16 = layers.every((l) => isHalf((l as Linear).weight.value));
    return op('MatMul', [
      x,
      exportContext(g, name, dtype).weight('weight_t', data, [inp, total], { half: f16 }),
    ]);
  };
  const split = (x: string, sizes: readonly number[]) =>
    g.node('Split', [x, ints(sizes)], { axis: -1 }, sizes.length) as string[];
  const normWeight = (p: Parameter, name: string) =>
    exportContext(g, name, dtype).weight('weight', p.value.toF32(), [p.shape[0]!], { half: isHalf(p.value) });
  const rmsNorm = (x: string, p: Parameter, name: string) => {
    const w = normWeight(p, name);
    if (norm !== 'ops')
      return op('SimplifiedLayerNormalization', [x, w], {
        axis: -1,
        epsilon: { f: c.rmsNormEps },
        stash_type: 1,
      });
    const ms = op('ReduceMean', [op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const r = op('Reciprocal', [op('Sqrt', [op('Add', [ms, g.float(c.rmsNormEps)])])]);
    return op('Mul', [op('Mul', [x, r]), w]);
  };
  // x + branch, and its RMSNorm: one SkipSimplifiedLayerNormalization (both out of one pass) with 'skip'.
  const addNorm = (x: string, branch: string, p: Parameter, name: string): [string, string] => {
    if (norm !== 'skip') {
      const sum = op('Add', [x, branch]);
      return [rmsNorm(sum, p, name), sum];
    }
    const [y, sum] = [g.fresh(), g.fresh()];
    g.node(
      'SkipSimplifiedLayerNormalization',
      [x, branch, normWeight(p, name)],
      { epsilon: { f: c.rmsNormEps } },
      [y, '', '', sum],
      MS,
    );
    return [y, sum];
  };

  part('rope');
  const P = c.maxPositions;
  const inv = ropeInvFreq(c);
  const table = (n: string, rows: number, data: Float32Array) => g.initializer(n, FLOAT, [rows, half], data);
  // q's rotation takes attention's 1/√d too when RoPE is ops (scaled tables, computed once), so scores need
  // no extra Mul; the contrib kernels take the scale as an attribute instead.
  const scale = 1 / Math.sqrt(D);
  let rope: (x: string, q: boolean) => string;
  let fullTables: [string, string] | undefined;
  if (ropeKind === 'ops') {
    // RoPE at position p = a·s + b from two small tables of float64 angles (a·s·θ and b·θ), combined by the
    // angle-addition formulas: ~2 f32 ulps from core's tables, in (P/s + s) rows instead of P.
    const step = Math.max(1, Math.ceil(Math.sqrt(P)));
    const hi = ropeTables(
      inv.map((f) => f * step),
      Math.ceil(P / step),
      0,
    );
    const lo = ropeTables(inv, step, 0);
    const pa = op('Div', [pos, scalar(step)]);
    const pb = op('Mod', [pos, scalar(step)]);
    const cosA = op('Gather', [table('rope.cos_hi', Math.ceil(P / step), hi.cos), pa]);
    const sinA = op('Gather', [table('rope.sin_hi', Math.ceil(P / step), hi.sin), pa]);
    const cosB = op('Gather', [table('rope.cos_lo', step, lo.cos), pb]);
    const sinB = op('Gather', [table('rope.sin_lo', step, lo.sin), pb]);
    // [B, T, half] → [B, 1, T, half] against heads-first x, [B, T, 1, half] against [B, T, heads, D]
    const headAxis = attention === 'ops' ? 1 : 2;
    const cos = op('Unsqueeze', [
      op('Sub', [op('Mul', [cosA, cosB]), op('Mul', [sinA, sinB])]),
      ints([headAxis]),
    ]);
    const sin = op('Unsqueeze', [
      op('Add', [op('Mul', [sinA, cosB]), op('Mul', [cosA, sinB])]),
      ints([headAxis]),
    ]);
    const sc = g.float(scale);
    const [cosQ, sinQ] = [op('Mul', [cos, sc]), op('Mul', [sin, sc])];
    rope = (x, q) => {
      const [cs, sn] = q ? [cosQ, sinQ] : [cos, sin];
      const [x1, x2] = g.node('Split', [x], { axis: 3 }, 2) as [string, string];
      return op(
        'Concat',
        [
          op('Sub', [op('Mul', [x1, cs]), op('Mul', [x2, sn])]),
          op('Add', [op('Mul', [x2, cs]), op('Mul', [x1, sn])]),
        ],
        { axis: 3 },
      );
    };
  } else {
    // the contrib kernels gather from one [P, half] table per function: exactly core's float64 angles
    const t = ropeTables(inv, P, 0);
    fullTables = [table('rope.cos', P, t.cos), table('rope.sin', P, t.sin)];
    const [cs, sn] = fullTables;
    // x [B, T, heads·D] (RotaryEmbedding's 3-d layout)
    rope = (x, q) => op('RotaryEmbedding', [x, pos, cs, sn], { num_heads: q ? H : Hkv, interleaved: 0 }, MS);
  }

  part('mask');
  let bias = '';
  let seqlens = '';
  let total = '';
  const S = op('Gather', [op('Shape', [mask]), scalar(1)]);
  if (attention === 'ops') {
    // Additive attention bias [B, 1, 1, T, S]: key j is visible to the query at t when j ≤ past + t and
    // attention_mask[b, j] is 1 (HF's causal mask over the whole sequence, padding masked too).
    const T = op('Gather', [op('Shape', [ids]), scalar(1)]);
    const pastLen = op('Sub', [S, T]);
    const kpos = op('Unsqueeze', [op('Range', [scalar(0), S, scalar(1)]), ints([0])]);
    const qpos = op('Unsqueeze', [op('Range', [pastLen, S, scalar(1)]), ints([1])]);
    const causal = op('LessOrEqual', [kpos, qpos]);
    const padding = op('Unsqueeze', [op('Cast', [mask], { to: BOOL }), ints([1, 2])]);
    const visible = op('Unsqueeze', [op('And', [causal, padding]), ints([1])]);
    // finfo(float32).min rather than −∞: a fully padded row gets a uniform softmax, not NaN (as HF does).
    bias = op('Where', [visible, g.float(0), g.float(-3.4028234663852886e38)]);
  } else {
    // GroupQueryAttention's lengths: the last valid position of each (right-padded) row, and S
    const len = op('ReduceSum', [mask, ints([1])], { keepdims: 0 });
    seqlens = op('Cast', [op('Sub', [len, scalar(1)])], { to: INT32 });
    total = op('Cast', [S], { to: INT32 });
  }

  const headsFirst = (x: string, heads: number) =>
    op('Transpose', [op('Reshape', [x, ints([0, 0, heads, D])])], { perm: [0, 2, 1, 3] });

  part('embed');
  let x = layerExporter(model.embedding, EMBED_NAME).lookup?.(
    exportContext(g, EMBED_NAME, dtype),
    model.embedding,
    ids,
  );
  if (!x) throw new Error(`the '${model.embedding.kind}' exporter has no lookup`);
  // the block's input norm, and with 'skip' norms the residual branch not yet added to x
  let h = '';
  let branch = '';
  for (let l = 0; l < c.numLayers; l++) {
    const blk = model.blocks[l]!;
    const name = (s: BlockLinear) => `model.layers.${l}.${s}`;
    const lin = (s: BlockLinear, v: string) => linear(name(s), blk.linears[s], v);
    part(`l${l}.norm`);
    const inName = `model.layers.${l}.input_layernorm.weight`;
    if (branch) [h, x] = addNorm(x, branch, blk.inputNorm, inName);
    else h = rmsNorm(x, blk.inputNorm, inName);
    part(`l${l}.qkv`);
    const qkvLayers = (['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] as const).map(
      (s) => blk.linears[s],
    );
    const qkv = packed(`model.layers.${l}.self_attn.qkv_proj`, qkvLayers, h);
    // GroupQueryAttention with its own RoPE takes the packed [B, T, (H + 2·Hkv)·D] as the query
    const packedQkv = qkv !== undefined && attention === 'gqa' && ropeKind === 'gqa';
    const [q0, k0, v0] = packedQkv
      ? [qkv, '', '']
      : qkv
        ? (split(
            qkv,
            qkvLayers.map((x) => x.outFeatures),
          ) as [string, string, string])
        : [lin('self_attn.q_proj', h), lin('self_attn.k_proj', h), lin('self_attn.v_proj', h)];
    let a: string;
    if (attention === 'gqa') {
      part(`l${l}.rope`);
      // [B, T, heads·D] throughout: GroupQueryAttention reads and writes that layout
      let [q, k] = [q0, k0];
      if (ropeKind === 'ops') {
        const back = (y: string, heads: number) => op('Reshape', [y, ints([0, 0, heads * D])]);
        q = back(rope(op('Reshape', [q0, ints([0, 0, H, D])]), true), H);
        k = back(rope(op('Reshape', [k0, ints([0, 0, Hkv, D])]), false), Hkv);
      } else if (ropeKind === 'rotary') [q, k] = [rope(q0, true), rope(k0, false)];
      part(`l${l}.attention`);
      const inputs = [q, k, v0, '', '', seqlens, total];
      if (ropeKind === 'gqa') inputs.push(...fullTables!);
      [a] = g.node(
        'GroupQueryAttention',
        inputs,
        {
          num_heads: H,
          kv_num_heads: Hkv,
          // the 'ops' rope already scaled q
          scale: { f: ropeKind === 'ops' ? 1 : scale },
          ...(ropeKind === 'gqa' ? { do_rotary: 1, rotary_interleaved: 0 } : {}),
        },
        [g.fresh(), g.fresh(), g.fresh()],
        MS,
      ) as [string];
    } else {
      part(`l${l}.rope`);
      let q: string;
      let k: string;
      if (ropeKind === 'ops') {
        q = rope(headsFirst(q0, H), true);
        k = rope(headsFirst(k0, Hkv), false);
      } else {
        q = headsFirst(op('Mul', [rope(q0, true), g.float(scale)]), H);
        k = headsFirst(rope(k0, false), Hkv);
      }
      let v = headsFirst(v0, Hkv);
      part(`l${l}.attention`);
      if (kvCache) {
        const [pk, pv] = past[l]!;
        k = g.node('Concat', [pk, k], { axis: 2 }, [`present.${l}.key`])[0]!;
        v = g.node('Concat', [pv, v], { axis: 2 }, [`present.${l}.value`])[0]!;
      }
      // [B, Hkv, rep, T, D] · [B, Hkv, 1, D, S]: each kv head serves its `rep` query heads by broadcasting.
      const q5 = op('Reshape', [q, ints([0, Hkv, rep, -1, D])]);
      const k5 = op('Transpose', [op('Unsqueeze', [k, ints([2])])], { perm: [0, 1, 2, 4, 3] });
      const p = op('Softmax', [op('Add', [op('MatMul', [q5, k5]), bias])], { axis: -1 });
      const a5 = op('MatMul', [p, op('Unsqueeze', [v, ints([2])])]);
      a = op('Reshape', [
        op('Transpose', [op('Reshape', [a5, ints([0, H, -1, D])])], { perm: [0, 2, 1, 3] }),
        ints([0, 0, H * D]),
      ]);
    }
    part(`l${l}.o_proj`);
    const attnOut = lin('self_attn.o_proj', a);
    part(`l${l}.norm`);
    const [h2, x1] = addNorm(x, attnOut, blk.postNorm, `model.layers.${l}.post_attention_layernorm.weight`);
    part(`l${l}.mlp`);
    const gu = packed(
      `model.layers.${l}.mlp.gate_up_proj`,
      [blk.linears['mlp.gate_proj'], blk.linears['mlp.up_proj']],
      h2,
    );
    const [gate, up] = gu
      ? (split(gu, [blk.linears['mlp.gate_proj'].outFeatures, blk.linears['mlp.up_proj'].outFeatures]) as [
          string,
          string,
        ])
      : [lin('mlp.gate_proj', h2), lin('mlp.up_proj', h2)];
    const m = op('Mul', [op('Mul', [gate, op('Sigmoid', [gate])]), up]);
    const down = lin('mlp.down_proj', m);
    if (norm === 'skip') [x, branch] = [x1, down];
    else x = op('Add', [x1, down]);
  }
  part('final_norm');
  const hidden = branch
    ? addNorm(x, branch, model.norm, FINAL_NORM_NAME)[0]
    : rmsNorm(x, model.norm, FINAL_NORM_NAME);
  part('head');
  const logits = model.lmHead
    ? linear(HEAD_NAME, model.lmHead, hidden)
    : linear(EMBED_NAME, model.embedding, hidden, true);
  part('loss');
  if (head === 'nll') {
    // LogSoftmax then the target's entry: onnxruntime's LogSoftmax is ~5× faster than its ReduceLogSumExp
    // over [2048, 32000] (BENCHMARKS.md), and only [B, T] floats come out of the graph.
    const logp = op('LogSoftmax', [logits], { axis: -1 });
    const picked = op('GatherElements', [logp, op('Unsqueeze', [targets, ints([-1])])], { axis: -1 });
    g.node('Neg', [op('Squeeze', [picked, ints([-1])])], {}, ['nll']);
    g.output('nll', FLOAT, ['batch_size', 'sequence_length']);
  } else {
    g.node('Identity', [logits], {}, ['logits']);
    g.output('logits', FLOAT, ['batch_size', 'sequence_length', V]);
  }
  if (kvCache)
    for (let l = 0; l < c.numLayers; l++)
      for (const kv of ['key', 'value'])
        g.output(`present.${l}.${kv}`, FLOAT, ['batch_size', Hkv, 'total_sequence_length', D]);
  g.scope = undefined;
  return { graph: g, opset: LLAMA_OPSET, opsets: { [MS]: 1 }, irVersion: LLAMA_IR_VERSION };
}
