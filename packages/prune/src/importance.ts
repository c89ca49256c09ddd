// the statistics of a method context are @lineage/calibrate's (its accessors typed by declaration merging)
import type {} from '@lineage/calibrate';
import { LineageError, type LlamaConfig, type LlamaModel, type MethodStats, Random } from '@lineage/core';

/** How components are scored: Minitron's activations (from calibration statistics), or an ablation. */
export type ImportanceKind = 'activation' | 'random' | 'magnitude';

/**
 * Scores of every prunable component of one model (higher: more important, kept first). Width scores are
 * per layer of the parent; `layers` scores whole decoder layers (see depth.ts for the LM-loss variant).
 */
export interface Importance {
  kind: ImportanceKind;
  /** FFN neurons, [layers][intermediate]. */
  neurons: Float64Array[];
  /** Query heads, [layers][heads]. */
  heads: Float64Array[];
  /** KV groups (a KV head and the query heads reading it), [layers][kvHeads]. */
  kvGroups: Float64Array[];
  /** Hidden (embedding) channels, [hidden]. */
  channels: Float64Array;
  /** Decoder layers, [layers]: Block Importance (1 − cos) for activations. */
  layers: Float64Array;
}

/**
 * Minitron's activation importance as @lineage/calibrate computed it (`--stats importance`): neurons at the
 * down projection's input, heads and KV groups at the o projection's input, hidden channels summed over every
 * RMSNorm's output, layers by Block Importance. Read, not recomputed.
 */
export async function activationImportance(stats: MethodStats, config: LlamaConfig): Promise<Importance> {
  stats.require('importance');
  const L = config.numLayers;
  const per = async (f: (l: number) => Promise<Float64Array>) =>
    Promise.all(Array.from({ length: L }, (_, l) => f(l)));
  const imp: Importance = {
    kind: 'activation',
    neurons: await per((l) => stats.neuronImportance(l)),
    heads: await per((l) => stats.headImportance(l)),
    kvGroups: await per((l) => stats.kvGroupImportance(l)),
    channels: await stats.channelImportance(),
    layers: await stats.blockImportance(),
  };
  checkSizes(imp, config);
  return imp;
}

/** Uniform random scores (seeded): the ablation that shows what the importance buys. */
export function randomImportance(config: LlamaConfig, seed: number): Importance {
  const rng = new Random(seed);
  const vec = (n: number) => Float64Array.from({ length: n }, () => rng.next());
  const L = config.numLayers;
  return {
    kind: 'random',
    neurons: Array.from({ length: L }, () => vec(config.intermediateSize)),
    heads: Array.from({ length: L }, () => vec(config.numHeads)),
    kvGroups: Array.from({ length: L }, () => vec(config.numKvHeads)),
    channels: vec(config.hiddenSize),
    layers: vec(L),
  };
}

/**
 * Weight-magnitude scores (no data): L2 norms of the weights that read or write each component — a neuron's
 * gate/up rows and down column, a head's q rows and o columns, a KV group's heads plus its k/v rows, a hidden
 * channel's embedding column, a layer's o and down outputs (what it adds to the residual stream).
 */
export function magnitudeImportance(model: LlamaModel): Importance {
  const c = model.config;
  const { numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, hiddenSize: Dm } = c;
  const G = H / Hkv;
  const neurons: Float64Array[] = [];
  const heads: Float64Array[] = [];
  const kvGroups: Float64Array[] = [];
  const layers = new Float64Array(c.numLayers);
  const w = (l: number, slot: string) => model.getLinear(`model.layers.${l}.${slot}`).denseWeight();
  for (let l = 0; l < c.numLayers; l++) {
    const n = new Float64Array(F);
    addRows(n, w(l, 'mlp.gate_proj'), Dm, 1);
    addRows(n, w(l, 'mlp.up_proj'), Dm, 1);
    const down = w(l, 'mlp.down_proj');
    addCols(n, down, F, 1);
    neurons.push(n.map(Math.sqrt));
    const h = new Float64Array(H);
    addRows(h, w(l, 'self_attn.q_proj'), Dm, D);
    const o = w(l, 'self_attn.o_proj');
    addCols(h, o, H * D, D);
    const g = new Float64Array(Hkv);
    for (let j = 0; j < H; j++) g[Math.floor(j / G)]! += h[j]!;
    addRows(g, w(l, 'self_attn.k_proj'), Dm, D);
    addRows(g, w(l, 'self_attn.v_proj'), Dm, D);
    heads.push(h.map(Math.sqrt));
    kvGroups.push(g.map(Math.sqrt));
    let s = 0;
    for (const x of o) s += x * x;
    for (const x of down) s += x * x;
    layers[l] = Math.sqrt(s);
  }
  const ch = new Float64Array(Dm);
  addCols(ch, model.embedding.denseWeight(), Dm, 1);
  return { kind: 'magnitude', neurons, heads, kvGroups, channels: ch.map(Math.sqrt), layers };
}

/** acc[⌊r / group⌋] += Σ_c W[r, c]² over the rows of a row-major weight with `cols` columns. */
function addRows(acc: Float64Array, W: Float32Array, cols: number, group: number): void {
  const rows = W.length / cols;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) {
      const x = W[r * cols + c]!;
      s += x * x;
    }
    acc[Math.floor(r / group)]! += s;
  }
}

/** acc[⌊c / group⌋] += Σ_r W[r, c]² over the columns of a row-major weight with `cols` columns. */
function addCols(acc: Float64Array, W: Float32Array, cols: number, group: number): void {
  for (let i = 0; i < W.length; i++) {
    const x = W[i]!;
    acc[Math.floor((i % cols) / group)]! += x * x;
  }
}

function checkSizes(imp: Importance, c: LlamaConfig): void {
  const bad = (what: string, got: number, want: number) =>
    new LineageError(
      `importance statistics do not fit the model: ${what} has ${got} entries, the model ${want} (statistics from another model?)`,
    );
  if (imp.channels.length !== c.hiddenSize) throw bad('hidden channels', imp.channels.length, c.hiddenSize);
  if (imp.layers.length !== c.numLayers) throw bad('layers', imp.layers.length, c.numLayers);
  for (let l = 0; l < c.numLayers; l++) {
    if (imp.neurons[l]!.length !== c.intermediateSize)
      throw bad(`layer ${l}'s neurons`, imp.neurons[l]!.length, c.intermediateSize);
    if (imp.heads[l]!.length !== c.numHeads)
      throw bad(`layer ${l}'s heads`, imp.heads[l]!.length, c.numHeads);
    if (imp.kvGroups[l]!.length !== c.numKvHeads)
      throw bad(`layer ${l}'s kv groups`, imp.kvGroups[l]!.length, c.numKvHeads);
  }
}

/** Indices of the `k` largest scores, in ascending index order (ties: the lower index). */
export function topK(scores: ArrayLike<number>, k: number): Int32Array {
  const idx = Array.from({ length: scores.length }, (_, i) => i);
  idx.sort((a, b) => scores[b]! - scores[a]! || a - b);
  return Int32Array.from(idx.slice(0, k).sort((a, b) => a - b));
}
