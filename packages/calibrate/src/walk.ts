import {
  type ActivationName,
  type Backend,
  type BlockLinear,
  LineageError,
  type LinearLayer,
  type LlamaModel,
  Ops,
} from '@lineage/core';
import { type LayeredModel, type LayerView, toLayered } from './source.js';

/**
 * Activations of every calibration token at one point of the network, on the host: row `offsets[i] + t` of
 * `data` ([rows, width], f32) is token t of sequence i. No padding is stored.
 */
export interface ActivationBatch {
  readonly width: number;
  readonly lengths: readonly number[];
  readonly offsets: readonly number[];
  readonly rows: number;
  readonly data: Float32Array;
}

/** One micro-batch's activation as a capture sees it. */
export interface MicroBatchActivation {
  /** Host copy, [batch, T, width] with sequences right-padded to T: skip rows t ≥ lengths[b]. */
  readonly data: Float32Array;
  readonly batch: number;
  readonly T: number;
  readonly width: number;
  /** Real tokens of each sequence of the micro-batch. */
  readonly lengths: readonly number[];
  /** Indices of these sequences in the calibration batch. */
  readonly sequences: readonly number[];
}

/** Where a capture can look: the block taps of core's LlamaModel.block, plus the final norm's output. */
export type TapName = ActivationName | 'model.norm.output';

/** Statistics hooks: which taps to read back, and what to do with each micro-batch's activation. */
export interface LayerCapture {
  /** Taps to transfer to the host (others cost nothing). */
  readonly names: readonly TapName[];
  /** Called per micro-batch and tap, in forward order; `layer` is numLayers for 'model.norm.output'. */
  onActivation(layer: number, name: TapName, a: MicroBatchActivation): void | Promise<void>;
}

/** What a method sees of layer `index` before its outputs are computed (see walkLayers). */
export interface LayerStep {
  readonly index: number;
  readonly numLayers: number;
  /** The layer's inputs (the residual stream entering it), for every calibration token. Read-only. */
  readonly inputs: ActivationBatch;
  /** Full HF name of a slot of this layer: `model.layers.{index}.{slot}`. */
  name(slot: BlockLinear): string;
  getLinear(slot: BlockLinear): LinearLayer;
  /** Replaces a linear layer of this block (e.g. with its compressed version) before outputs are computed. */
  setLinear(slot: BlockLinear, layer: LinearLayer): void;
  /**
   * Runs the layer (with its current weights) over all inputs, calling `capture`, without keeping outputs:
   * e.g. collect this layer's Hessians, compress, `setLinear`, then let the walk propagate.
   */
  run(capture: LayerCapture): Promise<void>;
}

export interface WalkProgress {
  /** 1-based layer being processed, and the number of layers. */
  layer: number;
  layers: number;
  /** Tokens of the current layer done, and the batch's tokens. */
  layerTokens: number;
  tokens: number;
  /** Seconds since the walk started. */
  seconds: number;
  /** Calibration tokens per second through the whole model so far (token-layers per second / layers). */
  tokensPerSecond: number;
}

export interface WalkOptions {
  /** Largest micro-batch in tokens (sequences × padded length; at least one sequence). Default 512. */
  microBatchTokens?: number;
  /** Statistics collected while the walk computes each layer's outputs (one pass per layer). */
  capture?: LayerCapture;
  /** Runs before layer `index`'s outputs are computed; may replace its linear layers. */
  onLayer?: (step: LayerStep) => void | Promise<void>;
  /** Runs after layer `index`'s outputs are computed and its weights released (e.g. flush its statistics). */
  afterLayer?: (index: number) => void | Promise<void>;
  /** Also apply the final RMSNorm and give its output to `capture` as 'model.norm.output' (layer = numLayers). */
  finalNorm?: boolean;
  onProgress?: (p: WalkProgress) => void;
  /**
   * A full garbage collection, run before the activations are allocated and after each micro-batch and layer
   * (default: `globalThis.gc` when node runs with --expose-gc). Backends' intermediate buffers are freed by the
   * garbage collector, which otherwise lets up to ~64 MiB of dead buffers accumulate (and V8 returns a dead
   * buffer's memory one collection late); with it the peak stays at what is live.
   */
  collectGarbage?: () => void;
}

