import type { LlamaConfig } from '../nn/config.js';
import type { LlamaModel } from '../nn/llama.js';

/*
 * An independent float64 Llama forward and hand-written structured pruning over plain dense weights, as
 * oracles for the model and the surgery primitives: they use neither Ops, nor the model class, nor
 * LinearLayer.select, only loops over row-major arrays keyed by Hugging Face tensor names.
 */

/** A dense row-major tensor [rows, cols] (a vector is [1, n]). */
export interface DenseTensor {
  rows: number;
  cols: number;
  data: Float64Array;
}

/** Dense float64 weights by checkpoint name (linear layers as `${layer}.weight` / `.bias`, whatever their kind). */
export type DenseWeights = Map<string, DenseTensor>;

/** A model's weights as the dense matrices its layers compute (`denseWeight()` of each linear), in float64. */
export function denseWeightsOf(model: LlamaModel): DenseWeights {
  const out: DenseWeights = new Map();
  const put = (name: string, rows: number, cols: number, v: Float32Array) =>
    out.set(name, { rows, cols, data: Float64Array.from(v) });
  const Dm = model.config.hiddenSize;
  put('model.embed_tokens.weight', model.config.vocabSize, Dm, model.embedding.denseWeight());
  put('model.norm.weight', 1, Dm, model.norm.value.toF32());
  model.blocks.forEach((b, l) => {
    put(`model.layers.${l}.input_layernorm.weight`, 1, Dm, b.inputNorm.value.toF32());
    put(`model.layers.${l}.post_attention_layernorm.weight`, 1, Dm, b.postNorm.value.toF32());
  });
  for (const [name, layer] of model.linearLayers()) {
    put(`${name}.weight`, layer.outFeatures, layer.inFeatures, layer.denseWeight());
    const bias = layer.denseBias();
    if (bias) put(`${name}.bias`, 1, bias.length, bias);
  }
  return out;
}

function get(w: DenseWeights, name: string): DenseTensor {
  const t = w.get(name);
  if (!t) throw new Error(`reference: no weight '${name}'`);
  return t;
}

/** y = W·x (+ b) for W [out, in]. */
function matvec(W: DenseTensor, x: Float64Array, b?: DenseTensor): Float64Array {
  const y = new Float64Array(W.rows);
  for (let i = 0; i < W.rows; i++) {
    let s = b ? b.data[i]! : 0;
    const o = i * W.cols;
    for (let j = 0; j < W.cols; j++) s += W.data[o + j]! * x[j]!;
    y[i] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: DenseTensor, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  const s = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * s * w.data[i]!);
}

/** Rotate-half RoPE (Hugging Face layout) of every head of `x` [heads·D] at position t, in place. */
function rope(x: Float64Array, heads: number, D: number, t: number, theta: number): void {
  const half = D / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      const a = t / theta ** ((2 * j) / D);
      const c = Math.cos(a);
      const s = Math.sin(a);
      const p = x[h * D + j]!;
      const q = x[h * D + j + half]!;
      x[h * D + j] = p * c - q * s;
      x[h * D + j + half] = q * c + p * s;
    }
  }
}

/**
 * Logits [T·V] of one sequence, in float64, by the textbook Llama forward (no RoPE scaling, no sliding
 * window): RMSNorm, q/k/v with optional biases, RoPE, causal attention where query head h reads kv head
 * ⌊h / (H / Hkv)⌋, o, SwiGLU, residuals, final norm, head (the embedding when there is no `lm_head.weight`).
 */
export function referenceLogits(config: LlamaConfig, w: DenseWeights, ids: readonly number[]): Float64Array {
  const { hiddenSize: Dm, numHeads: H, numKvHeads: Hkv, headDim: D, rmsNormEps: eps, ropeTheta } = config;
  const G = H / Hkv;
  const T = ids.length;
  const embed = get(w, 'model.embed_tokens.weight');
  let xs = ids.map((id) => embed.data.slice(id * Dm, (id + 1) * Dm));
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    const lin = (s: string, x: Float64Array) =>
      matvec(get(w, `${p}.${s}.weight`), x, w.get(`${p}.${s}.bias`));
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    xs.forEach((x, t) => {
      const h = rmsNorm(x, get(w, `${p}.input_layernorm.weight`), eps);
      const q = lin('self_attn.q_proj', h);
      const k = lin('self_attn.k_proj', h);
      rope(q, H, D, t, ropeTheta);
      rope(k, Hkv, D, t, ropeTheta);
      qs.push(q);
      ks.push(k);
      vs.push(lin('self_attn.v_proj', h));
    });
    xs = xs.map((x, t) => {
      const a = new Float64Array(H * D);
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / G);
        const scores = new Float64Array(t + 1);
        let m = Number.NEGATIVE_INFINITY;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qs[t]![h * D + d]! * ks[s]![g * D + d]!;
          scores[s] = dot / Math.sqrt(D);
          m = Math.max(m, scores[s]!);
        }
        let z = 0;
        for (let s = 0; s <= t; s++) {
          scores[s] = Math.exp(scores[s]! - m);
          z += scores[s]!;
        }
        for (let s = 0; s <= t; s++)
          for (let d = 0; d < D; d++) a[h * D + d] = a[h * D + d]! + (scores[s]! / z) * vs[s]![g * D + d]!;
      }
      const o = lin('self_attn.o_proj', a);
      const x1 = x.map((v, i) => v + o[i]!);
      const h2 = rmsNorm(x1, get(w, `${p}.post_attention_layernorm.weight`), eps);
      const gate = lin('mlp.gate_proj', h2);
      const up = lin('mlp.up_proj', h2);
      const m = gate.map((v, i) => (v / (1 + Math.exp(-v))) * up[i]!);
      const down = lin('mlp.down_proj', m);
      return x1.map((v, i) => v + down[i]!);
    });
  }
  const head = w.get('lm_head.weight') ?? embed;
  const out = new Float64Array(T * head.rows);
  xs.forEach((x, t) => {
    out.set(matvec(head, rmsNorm(x, get(w, 'model.norm.weight'), eps)), t * head.rows);
  });
  return out;
}

