import { HostTensor, LineageError, type LlamaConfig } from '@lineage/core';
import { GramAccumulator } from './gram.js';
import type { LayerCapture, MicroBatchActivation, TapName } from './walk.js';

/** Statistic families a calibration run can compute. */
export const STATISTICS = ['hessian', 'importance'] as const;
export type StatisticName = (typeof STATISTICS)[number];

/** Parses `hessian,importance` (or an array); unknown names are a one-line error listing the known ones. */
export function parseStatistics(spec: string | readonly string[]): StatisticName[] {
  const parts = (typeof spec === 'string' ? spec.split(',') : [...spec]).map((s) => s.trim()).filter(Boolean);
  if (!parts.length) throw new LineageError(`no statistics named (known: ${STATISTICS.join(', ')})`);
  const out: StatisticName[] = [];
  for (const p of parts) {
    if (!(STATISTICS as readonly string[]).includes(p))
      throw new LineageError(`unknown statistic '${p}' (known: ${STATISTICS.join(', ')})`);
    if (!out.includes(p as StatisticName)) out.push(p as StatisticName);
  }
  return out;
}

/**
 * Linear layers whose input a tap is, keyed by the FIRST layer reading it (q/k/v share the input norm's output,
 * gate/up share the post-attention norm's output).
 */
const INPUT_OF: Partial<Record<TapName, string>> = {
  'input_layernorm.output': 'self_attn.q_proj',
  'self_attn.o_proj.input': 'self_attn.o_proj',
  'post_attention_layernorm.output': 'mlp.gate_proj',
  'mlp.down_proj.input': 'mlp.down_proj',
};
/** Slots that read another slot's input. */
export const SHARED_INPUT: Readonly<Record<string, string>> = {
  'self_attn.k_proj': 'self_attn.q_proj',
  'self_attn.v_proj': 'self_attn.q_proj',
  'mlp.up_proj': 'mlp.gate_proj',
};

/** Tensor names in statistics files (and in-memory statistics). */
export const statNames = {
  hessian: (input: string) => `${input}.hessian`,
  mean: (input: string) => `${input}.mean`,
  neurons: (l: number) => `model.layers.${l}.mlp.neuron_importance`,
  heads: (l: number) => `model.layers.${l}.self_attn.head_importance`,
  kvGroups: (l: number) => `model.layers.${l}.self_attn.kv_group_importance`,
  norm: (l: number, norm: 'input_layernorm' | 'post_attention_layernorm') =>
    `model.layers.${l}.${norm}.channel_importance`,
  channels: 'model.embed_tokens.channel_importance',
  blocks: 'model.block_importance',
} as const;

/** Σ_b (mean_t |x_{b,t,c}|)² per channel c: Minitron's aggregation before the square root. */
class ChannelImportance {
  readonly acc: Float64Array;
  private readonly row: Float64Array;
  constructor(readonly width: number) {
    this.acc = new Float64Array(width);
    this.row = new Float64Array(width);
  }
  add(a: MicroBatchActivation): void {
    const C = this.width;
    const r = this.row;
    for (let b = 0; b < a.batch; b++) {
      const n = a.lengths[b]!;
      r.fill(0);
      for (let t = 0; t < n; t++) {
        const o = (b * a.T + t) * C;
        for (let c = 0; c < C; c++) r[c]! += Math.abs(a.data[o + c]!);
      }
      for (let c = 0; c < C; c++) {
        const m = r[c]! / n;
        this.acc[c]! += m * m;
      }
    }
  }
  scores(): Float64Array {
    return this.acc.map(Math.sqrt);
  }
}

/** Per block of `size` channels: Σ_b (mean_t ‖x_{b,t,block}‖₂)² (heads: size = headDim; KV groups: G·headDim). */
class BlockNormImportance {
  readonly acc: Float64Array;
  constructor(
    readonly blocks: number,
    readonly size: number,
  ) {
    this.acc = new Float64Array(blocks);
  }
  add(a: MicroBatchActivation): void {
    const { blocks: H, size: S } = this;
    const sums = new Float64Array(H);
    for (let b = 0; b < a.batch; b++) {
      const n = a.lengths[b]!;
      sums.fill(0);
      for (let t = 0; t < n; t++) {
        const o = (b * a.T + t) * a.width;
        for (let h = 0; h < H; h++) {
          let ss = 0;
          const base = o + h * S;
          for (let k = 0; k < S; k++) {
            const v = a.data[base + k]!;
            ss += v * v;
          }
          sums[h]! += Math.sqrt(ss);
        }
      }
      for (let h = 0; h < H; h++) {
        const m = sums[h]! / n;
        this.acc[h]! += m * m;
      }
    }
  }
  scores(): Float64Array {
    return this.acc.map(Math.sqrt);
  }
}