export interface WalkResult {
  tokens: number;
  layers: number;
  seconds: number;
  /** The last layer's outputs (before the final norm) for every token. */
  hidden: ActivationBatch;
}

interface Group {
  seqs: number[];
  T: number;
}

/** Micro-batches: sequences by decreasing length (stable), greedily up to `budget` padded tokens. */
function microBatches(lengths: readonly number[], budget: number): Group[] {
  const order = lengths.map((n, i) => [n, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const groups: Group[] = [];
  let cur: Group | undefined;
  for (const [n, i] of order) {
    if (cur && (cur.seqs.length + 1) * cur.T <= budget) cur.seqs.push(i);
    else {
      cur = { seqs: [i], T: n };
      groups.push(cur);
    }
  }
  return groups;
}

function padded(batch: ActivationBatch, g: Group): Float32Array {
  const D = batch.width;
  const buf = new Float32Array(g.seqs.length * g.T * D);
  g.seqs.forEach((s, b) => {
    const off = batch.offsets[s]! * D;
    buf.set(batch.data.subarray(off, off + batch.lengths[s]! * D), b * g.T * D);
  });
  return buf;
}

function unpad(batch: ActivationBatch, g: Group, out: Float32Array): void {
  const D = batch.width;
  g.seqs.forEach((s, b) => {
    const n = batch.lengths[s]! * D;
    batch.data.set(out.subarray(b * g.T * D, b * g.T * D + n), batch.offsets[s]! * D);
  });
}

/**
 * Walks the decoder one layer at a time over a calibration batch: embeds every sequence, then for each layer
 * loads its weights, calls `onLayer` (which may replace the layer, as GPTQ/CALDERA do, before its outputs
 * exist), computes its outputs micro-batch by micro-batch in place of its inputs while `capture` sees the
 * taps, calls `afterLayer`, and releases the layer's weights. Peak memory is one layer's weights, one set of
 * activations ([tokens, hidden] f32) and a micro-batch's transients — never the whole model's activations.
 *
 * Sequences may have different lengths; micro-batches right-pad them, which with causal attention leaves
 * every real position exact, and captures are told each sequence's length.
 */
export async function walkLayers(
  model: LlamaModel | LayeredModel,
  backend: Backend,
  sequences: readonly Int32Array[],
  options: WalkOptions = {},
): Promise<WalkResult> {
  const m = toLayered(model);
  const c = m.config;
  if (!sequences.length) throw new LineageError('no calibration sequences');
  const lengths = sequences.map((s) => s.length);
  for (const n of lengths) {
    if (n < 1) throw new LineageError('a calibration sequence is empty');
    if (n > c.maxPositions)
      throw new LineageError(`sequence of ${n} tokens exceeds the model's context of ${c.maxPositions}`);
    if (c.slidingWindow !== undefined && n > c.slidingWindow)
      throw new LineageError(`sequence of ${n} tokens exceeds the sliding window of ${c.slidingWindow}`);
  }
  const offsets: number[] = [];
  let rows = 0;
  for (const n of lengths) {
    offsets.push(rows);
    rows += n;
  }
  const collect =
    options.collectGarbage ??
    (typeof (globalThis as { gc?: unknown }).gc === 'function'
      ? (globalThis as { gc: () => void }).gc
      : undefined);
  // Twice: V8 frees a dead ArrayBuffer's memory only when the collection after the one that found it finishes.
  const gc = collect
    ? () => {
        collect();
        collect();
      }
    : undefined;
  gc?.(); // whatever the caller left dead, before the largest allocation
  const D = c.hiddenSize;
  const batch: ActivationBatch = { width: D, lengths, offsets, rows, data: new Float32Array(rows * D) };
  const budget = Math.max(1, options.microBatchTokens ?? 512);
  const groups = microBatches(lengths, budget);
  const capture = options.capture;
  const ops = new Ops(backend);
  const t0 = performance.now();
  const L = c.numLayers;

  await m.embed(sequences, batch.data, offsets);
  gc?.();

  const progress = (layer: number, layerTokens: number) => {
    const seconds = (performance.now() - t0) / 1000;
    const done = layer * rows + layerTokens;
    options.onProgress?.({
      layer: layer + 1,
      layers: L,
      layerTokens,
      tokens: rows,
      seconds,
      tokensPerSecond: seconds > 0 ? done / L / seconds : 0,
    });
  };

  /** One pass of layer `l` over the batch; writes outputs back when `write`. */
  const pass = async (l: number, view: LayerView, cap: LayerCapture | undefined, write: boolean) => {
    const taps = new Set(cap?.names ?? []);
    let layerTokens = 0;
    for (const g of groups) {
      const B = g.seqs.length;
      const meta = { batch: B, T: g.T, lengths: g.seqs.map((s) => lengths[s]!), sequences: g.seqs };
      const input = padded(batch, g);
      if (taps.has('block.input'))
        await cap!.onActivation(l, 'block.input', { ...meta, width: D, data: input });
      const out = await ops.tidy(async () => {
        const x = ops.upload(input, [B, g.T, D]);
        const rope = view.model.rope(ops, g.T);
        const y = await view.model.block(ops, view.index, x, rope, {
          capture: async (name, t) => {
            if (name === 'block.input' || name === 'block.output' || !taps.has(name)) return;
            const data = await ops.readF32(t);
            await cap!.onActivation(l, name, { ...meta, width: t.shape[t.shape.length - 1]!, data });
          },
        });
        return ops.readF32(y);
      });
      if (taps.has('block.output'))
        await cap!.onActivation(l, 'block.output', { ...meta, width: D, data: out });
      if (write) unpad(batch, g, out);
      gc?.();
      layerTokens += meta.lengths.reduce((a, b) => a + b, 0);
      if (write) progress(l, layerTokens);
    }
  };

  /** One layer, in its own scope: when it returns, nothing of the layer is reachable for the next gc. */
  const walkLayer = async (l: number) => {
    const view = await m.layer(l);
    try {
      if (options.onLayer) {
        const name = (slot: BlockLinear) => `model.layers.${l}.${slot}`;
        const viewName = (slot: BlockLinear) => `model.layers.${view.index}.${slot}`;
        await options.onLayer({
          index: l,
          numLayers: L,
          inputs: batch,
          name,
          getLinear: (slot) => view.model.getLinear(viewName(slot)),
          setLinear: (slot, layer) => view.model.setLinear(viewName(slot), layer),
          run: (cap) => pass(l, view, cap, false),
        });
      }
      await pass(l, view, capture, true);
    } finally {
      view.release();
    }
  };
  for (let l = 0; l < L; l++) {
    await walkLayer(l);
    gc?.(); // the layer's weights and transients, before its statistics are finished and the next layer loads
    await options.afterLayer?.(l);
    gc?.();
  }

  if (options.finalNorm && capture) {
    const norm = await m.finalNorm();
    try {
      for (const g of groups) {
        const B = g.seqs.length;
        const meta = { batch: B, T: g.T, lengths: g.seqs.map((s) => lengths[s]!), sequences: g.seqs };
        const input = padded(batch, g);
        const data = await ops.tidy(async () =>
          ops.readF32(await ops.rmsNorm(ops.upload(input, [B, g.T, D]), norm.tensor(backend), c.rmsNormEps)),
        );
        await capture.onActivation(L, 'model.norm.output', { ...meta, width: D, data });
      }
    } finally {
      norm.release();
    }
  }

  return { tokens: rows, layers: L, seconds: (performance.now() - t0) / 1000, hidden: batch };
}