/** What a structured pruning keeps: per-layer indices refer to the parent's layers. */
export interface PrunePlan {
  /** Decoder layers kept, in order. */
  layers?: readonly number[];
  /** Per parent layer, the query heads kept (all KV groups kept; heads ordered by group, then as given). */
  heads?: readonly (readonly number[])[];
  /** Per parent layer, the KV groups kept (with all their query heads). */
  kvGroups?: readonly (readonly number[])[];
  /** Per parent layer, the FFN neurons kept. */
  ffn?: readonly (readonly number[])[];
  /** Hidden channels kept (every layer). */
  hidden?: readonly number[];
}

function pick(t: DenseTensor, rows?: readonly number[], cols?: readonly number[]): DenseTensor {
  const R = rows ?? [...Array(t.rows).keys()];
  const C = cols ?? [...Array(t.cols).keys()];
  const data = new Float64Array(R.length * C.length);
  R.forEach((r, i) => {
    C.forEach((c, j) => {
      data[i * C.length + j] = t.data[r * t.cols + c]!;
    });
  });
  return { rows: R.length, cols: C.length, data };
}

/**
 * The plan applied by hand to dense weights: every tensor's rows and columns picked with explicit index
 * lists (query rows of kept groups' heads, k/v rows of kept groups, FFN rows/columns, hidden columns/rows),
 * layers renumbered. Returns the pruned config and weights.
 */
export function pruneByHand(
  config: LlamaConfig,
  w: DenseWeights,
  plan: PrunePlan,
): { config: LlamaConfig; weights: DenseWeights } {
  const { numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, hiddenSize: Dm } = config;
  const G = H / Hkv;
  const layers = plan.layers ?? [...Array(config.numLayers).keys()];
  const hidden = plan.hidden ?? [...Array(Dm).keys()];
  const out: DenseWeights = new Map();
  out.set('model.embed_tokens.weight', pick(get(w, 'model.embed_tokens.weight'), undefined, hidden));
  out.set('model.norm.weight', pick(get(w, 'model.norm.weight'), undefined, hidden));
  if (w.has('lm_head.weight')) out.set('lm_head.weight', pick(get(w, 'lm_head.weight'), undefined, hidden));
  let kvKept = Hkv;
  let qKept = H;
  let ffKept = F;
  layers.forEach((src, l) => {
    const groups = plan.kvGroups?.[src] ?? [...Array(Hkv).keys()];
    const ffn = plan.ffn?.[src] ?? [...Array(F).keys()];
    kvKept = groups.length;
    ffKept = ffn.length;
    const kvRows: number[] = [];
    const qRows: number[] = [];
    for (const g of groups) {
      for (let d = 0; d < D; d++) kvRows.push(g * D + d);
      const heads =
        plan.heads?.[src]?.filter((h) => Math.floor(h / G) === g) ??
        [...Array(G).keys()].map((j) => g * G + j);
      for (const h of heads) for (let d = 0; d < D; d++) qRows.push(h * D + d);
    }
    qKept = qRows.length / D;
    const from = (s: string) => `model.layers.${src}.${s}`;
    const to = (s: string) => `model.layers.${l}.${s}`;
    const set = (
      s: string,
      rows?: readonly number[],
      cols?: readonly number[],
      biasRows?: readonly number[],
    ) => {
      out.set(to(`${s}.weight`), pick(get(w, from(`${s}.weight`)), rows, cols));
      const b = w.get(from(`${s}.bias`));
      if (b) out.set(to(`${s}.bias`), pick(b, undefined, biasRows));
    };
    out.set(to('input_layernorm.weight'), pick(get(w, from('input_layernorm.weight')), undefined, hidden));
    out.set(
      to('post_attention_layernorm.weight'),
      pick(get(w, from('post_attention_layernorm.weight')), undefined, hidden),
    );
    set('self_attn.q_proj', qRows, hidden, qRows);
    set('self_attn.k_proj', kvRows, hidden, kvRows);
    set('self_attn.v_proj', kvRows, hidden, kvRows);
    set('self_attn.o_proj', hidden, qRows, hidden);
    set('mlp.gate_proj', ffn, hidden, ffn);
    set('mlp.up_proj', ffn, hidden, ffn);
    set('mlp.down_proj', hidden, ffn, hidden);
  });
  return {
    config: {
      ...config,
      hiddenSize: hidden.length,
      numLayers: layers.length,
      numKvHeads: kvKept,
      numHeads: qKept,
      intermediateSize: ffKept,
    },
    weights: out,
  };
}
