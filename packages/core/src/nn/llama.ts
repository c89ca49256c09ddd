import type { Tensor } from '../backend/backend.js';
import type { Ops } from '../backend/ops.js';
import { HostTensor } from '../tensor/host-tensor.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LineageError } from '../util/errors.js';
import type { LlamaConfig } from './config.js';
import { carryTrainable, getLinearKind, type Json, type LayerStats, type LinearLayer } from './layer.js';
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

/** Checkpoint names of the slots that are not block linears. */
/** The embedding slot: a layer of [vocab, hidden] (its dense form stores `model.embed_tokens.weight`). */
export const EMBED_NAME = 'model.embed_tokens';
export const FINAL_NORM_NAME = 'model.norm.weight';
export const HEAD_NAME = 'lm_head';

/**
 * One slot of a model's layout: the embedding, a norm weight or a linear layer, with its checkpoint name
 * and the shape the config implies. The embedding and linear slots name a layer (`model.embed_tokens`,
 * `model.layers.3.mlp.up_proj`) whose stored tensors are `${name}.${suffix}`; norms name their one tensor.
 * The embedding is a layer of [vocab, hidden] features whose rows are looked up (`LinearLayer.lookup`) and
 * whose forward is the tied head.
 */
export type SlotSpec =
  | { kind: 'embed'; name: string; out: number; in: number }
  | { kind: 'norm'; name: string; shape: [number]; layer?: number; which: 'input' | 'post' | 'final' }
  | {
      kind: 'linear';
      name: string;
      layer?: number;
      slot: BlockLinear | 'lm_head';
      out: number;
      in: number;
      bias: boolean;
    };

/**
 * Every slot of a model of `config`, in one fixed order: the embedding, each block's two norms, each block's
 * linears, the head (when `untiedHead`), the final norm. This is the one walk: the model's parameters,
 * state dict, counts, release and clone, the loader and the surgery primitives all go through it.
 */
export function modelLayout(config: LlamaConfig, untiedHead: boolean): SlotSpec[] {
  const { hiddenSize: Dm, vocabSize: V, numLayers } = config;
  const shapes = blockLinearShapes(config);
  const out: SlotSpec[] = [{ kind: 'embed', name: EMBED_NAME, out: V, in: Dm }];
  for (let l = 0; l < numLayers; l++) {
    out.push(
      {
        kind: 'norm',
        name: `model.layers.${l}.input_layernorm.weight`,
        shape: [Dm],
        layer: l,
        which: 'input',
      },
      {
        kind: 'norm',
        name: `model.layers.${l}.post_attention_layernorm.weight`,
        shape: [Dm],
        layer: l,
        which: 'post',
      },
    );
  }
  for (let l = 0; l < numLayers; l++) {
    for (const s of BLOCK_LINEARS) {
      const [o, i, bias] = shapes[s];
      out.push({ kind: 'linear', name: `model.layers.${l}.${s}`, layer: l, slot: s, out: o, in: i, bias });
    }
  }
  if (untiedHead) out.push({ kind: 'linear', name: HEAD_NAME, slot: 'lm_head', out: V, in: Dm, bias: false });
  out.push({ kind: 'norm', name: FINAL_NORM_NAME, shape: [Dm], which: 'final' });
  return out;
}

/** What fills a slot: a Parameter for a norm, a layer for the embedding and the linear slots. */
export type SlotValue = Parameter | LinearLayer;