interface LayerState {
  inputs: Map<string, GramAccumulator>;
  neurons?: ChannelImportance;
  heads?: BlockNormImportance;
  kvGroups?: BlockNormImportance;
  normIn?: ChannelImportance;
  normPost?: ChannelImportance;
  /** Block Importance: Σ cos(x_in, x_out) over tokens, and the block inputs of the current micro-batch. */
  cosSum: number;
  cosCount: number;
  pendingInput?: MicroBatchActivation;
}

/**
 * Accumulates the requested statistics as the walk captures activations (float64 throughout), one layer at a
 * time: `finishLayer(l)` returns that layer's tensors and frees its accumulators, `finish()` the whole-model
 * ones (embedding channels summed over layers, Block Importance, the head's input).
 */
export class StatsCollector implements LayerCapture {
  readonly names: TapName[];
  private readonly hessian: boolean;
  private readonly importance: boolean;
  private layers = new Map<number, LayerState>();
  private channelSum: Float64Array;
  private blockImportance: Float64Array;
  private head?: GramAccumulator;
  tokens = 0;

  constructor(
    readonly config: LlamaConfig,
    statistics: readonly StatisticName[],
    /** Collect the input of `lm_head` (the final norm's output) too; only for models with a separate head. */
    readonly lmHead = false,
  ) {
    this.hessian = statistics.includes('hessian');
    this.importance = statistics.includes('importance');
    const taps = new Set<TapName>();
    if (this.hessian) {
      for (const t of Object.keys(INPUT_OF)) taps.add(t as TapName);
      if (lmHead) taps.add('model.norm.output');
    }
    if (this.importance) {
      for (const t of [
        'block.input',
        'input_layernorm.output',
        'self_attn.o_proj.input',
        'post_attention_layernorm.output',
        'mlp.down_proj.input',
        'block.output',
      ] as const)
        taps.add(t);
    }
    this.names = [...taps];
    this.channelSum = new Float64Array(config.hiddenSize);
    this.blockImportance = new Float64Array(config.numLayers);
  }

  private state(l: number): LayerState {
    let s = this.layers.get(l);
    if (!s) {
      s = { inputs: new Map(), cosSum: 0, cosCount: 0 };
      const c = this.config;
      if (this.importance) {
        s.neurons = new ChannelImportance(c.intermediateSize);
        s.heads = new BlockNormImportance(c.numHeads, c.headDim);
        s.kvGroups = new BlockNormImportance(c.numKvHeads, (c.numHeads / c.numKvHeads) * c.headDim);
        s.normIn = new ChannelImportance(c.hiddenSize);
        s.normPost = new ChannelImportance(c.hiddenSize);
      }
      this.layers.set(l, s);
    }
    return s;
  }

  private gram(
    map: Map<string, GramAccumulator>,
    key: string,
    a: MicroBatchActivation,
  ): GramAccumulator | undefined {
    if (!this.hessian) return undefined;
    let g = map.get(key);
    if (!g) {
      g = new GramAccumulator(a.width);
      map.set(key, g);
    }
    for (let b = 0; b < a.batch; b++) g.addRows(a.data, b * a.T * a.width, a.lengths[b]!);
    return g;
  }

