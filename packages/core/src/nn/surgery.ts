import { checkIndices, type Indices, takeAlong } from '../tensor/select.js';
import { LineageError } from '../util/errors.js';
import type { LlamaConfig } from './config.js';
import { carryTrainable, getLinearKind, type LinearLayer, type Selection } from './layer.js';
import { type BlockLinear, LlamaModel, type SlotSpec, type SlotValue } from './llama.js';
import { Parameter } from './parameter.js';
import { type ModelShape, withShape } from './shape.js';

/*
 * Structured pruning of a Llama: keep a subset of query heads, KV groups, FFN neurons, hidden channels or
 * layers. Each primitive returns a new, valid model (config from the shape arithmetic, every slot sliced
 * consistently, tokenizer and provenance carried); linear layers are sliced with `select`, so a factored
 * or quantized layer stays of its kind. Per-layer shapes stay uniform (every runtime can run the result),
 * but each layer may keep different indices.
 */

/** Indices kept in every layer, or one array per layer (each of the same length). */
export type PerLayer = Indices | readonly Indices[];

function isPerLayerList(x: PerLayer): x is readonly Indices[] {
  return x.length > 0 && typeof x[0] !== 'number';
}

/** One checked index array per layer, of one common length. */
function perLayer(model: LlamaModel, x: PerLayer, n: number, what: string, op: string): Int32Array[] {
  const L = model.blocks.length;
  const lists = isPerLayerList(x) ? x : Array.from({ length: L }, () => x as Indices);
  if (lists.length !== L)
    throw new LineageError(`${op}: ${lists.length} index lists given for a model of ${L} layers`);
  const out = lists.map((idx, l) => checkIndices(idx, n, `${op}: layer ${l}'s ${what}`));
  const k = out[0]!.length;
  out.forEach((idx, l) => {
    if (idx.length !== k)
      throw new LineageError(
        `${op}: layer ${l} keeps ${idx.length} ${what}, layer 0 keeps ${k} (every layer must keep as many)`,
      );
  });
  return out;
}

/** Rows [i·size, (i+1)·size) for each block index i: the rows of whole heads. */
function expand(blocks: Int32Array, size: number): Int32Array {
  const out = new Int32Array(blocks.length * size);
  blocks.forEach((b, k) => {
    for (let j = 0; j < size; j++) out[k * size + j] = b * size + j;
  });
  return out;
}

function copyParameter(p: Parameter): Parameter {
  return new Parameter(p.value, p.trainable);
}

function copyLinear(name: string, l: LinearLayer): LinearLayer {
  const tensors = new Map([...l.parameters()].map(([k, p]) => [k, p.value]));
  const copy = getLinearKind(l.kind).load(tensors, l.meta(), name, [l.outFeatures, l.inFeatures]);
  carryTrainable(l, copy);
  return copy;
}

/** A layer slot: a block linear, the head or the embedding. */
type LayerSlot = BlockLinear | 'lm_head' | 'embed';

interface Rebuild {
  /** The new model's shape (the head size never changes: no primitive splits a head). */
  shape: ModelShape;
  /** The parent's layer that fills the new model's layer l (default l). */
  layer?: (l: number) => number;
  /** How a layer slot (embedding, linears, head) of the parent is sliced; undefined: copied as it is. */
  linear?: (slot: LayerSlot, parentLayer: number | undefined) => Selection | undefined;
  /** The entries kept of every norm; undefined: copied as they are. */
  norm?: Int32Array;
}

/** A new model of the new shape whose every slot is the parent's slot, sliced as `r` says. */
function rebuild(model: LlamaModel, r: Rebuild): LlamaModel {
  const config: LlamaConfig = withShape(model.config, { ...r.shape, headDim: model.config.headDim });
  const out = LlamaModel.fromSlots(
    config,
    model.lmHead !== undefined,
    (spec): SlotValue => {
      const parentLayer =
        spec.kind !== 'embed' && spec.layer !== undefined ? (r.layer?.(spec.layer) ?? spec.layer) : undefined;
      const from = model.slot(
        parentLayer === undefined ? spec : ({ ...spec, layer: parentLayer } as SlotSpec),
      );
      if (spec.kind !== 'norm') {
        const sel = r.linear?.(spec.kind === 'embed' ? 'embed' : spec.slot, parentLayer);
        const l = from as LinearLayer;
        // The parent's name, so that a kind's loader names the layer it was asked to copy.
        const name =
          spec.kind === 'linear' && parentLayer !== undefined
            ? `model.layers.${parentLayer}.${spec.slot}`
            : spec.name;
        return sel ? l.select(sel) : copyLinear(name, l);
      }
      const p = from as Parameter;
      return r.norm ? new Parameter(takeAlong(p.value, 0, r.norm), p.trainable) : copyParameter(p);
    },
    model.tokenizer,
  );
  if (model.provenance) out.provenance = structuredClone(model.provenance);
  return out;
}