function shapeError(spec: SlotSpec, got: readonly number[]): LineageError {
  const want = spec.kind === 'norm' ? spec.shape : [spec.out, spec.in];
  return new LineageError(`'${spec.name}' has shape [${got}], the config implies [${want}]`);
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

/** Checks that `layer` can be the embedding of `config`: [vocab, hidden] features and a row lookup. */
function checkEmbedding(layer: LinearLayer, config: LlamaConfig): void {
  if (layer.outFeatures !== config.vocabSize || layer.inFeatures !== config.hiddenSize)
    throw new LineageError(
      `an embedding of [${layer.outFeatures}, ${layer.inFeatures}] does not fit a model of vocabulary ${config.vocabSize} and width ${config.hiddenSize}`,
    );
  if (!layer.lookup)
    throw new LineageError(`a '${layer.kind}' layer cannot be an embedding (its kind has no row lookup)`);
}

/** A dense `linear` copy of any layer (f32 weights of what it computes). */
function denseLinear(l: LinearLayer): Linear {
  const w = new HostTensor('f32', [l.outFeatures, l.inFeatures], l.denseWeight());
  const b = l.denseBias();
  return new Linear(w, b ? new HostTensor('f32', [b.length], b) : undefined);
}

/** A new Parameter around the same stored tensor (values are replaced, never written in place). */
function copyParameter(p: Parameter): Parameter {
  return new Parameter(p.value, p.trainable);
}

/** A copy of a linear layer of any kind, rebuilt through its kind's registered loader. */
function cloneLinear(name: string, l: LinearLayer): LinearLayer {
  const tensors = new Map([...l.parameters()].map(([k, p]) => [k, p.value]));
  const copy = getLinearKind(l.kind).load(tensors, l.meta(), name, [l.outFeatures, l.inFeatures]);
  carryTrainable(l, copy);
  return copy;
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
    /** The embedding: a layer of [vocab, hidden] (a dense table may be given as its Parameter). */
    embed: Parameter | LinearLayer,
    readonly blocks: DecoderBlock[],
    readonly norm: Parameter,
    /** The output head; undefined when tied to the embedding. */
    public lmHead: LinearLayer | undefined,
    public tokenizer?: Tokenizer,
  ) {
    this.invFreq = ropeInvFreq(config);
    // Not checked here (fromSlots and setEmbedding check): views such as a calibration's one-block model
    // pass a stub table.
    this.embedding = embed instanceof Parameter ? new Linear(embed) : embed;
  }

  /** The embedding slot's layer: rows looked up for tokens; its forward is the tied head. */
  embedding: LinearLayer;

  /**
   * The embedding table's Parameter when the embedding is a dense `linear` layer (the usual case); another
   * kind (e.g. a factored table) has no single table: use `embedding`.
   */
  get embed(): Parameter {
    const e = this.embedding;
    if (!(e instanceof Linear))
      throw new LineageError(`the embedding is a '${e.kind}' layer, not one table; use model.embedding`);
    return e.weight;
  }

  /** Replaces the embedding with a layer of the same [vocab, hidden] (any kind that can look rows up). */
  setEmbedding(layer: LinearLayer): void {
    checkEmbedding(layer, this.config);
    for (const p of this.embedding.parameters().values()) p.release();
    this.embedding = layer;
  }

  /**
   * A copy whose head is its own layer (a copy of the embedding, of the same kind) instead of the tied
   * embedding; the config records it (tie_word_embeddings false). Untied models are returned as copies.
   */
  untied(): LlamaModel {
    if (this.lmHead) return this.clone();
    return this.copy({ ...this.config, tieWordEmbeddings: false }, true, (spec) =>
      spec.kind === 'linear' && spec.slot === 'lm_head' ? cloneLinear(EMBED_NAME, this.embedding) : undefined,
    );
  }

  /**
   * A model of `config` whose slots `fill` provides, checked against the shapes the config implies (the
   * head slot exists when `untiedHead`). Loaders, clone and the surgery primitives build models this way.
   */
  static fromSlots(
    config: LlamaConfig,
    untiedHead: boolean,
    fill: (spec: SlotSpec) => SlotValue,
    tokenizer?: Tokenizer,
  ): LlamaModel {
    let embed: LinearLayer | undefined;
    let norm: Parameter | undefined;
    let head: LinearLayer | undefined;
    const blocks = Array.from({ length: config.numLayers }, () => ({
      linears: {} as Record<BlockLinear, LinearLayer>,
    })) as DecoderBlock[];
    for (const spec of modelLayout(config, untiedHead)) {
      const v = fill(spec);
      if (spec.kind === 'embed') {
        embed = v as LinearLayer;
        checkEmbedding(embed, config);
        continue;
      }
      if (spec.kind === 'linear') {
        const l = v as LinearLayer;
        if (l.outFeatures !== spec.out || l.inFeatures !== spec.in)
          throw shapeError(spec, [l.outFeatures, l.inFeatures]);
        if (spec.slot === 'lm_head') head = l;
        else blocks[spec.layer!]!.linears[spec.slot] = l;
        continue;
      }
      const p = v as Parameter;
      if (p.shape.length !== spec.shape.length || p.shape.some((d, i) => d !== spec.shape[i]))
        throw shapeError(spec, p.shape);
      if (spec.which === 'final') norm = p;
      else if (spec.which === 'input') blocks[spec.layer!]!.inputNorm = p;
      else blocks[spec.layer!]!.postNorm = p;
    }
    return new LlamaModel(config, embed!, blocks, norm!, head, tokenizer);
  }

  /** This model's layout (see modelLayout). */
  layout(): SlotSpec[] {
    return modelLayout(this.config, this.lmHead !== undefined);
  }

  /** What fills `spec` in this model. */
  slot(spec: SlotSpec): SlotValue {
    if (spec.kind === 'embed') return this.embedding;
    if (spec.kind === 'linear') {
      if (spec.slot === 'lm_head') {
        if (!this.lmHead)
          throw new LineageError('the model has no separate head (it is tied to the embedding)');
        return this.lmHead;
      }
      return this.blockAt(spec.layer!).linears[spec.slot];
    }
    if (spec.which === 'final') return this.norm;
    const b = this.blockAt(spec.layer!);
    return spec.which === 'input' ? b.inputNorm : b.postNorm;
  }

  private blockAt(l: number): DecoderBlock {
    const b = this.blocks[l];
    if (!b) throw new RangeError(`block ${l} does not exist (the model has ${this.blocks.length})`);
    return b;
  }

  /** Every slot with what fills it, in layout order. */
  slots(): [SlotSpec, SlotValue][] {
    return this.layout().map((s) => [s, this.slot(s)]);
  }

  /**
   * Every parameter by checkpoint name, in layout order: the embedding, the norms, each linear layer's
   * stored tensors (`${layer}.${suffix}`, whatever its kind), the head, the final norm.
   */
  namedParameters(): Map<string, Parameter> {
    const out = new Map<string, Parameter>();
    for (const [spec, v] of this.slots()) {
      if (spec.kind !== 'norm') {
        for (const [suffix, p] of (v as LinearLayer).parameters()) out.set(`${spec.name}.${suffix}`, p);
      } else out.set(spec.name, v as Parameter);
    }
    return out;
  }

  /** Every linear layer by name: `model.layers.{i}.{slot}` then `lm_head` when untied. */
  linearLayers(): [string, LinearLayer][] {
    const out: [string, LinearLayer][] = [];
    for (const [spec, v] of this.slots()) if (spec.kind === 'linear') out.push([spec.name, v as LinearLayer]);
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
    if (name === HEAD_NAME) {
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
    return this.copy(this.config, this.lmHead !== undefined);
  }

  /** A copy of every slot (new Parameters, layers rebuilt by their kind) unless `take` supplies one. */
  private copy(
    config: LlamaConfig,
    untiedHead: boolean,
    take: (spec: SlotSpec) => SlotValue | undefined = () => undefined,
  ): LlamaModel {
    const m = LlamaModel.fromSlots(
      config,
      untiedHead,
      (spec) => {
        const given = take(spec);
        if (given) return given;
        const v = this.slot(spec);
        return spec.kind === 'norm'
          ? copyParameter(v as Parameter)
          : cloneLinear(spec.name, v as LinearLayer);
      },
      this.tokenizer,
    );
    if (this.provenance) m.provenance = structuredClone(this.provenance);
    return m;
  }

  /** A copy whose every linear layer is dense (`linear`, f32 weights of what each layer computes). */
  densified(): LlamaModel {
    const m = this.clone();
    if (m.embedding.kind !== 'linear') m.setEmbedding(denseLinear(m.embedding));
    for (const [name, l] of m.linearLayers()) if (l.kind !== 'linear') m.setLinear(name, denseLinear(l));
    return m;
  }

  /** All stored tensors by checkpoint name (stored dtypes, no copies), sorted by name. */
  stateDict(): Map<string, HostTensor> {
    const sd = [...this.namedParameters()].map(([n, p]) => [n, p.value] as [string, HostTensor]);
    return new Map(sd.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** Layers that are not dense `linear`, with what is needed to rebuild them (goes into config.json). */
  layerKinds(): Record<string, { kind: string; meta: Json }> {
    const out: Record<string, { kind: string; meta: Json }> = {};
    if (this.embedding.kind !== 'linear')
      out[EMBED_NAME] = { kind: this.embedding.kind, meta: this.embedding.meta() };
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
    for (const p of this.namedParameters().values()) {
      params += p.value.size;
      bytes += p.value.byteLength;
    }
    return { params, bytes, layers };
  }

  /** Frees every device copy of every parameter. */
  release(): void {
    for (const p of this.namedParameters().values()) p.release();
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

  private lookup(ops: Ops, ids: Tensor): Promise<Tensor> {
    return this.embedding.lookup!(ops, ids);
  }

  /** Token embeddings [B, T, D] for ids [B·T]. */
  async embedTokens(ops: Ops, ids: Int32Array, batch: number): Promise<Tensor> {
    const T = this.checkIds(ids, batch, 0);
    return ops.tidy(async () => this.lookup(ops, ops.upload(ids, [batch, T])));
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
      let x = await this.lookup(ops, ops.upload(ids, [batch, T]));
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
    return this.embedding.forward(ops, hidden);
  }

  /** Logits [B, T, V] for ids [B·T]. */
  async forward(ops: Ops, ids: Int32Array, batch = 1, cache?: KVCache): Promise<Tensor> {
    return ops.tidy(async () => this.logits(ops, await this.hidden(ops, ids, batch, cache)));
  }
}