  onActivation(layer: number, name: TapName, a: MicroBatchActivation): void {
    if (name === 'model.norm.output') {
      if (this.hessian && this.lmHead) {
        this.head ??= new GramAccumulator(a.width);
        for (let b = 0; b < a.batch; b++) this.head.addRows(a.data, b * a.T * a.width, a.lengths[b]!);
      }
      return;
    }
    const s = this.state(layer);
    const input = INPUT_OF[name];
    if (input) this.gram(s.inputs, `model.layers.${layer}.${input}`, a);
    if (!this.importance) return;
    switch (name) {
      case 'input_layernorm.output':
        s.normIn!.add(a);
        break;
      case 'post_attention_layernorm.output':
        s.normPost!.add(a);
        break;
      case 'self_attn.o_proj.input':
        s.heads!.add(a);
        s.kvGroups!.add(a);
        break;
      case 'mlp.down_proj.input':
        s.neurons!.add(a);
        break;
      case 'block.input':
        s.pendingInput = a;
        break;
      case 'block.output': {
        const x = s.pendingInput;
        if (!x) throw new Error('block.output captured without block.input');
        s.pendingInput = undefined;
        const C = a.width;
        for (let b = 0; b < a.batch; b++) {
          for (let t = 0; t < a.lengths[b]!; t++) {
            const o = (b * a.T + t) * C;
            let dot = 0;
            let nx = 0;
            let ny = 0;
            for (let c = 0; c < C; c++) {
              const u = x.data[o + c]!;
              const v = a.data[o + c]!;
              dot += u * v;
              nx += u * u;
              ny += v * v;
            }
            s.cosSum += nx > 0 && ny > 0 ? dot / Math.sqrt(nx * ny) : 0;
            s.cosCount++;
          }
        }
        break;
      }
    }
  }

  /** Bytes held by the current accumulators (for memory accounting). */
  get bytes(): number {
    let n = this.channelSum.byteLength + this.blockImportance.byteLength + (this.head?.bytes ?? 0);
    for (const s of this.layers.values()) {
      for (const g of s.inputs.values()) n += g.bytes;
      for (const x of [s.neurons, s.normIn, s.normPost]) n += x ? x.acc.byteLength * 2 : 0;
    }
    return n;
  }

  /** The finished tensors of layer `l` (float64); frees its accumulators. */
  finishLayer(l: number): Map<string, HostTensor> {
    const s = this.layers.get(l);
    const out = new Map<string, HostTensor>();
    if (!s) return out;
    this.layers.delete(l);
    for (const [key, g] of s.inputs) {
      out.set(statNames.hessian(key), new HostTensor('f64', [g.width, g.width], g.gram()));
      out.set(
        statNames.mean(key),
        new HostTensor(
          'f64',
          [g.width],
          g.sum().map((v) => v / g.count),
        ),
      );
      if (l === 0 && key.endsWith('q_proj')) this.tokens = g.count;
    }
    if (this.importance) {
      const v = (x: Float64Array) => new HostTensor('f64', [x.length], x);
      out.set(statNames.neurons(l), v(s.neurons!.scores()));
      out.set(statNames.heads(l), v(s.heads!.scores()));
      out.set(statNames.kvGroups(l), v(s.kvGroups!.scores()));
      const nin = s.normIn!.scores();
      const npost = s.normPost!.scores();
      out.set(statNames.norm(l, 'input_layernorm'), v(nin));
      out.set(statNames.norm(l, 'post_attention_layernorm'), v(npost));
      for (let c = 0; c < nin.length; c++) this.channelSum[c]! += nin[c]! + npost[c]!;
      this.blockImportance[l] = 1 - s.cosSum / s.cosCount;
      if (l === 0) this.tokens = s.cosCount;
    }
    return out;
  }

  /** Whole-model tensors: embedding channels (summed over layers), Block Importance, the head's input. */
  finish(): Map<string, HostTensor> {
    const out = new Map<string, HostTensor>();
    if (this.importance) {
      out.set(statNames.channels, new HostTensor('f64', [this.channelSum.length], this.channelSum.slice()));
      out.set(
        statNames.blocks,
        new HostTensor('f64', [this.blockImportance.length], this.blockImportance.slice()),
      );
    }
    if (this.head) {
      const g = this.head;
      out.set(statNames.hessian('lm_head'), new HostTensor('f64', [g.width, g.width], g.gram()));
      out.set(
        statNames.mean('lm_head'),
        new HostTensor(
          'f64',
          [g.width],
          g.sum().map((v) => v / g.count),
        ),
      );
    }
    return out;
  }
}