/**
 * Keeps the given KV groups (key/value heads) of each layer and all the query heads that read them; the
 * new kv head j is the parent's groups[j], in the order given. `groups`: one list for every layer, or one
 * per layer (each of the same length).
 */
export function keepKvGroups(model: LlamaModel, groups: PerLayer): LlamaModel {
  const { numHeads: H, numKvHeads: Hkv, headDim: D } = model.config;
  const G = H / Hkv;
  const kept = perLayer(model, groups, Hkv, 'kv groups', 'keepKvGroups');
  const k = kept[0]!.length;
  return rebuild(model, {
    shape: { numKvHeads: k, numHeads: k * G },
    linear: (slot, l) => {
      if (l === undefined) return undefined;
      const kv = expand(kept[l]!, D);
      const q = expand(expand(kept[l]!, G), D);
      return attentionSelection(slot, q, kv);
    },
  });
}

/**
 * Keeps the given query heads of each layer, the same number from every KV group (query head h reads kv
 * head ⌊h / (numHeads / numKvHeads)⌋, as in the forward); key/value heads are all kept. Within a group the
 * heads keep the order given. `heads`: one list for every layer, or one per layer (each of the same length).
 */
export function keepHeads(model: LlamaModel, heads: PerLayer): LlamaModel {
  const { numHeads: H, numKvHeads: Hkv, headDim: D } = model.config;
  const G = H / Hkv;
  const kept = perLayer(model, heads, H, 'query heads', 'keepHeads');
  const k = kept[0]!.length;
  if (k % Hkv !== 0)
    throw new LineageError(
      `keepHeads: keeping ${k} query heads cannot split evenly over the ${Hkv} kv groups (keep a multiple of ${Hkv}, or remove kv groups with keepKvGroups)`,
    );
  const perGroup = k / Hkv;
  const ordered = kept.map((idx, l) => {
    const byGroup: number[][] = Array.from({ length: Hkv }, () => []);
    for (const h of idx) byGroup[Math.floor(h / G)]!.push(h);
    byGroup.forEach((g, j) => {
      if (g.length !== perGroup)
        throw new LineageError(
          `keepHeads: layer ${l} keeps ${g.length} query heads of kv group ${j}, but ${perGroup} of each is needed (every kv group must keep as many)`,
        );
    });
    return Int32Array.from(byGroup.flat());
  });
  return rebuild(model, {
    shape: { numHeads: k },
    linear: (slot, l) => {
      if (l === undefined) return undefined;
      return attentionSelection(slot, expand(ordered[l]!, D), undefined);
    },
  });
}

/** q/o keep the query rows `q`; k/v keep the kv rows `kv` (when given); the MLP is untouched. */
function attentionSelection(
  slot: LayerSlot,
  q: Int32Array,
  kv: Int32Array | undefined,
): Selection | undefined {
  switch (slot) {
    case 'self_attn.q_proj':
      return { rows: q };
    case 'self_attn.o_proj':
      return { cols: q };
    case 'self_attn.k_proj':
    case 'self_attn.v_proj':
      return kv ? { rows: kv } : undefined;
    default:
      return undefined;
  }
}

/**
 * Keeps the given FFN (intermediate) neurons of each layer: rows of gate_proj and up_proj, columns of
 * down_proj. `neurons`: one list for every layer, or one per layer (each of the same length).
 */
export function keepFfn(model: LlamaModel, neurons: PerLayer): LlamaModel {
  const kept = perLayer(model, neurons, model.config.intermediateSize, 'FFN neurons', 'keepFfn');
  return rebuild(model, {
    shape: { intermediateSize: kept[0]!.length },
    linear: (slot, l) => {
      if (l === undefined) return undefined;
      if (slot === 'mlp.gate_proj' || slot === 'mlp.up_proj') return { rows: kept[l]! };
      if (slot === 'mlp.down_proj') return { cols: kept[l]! };
      return undefined;
    },
  });
}

/**
 * Keeps the given hidden (residual-stream) channels, the same in every layer since the stream is shared:
 * embedding columns, every norm, the input columns of q/k/v/gate/up and of the head, the output rows of
 * o/down. A tied head stays tied (it is the sliced embedding).
 */
export function keepHidden(model: LlamaModel, channels: Indices): LlamaModel {
  const ch = checkIndices(channels, model.config.hiddenSize, 'keepHidden: hidden channels');
  return rebuild(model, {
    shape: { hiddenSize: ch.length },
    // The embedding [vocab, hidden] and the head keep columns, like every layer reading the stream.
    linear: (slot) => (slot === 'self_attn.o_proj' || slot === 'mlp.down_proj' ? { rows: ch } : { cols: ch }),
    norm: ch,
  });
}

/** Keeps the given decoder layers, in the order given (ascending keeps the parent's order). */
export function keepLayers(model: LlamaModel, layers: Indices): LlamaModel {
  const kept = checkIndices(layers, model.blocks.length, 'keepLayers: layers');
  return rebuild(model, { shape: { numLayers: kept.length }, layer: (l) => kept[l]! });
}
