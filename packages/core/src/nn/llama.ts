import type { Tensor } from '../backend/backend.js';
import type { Ops } from '../backend/ops.js';
import { HostTensor } from '../tensor/host-tensor.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LineageError } from '../util/errors.js';
import type { LlamaConfig } from './config.js';
import { getLinearKind, type Json, type LayerStats, type LinearLayer } from './layer.js';
import { Linear } from './linear.js';
import { Parameter } from './parameter.js';
import { ropeInvFreq, ropeTables } from './rope.js';

/** The linear slots of a decoder block, by their Hugging Face names. */
export const BLOCK_LINEARS = [
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
] as const;
export type BlockLinear = (typeof BLOCK_LINEARS)[number];

/** Each block linear's [out, in] features and whether `config` gives it a bias. */
export function blockLinearShapes(config: LlamaConfig): Record<BlockLinear, [number, number, boolean]> {
  const { hiddenSize: Dm, headDim: D, numHeads: H, numKvHeads: Hkv, intermediateSize: F } = config;
  return {
    'self_attn.q_proj': [H * D, Dm, config.qkvBias],
    'self_attn.k_proj': [Hkv * D, Dm, config.qkvBias],
    'self_attn.v_proj': [Hkv * D, Dm, config.qkvBias],
    'self_attn.o_proj': [Dm, H * D, config.oBias],
    'mlp.gate_proj': [F, Dm, config.mlpBias],
    'mlp.up_proj': [F, Dm, config.mlpBias],
    'mlp.down_proj': [Dm, F, config.mlpBias],
  };
}

export interface DecoderBlock {
  inputNorm: Parameter;
  postNorm: Parameter;
  linears: Record<BlockLinear, LinearLayer>;
}

/** Keys and values of past positions, per layer ([B, S, Hkv, D] each), for incremental decoding. */
export class KVCache {
  keys: (Tensor | undefined)[] = [];
  values: (Tensor | undefined)[] = [];
  length = 0;

  constructor(private ops: Ops) {}

  dispose(): void {
    this.ops.dispose(...this.keys, ...this.values);
    this.keys = [];
    this.values = [];
    this.length = 0;
  }
}

/** RoPE tables of one forward pass (see LlamaModel.rope). */
export interface BlockRope {
  cos: Tensor;
  sin: Tensor;
  offset: number;
}

/**
 * Activation taps inside a block, for calibration: `block.input`, `input_layernorm.output` (the input of
 * q/k/v), `self_attn.o_proj.input`, `post_attention_layernorm.output` (the input of gate/up),
 * `mlp.down_proj.input`, `block.output`.
 */
export type ActivationName =
  | 'block.input'
  | 'input_layernorm.output'
  | 'self_attn.o_proj.input'
  | 'post_attention_layernorm.output'
  | 'mlp.down_proj.input'
  | 'block.output';

export interface BlockOptions {
  cache?: KVCache;
  capture?: (name: ActivationName, t: Tensor) => Promise<void>;
}

export interface LayerReport extends LayerStats {
  name: string;
  kind: string;
  shape: [number, number];
}

export interface ModelStats extends LayerStats {
  layers: LayerReport[];
}

/**
 * A Llama-family decoder (Llama 1/2/3, Mistral, Qwen2) written once over the backend op contract.
 * Tensor names follow Hugging Face (`model.layers.3.mlp.down_proj.weight`).
 */
export class LlamaModel {
  private invFreq: Float64Array;
  /**
   * Where this model comes from (a method's lineage record: parent, method, ranks, tokens, …). Saved under
   * config.json's `lineage` key and read back by loadModel.
   */
  provenance: Record<string, Json> | undefined;

  constructor(
    readonly config: LlamaConfig,
    readonly embed: Parameter,
    readonly blocks: DecoderBlock[],
    readonly norm: Parameter,
    /** The output head; undefined when tied to the embedding. */
    public lmHead: LinearLayer | undefined,
    public tokenizer?: Tokenizer,
  ) {
    this.invFreq = ropeInvFreq(config);
  }

  /** Every linear layer by name: `model.layers.{i}.{slot}` then `lm_head` when untied. */
  linearLayers(): [string, LinearLayer][] {
    const out: [string, LinearLayer][] = [];
    this.blocks.forEach((b, i) => {
      for (const s of BLOCK_LINEARS) out.push([`model.layers.${i}.${s}`, b.linears[s]]);
    });
    if (this.lmHead) out.push(['lm_head', this.lmHead]);
    return out;
  }

  getLinear(name: string): LinearLayer {
    const found = this.linearLayers().find(([n]) => n === name);
    if (!found) throw new LineageError(`no linear layer named '${name}'`);
    return found[1];
  }

