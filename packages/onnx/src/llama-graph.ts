import {
  type BlockLinear,
  EMBED_NAME,
  FINAL_NORM_NAME,
  HEAD_NAME,
  type LinearLayer,
  type LlamaModel,
  type Parameter,
  ropeInvFreq,
  ropeTables,
} from '@lineage/core';
import { exportContext, isHalf, layerExporter, type WeightDType } from './exporters.js';
import { BOOL, FLOAT, GraphBuilder, INT64 } from './graph-builder.js';

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
}

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
  const dtype = o.dtype ?? 'fp32';
  const c = model.config;
  const { headDim: D, numHeads: H, numKvHeads: Hkv, vocabSize: V } = c;
  const half = D / 2;
  const rep = H / Hkv;
  const g = new GraphBuilder();
  const op = g.op.bind(g);
  const ints = (v: readonly number[]) => g.int64(v);
  const scalar = (v: number) => g.int64([v], true);

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
  const rmsNorm = (x: string, p: Parameter, name: string) => {
    const ms = op('ReduceMean', [op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const r = op('Reciprocal', [op('Sqrt', [op('Add', [ms, g.float(c.rmsNormEps)])])]);
    const w = exportContext(g, name, dtype).weight('weight', p.value.toF32(), [p.shape[0]!], {
      half: isHalf(p.value),
    });
    return op('Mul', [op('Mul', [x, r]), w]);
  };

  // RoPE at position p = a·s + b from two small tables of float64 angles (a·s·θ and b·θ), combined by the
  // angle-addition formulas: ~2 f32 ulps from core's tables, in (P/s + s) rows instead of P.
  const P = c.maxPositions;
  const step = Math.max(1, Math.ceil(Math.sqrt(P)));
  const inv = ropeInvFreq(c);
  const hi = ropeTables(
    inv.map((f) => f * step),
    Math.ceil(P / step),
    0,
  );
  const lo = ropeTables(inv, step, 0);
  const table = (n: string, rows: number, data: Float32Array) => g.initializer(n, FLOAT, [rows, half], data);
  const pa = op('Div', [pos, scalar(step)]);
  const pb = op('Mod', [pos, scalar(step)]);
  const cosA = op('Gather', [table('rope.cos_hi', Math.ceil(P / step), hi.cos), pa]);
  const sinA = op('Gather', [table('rope.sin_hi', Math.ceil(P / step), hi.sin), pa]);
  const cosB = op('Gather', [table('rope.cos_lo', step, lo.cos), pb]);
  const sinB = op('Gather', [table('rope.sin_lo', step, lo.sin), pb]);
  const cos = op('Unsqueeze', [op('Sub', [op('Mul', [cosA, cosB]), op('Mul', [sinA, sinB])]), ints([1])]);
  const sin = op('Unsqueeze', [op('Add', [op('Mul', [sinA, cosB]), op('Mul', [cosA, sinB])]), ints([1])]);
  // q's rotation takes attention's 1/√d too (scaled tables, computed once), so scores need no extra Mul.
  const scale = g.float(1 / Math.sqrt(D));
  const [cosQ, sinQ] = [op('Mul', [cos, scale]), op('Mul', [sin, scale])];
  const rope = (x: string, [cs, sn]: readonly [string, string]) => {
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

  // Additive attention bias [B, 1, 1, T, S]: key j is visible to the query at t when j ≤ past + t and
  // attention_mask[b, j] is 1 (HF's causal mask over the whole sequence, padding masked too).
  const T = op('Gather', [op('Shape', [ids]), scalar(1)]);
  const S = op('Gather', [op('Shape', [mask]), scalar(1)]);
  const pastLen = op('Sub', [S, T]);
  const kpos = op('Unsqueeze', [op('Range', [scalar(0), S, scalar(1)]), ints([0])]);
  const qpos = op('Unsqueeze', [op('Range', [pastLen, S, scalar(1)]), ints([1])]);
  const causal = op('LessOrEqual', [kpos, qpos]);
  const padding = op('Unsqueeze', [op('Cast', [mask], { to: BOOL }), ints([1, 2])]);
  const visible = op('Unsqueeze', [op('And', [causal, padding]), ints([1])]);
  // finfo(float32).min rather than −∞: a fully padded row gets a uniform softmax, not NaN (as HF does).
  const bias = op('Where', [visible, g.float(0), g.float(-3.4028234663852886e38)]);

  const headsFirst = (x: string, heads: number) =>
    op('Transpose', [op('Reshape', [x, ints([0, 0, heads, D])])], { perm: [0, 2, 1, 3] });

  let x = layerExporter(model.embedding, EMBED_NAME).lookup?.(
    exportContext(g, EMBED_NAME, dtype),
    model.embedding,
    ids,
  );
  if (!x) throw new Error(`the '${model.embedding.kind}' exporter has no lookup`);
  for (let l = 0; l < c.numLayers; l++) {
    const blk = model.blocks[l]!;
    const name = (s: BlockLinear) => `model.layers.${l}.${s}`;
    const lin = (s: BlockLinear, v: string) => linear(name(s), blk.linears[s], v);
    const h = rmsNorm(x, blk.inputNorm, `model.layers.${l}.input_layernorm.weight`);
    const q = rope(headsFirst(lin('self_attn.q_proj', h), H), [cosQ, sinQ]);
    let k = rope(headsFirst(lin('self_attn.k_proj', h), Hkv), [cos, sin]);
    let v = headsFirst(lin('self_attn.v_proj', h), Hkv);
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
    const a = op('Reshape', [
      op('Transpose', [op('Reshape', [a5, ints([0, H, -1, D])])], { perm: [0, 2, 1, 3] }),
      ints([0, 0, H * D]),
    ]);
    const x1 = op('Add', [x, lin('self_attn.o_proj', a)]);
    const h2 = rmsNorm(x1, blk.postNorm, `model.layers.${l}.post_attention_layernorm.weight`);
    const gate = lin('mlp.gate_proj', h2);
    const m = op('Mul', [op('Mul', [gate, op('Sigmoid', [gate])]), lin('mlp.up_proj', h2)]);
    x = op('Add', [x1, lin('mlp.down_proj', m)]);
  }
  const hidden = rmsNorm(x, model.norm, FINAL_NORM_NAME);
  const logits = model.lmHead
    ? linear(HEAD_NAME, model.lmHead, hidden)
    : linear(EMBED_NAME, model.embedding, hidden, true);
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
  return { graph: g, opset: LLAMA_OPSET, opsets: { [MS]: 1 }, irVersion: LLAMA_IR_VERSION };
}