  /** Replaces a linear layer with another of the same [out, in] (any kind). */
  setLinear(name: string, layer: LinearLayer): void {
    const old = this.getLinear(name);
    if (old.inFeatures !== layer.inFeatures || old.outFeatures !== layer.outFeatures) {
      throw new LineageError(
        `setLinear '${name}': replacement maps ${layer.inFeatures}→${layer.outFeatures}, the slot needs ${old.inFeatures}→${old.outFeatures}`,
      );
    }
    for (const p of old.parameters().values()) p.release();
    if (name === 'lm_head') {
      this.lmHead = layer;
      return;
    }
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name)!;
    this.blocks[Number(m[1])]!.linears[m[2] as BlockLinear] = layer;
  }

  /**
   * An independent copy: new Parameters around the same stored tensors. Sharing is safe because a
   * parameter's value is replaced, never written in place (optimisers and methods assign `p.value`).
   * Layers are rebuilt through their kind's registered loader, so every layer kind clones.
   */
  clone(): LlamaModel {
    const param = (p: Parameter) => new Parameter(p.value, p.trainable);
    const linear = (name: string, l: LinearLayer): LinearLayer => {
      const tensors = new Map([...l.parameters()].map(([k, p]) => [k, p.value]));
      const copy = getLinearKind(l.kind).load(tensors, l.meta(), name, [l.outFeatures, l.inFeatures]);
      for (const [k, p] of l.parameters()) {
        const q = copy.parameters().get(k);
        if (q) q.trainable = p.trainable;
      }
      return copy;
    };
    const blocks = this.blocks.map((b, i) => ({
      inputNorm: param(b.inputNorm),
      postNorm: param(b.postNorm),
      linears: Object.fromEntries(
        BLOCK_LINEARS.map((s) => [s, linear(`model.layers.${i}.${s}`, b.linears[s])]),
      ) as Record<BlockLinear, LinearLayer>,
    }));
    const m = new LlamaModel(
      this.config,
      param(this.embed),
      blocks,
      param(this.norm),
      this.lmHead ? linear('lm_head', this.lmHead) : undefined,
      this.tokenizer,
    );
    if (this.provenance) m.provenance = structuredClone(this.provenance);
    return m;
  }

  /** A copy whose every linear layer is dense (`linear`, f32 weights of what each layer computes). */
  densified(): LlamaModel {
    const m = this.clone();
    for (const [name, l] of m.linearLayers()) {
      if (l.kind === 'linear') continue;
      const w = new HostTensor('f32', [l.outFeatures, l.inFeatures], l.denseWeight());
      const b = l.denseBias();
      m.setLinear(name, new Linear(w, b ? new HostTensor('f32', [b.length], b) : undefined));
    }
    return m;
  }

  /** All stored tensors by checkpoint name (stored dtypes, no copies). */
  stateDict(): Map<string, HostTensor> {
    const sd = new Map<string, HostTensor>();
    sd.set('model.embed_tokens.weight', this.embed.value);
    this.blocks.forEach((b, i) => {
      sd.set(`model.layers.${i}.input_layernorm.weight`, b.inputNorm.value);
      sd.set(`model.layers.${i}.post_attention_layernorm.weight`, b.postNorm.value);
    });
    for (const [name, layer] of this.linearLayers()) {
      for (const [suffix, p] of layer.parameters()) sd.set(`${name}.${suffix}`, p.value);
    }
    sd.set('model.norm.weight', this.norm.value);
    return new Map([...sd].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** Layers that are not dense `linear`, with what is needed to rebuild them (goes into config.json). */
  layerKinds(): Record<string, { kind: string; meta: Json }> {
    const out: Record<string, { kind: string; meta: Json }> = {};
    for (const [name, l] of this.linearLayers())
      if (l.kind !== 'linear') out[name] = { kind: l.kind, meta: l.meta() };
    return out;
  }

  /** Parameter and byte counts as stored, per linear layer and in total (norms and embeddings included). */
  stats(): ModelStats {
    const layers: LayerReport[] = this.linearLayers().map(([name, l]) => ({
      name,
      kind: l.kind,
      shape: [l.outFeatures, l.inFeatures],
      ...l.stats(),
    }));
    let params = 0;
    let bytes = 0;
    for (const t of this.stateDict().values()) {
      params += t.size;
      bytes += t.byteLength;
    }
    return { params, bytes, layers };
  }

  /** Frees every device copy of every parameter. */
  release(): void {
    this.embed.release();
    this.norm.release();
    for (const b of this.blocks) {
      b.inputNorm.release();
      b.postNorm.release();
    }
    for (const [, l] of this.linearLayers()) for (const p of l.parameters().values()) p.release();
  }

  /** Checks a batch of ids against the context, sliding window and vocabulary. */
  private checkIds(ids: Int32Array, batch: number, offset: number): number {
    const c = this.config;
    const T = ids.length / batch;
    if (!Number.isInteger(T) || T < 1)
      throw new RangeError(`${ids.length} ids do not split into ${batch} rows`);
    if (offset + T > c.maxPositions) {
      throw new LineageError(
        `sequence of ${offset + T} tokens exceeds the model's context of ${c.maxPositions}`,
      );
    }
    if (c.slidingWindow !== undefined && offset + T > c.slidingWindow) {
      throw new LineageError(
        `sequence of ${offset + T} tokens exceeds the sliding window of ${c.slidingWindow}`,
      );
    }
    for (const id of ids) {
      if (id < 0 || id >= c.vocabSize)
        throw new LineageError(`token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
    }
    return T;
  }

  /** Token embeddings [B, T, D] for ids [B·T]. */
  async embedTokens(ops: Ops, ids: Int32Array, batch: number): Promise<Tensor> {
    const T = this.checkIds(ids, batch, 0);
    return ops.tidy(async () => ops.gather(this.embed.tensor(ops.backend), ops.upload(ids, [batch, T])));
  }

  /** RoPE cos/sin tables for T positions starting at `offset` (pass them to every `block` call of one forward). */
  rope(ops: Ops, T: number, offset = 0): BlockRope {
    const tables = ropeTables(this.invFreq, T, offset);
    const half = this.config.headDim / 2;
    return { cos: ops.upload(tables.cos, [T, half]), sin: ops.upload(tables.sin, [T, half]), offset };
  }

  /**
   * One decoder block: x [B, T, D] → [B, T, D]. `hooks.capture` sees the block's intermediate activations
   * (for calibration statistics); the tensors it receives are freed after the block, so read them inside.
   */
  async block(ops: Ops, l: number, x: Tensor, rope: BlockRope, options: BlockOptions = {}): Promise<Tensor> {
    const c = this.config;
    const blk = this.blocks[l];
    if (!blk) throw new RangeError(`block ${l} does not exist (the model has ${this.blocks.length})`);
    const L = blk.linears;
    const b = ops.backend;
    const { headDim: D, numHeads: H, numKvHeads: Hkv } = c;
    const [batch, T] = x.shape as [number, number, number];
    const cache = options.cache;
    const capture = options.capture;
    return ops.tidy(async () => {
      await capture?.('block.input', x);
      const h = await ops.rmsNorm(x, blk.inputNorm.tensor(b), c.rmsNormEps);
      await capture?.('input_layernorm.output', h);
      const q = await ops.rope(
        await ops.reshape(await L['self_attn.q_proj'].forward(ops, h), [batch, T, H, D]),
        rope.cos,
        rope.sin,
      );
      let k = await ops.rope(
        await ops.reshape(await L['self_attn.k_proj'].forward(ops, h), [batch, T, Hkv, D]),
        rope.cos,
        rope.sin,
      );
      let v = await ops.reshape(await L['self_attn.v_proj'].forward(ops, h), [batch, T, Hkv, D]);
      if (cache) {
        const pk = cache.keys[l];
        const pv = cache.values[l];
        if (pk && pv) {
          k = await ops.concat([pk, k], 1);
          v = await ops.concat([pv, v], 1);
          ops.dispose(pk, pv);
        }
        cache.keys[l] = ops.keep(k);
        cache.values[l] = ops.keep(v);
      }
      const a = await ops.attention(q, k, v, { scale: 1 / Math.sqrt(D), causal: true, offset: rope.offset });
      await capture?.('self_attn.o_proj.input', a);
      const x1 = await ops.add(x, await L['self_attn.o_proj'].forward(ops, a));
      const h2 = await ops.rmsNorm(x1, blk.postNorm.tensor(b), c.rmsNormEps);
      await capture?.('post_attention_layernorm.output', h2);
      const g = await ops.unary('silu', await L['mlp.gate_proj'].forward(ops, h2));
      const u = await L['mlp.up_proj'].forward(ops, h2);
      const m = await ops.mul(g, u);
      await capture?.('mlp.down_proj.input', m);
      const out = await ops.add(x1, await L['mlp.down_proj'].forward(ops, m));
      await capture?.('block.output', out);
      return out;
    });
  }

  /** The final RMSNorm. */
  async finalNorm(ops: Ops, x: Tensor): Promise<Tensor> {
    return ops.rmsNorm(x, this.norm.tensor(ops.backend), this.config.rmsNormEps);
  }

  /** Final hidden states (after the last norm): ids [B·T] → [B, T, D]. Appends to `cache` when given. */
  async hidden(ops: Ops, ids: Int32Array, batch: number, cache?: KVCache): Promise<Tensor> {
    const offset = cache?.length ?? 0;
    const T = this.checkIds(ids, batch, offset);
    return ops.tidy(async () => {
      const rope = this.rope(ops, T, offset);
      let x = await ops.gather(this.embed.tensor(ops.backend), ops.upload(ids, [batch, T]));
      for (let l = 0; l < this.blocks.length; l++) {
        const prev = x;
        x = await this.block(ops, l, x, rope, cache ? { cache } : {});
        ops.dispose(prev);
      }
      if (cache) cache.length = offset + T;
      return this.finalNorm(ops, x);
    });
  }

  /** Logits for hidden states [..., D] → [..., V] (the tied embedding or the head). */
  async logits(ops: Ops, hidden: Tensor): Promise<Tensor> {
    if (this.lmHead) return this.lmHead.forward(ops, hidden);
    return ops.matmul(hidden, this.embed.tensor(ops.backend), { transposeB: true });
  }

  /** Logits [B, T, V] for ids [B·T]. */
  async forward(ops: Ops, ids: Int32Array, batch = 1, cache?: KVCache): Promise<Tensor> {
    return ops.tidy(async () => this.logits(ops, await this.hidden(ops, ids, batch, cache)));
  }
}
