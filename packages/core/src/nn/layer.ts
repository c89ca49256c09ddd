import type { Tensor } from '../backend/backend.js';
import type { Ops } from '../backend/ops.js';
import type { HostTensor } from '../tensor/host-tensor.js';
import { checkIndices, type Indices } from '../tensor/select.js';
import { LineageError } from '../util/errors.js';
import type { Parameter } from './parameter.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Parameter and byte accounting as stored on disk. */
export interface LayerStats {
  /** Stored parameter count (e.g. r·(m+n) for a factored layer). */
  params: number;
  /** Stored bytes, including scales, codebooks and factors. */
  bytes: number;
}

/**
 * A computational layer. Compressed layers (low-rank, quantized, pruned) are simply other kinds:
 * a method replaces a model's layer; it never patches a forward.
 */
export interface Layer {
  /** Serialised kind, e.g. 'linear'. Non-dense kinds are recorded in the model config so loading can rebuild them. */
  readonly kind: string;
  forward(ops: Ops, x: Tensor): Promise<Tensor>;
  /** Parameters by stored-tensor suffix ('weight', 'bias', 'A', …): the checkpoint holds `${layerName}.${suffix}`. */
  parameters(): ReadonlyMap<string, Parameter>;
  stats(): LayerStats;
  /** Kind-specific settings needed to rebuild the layer from its tensors (saved in config.json). */
  meta(): Json;
}

/** A layer mapping [..., inFeatures] → [..., outFeatures]: the slots q/k/v/o, gate/up/down and the head. */
export interface LinearLayer extends Layer {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The dense weight it represents ([out, in], f32), for methods that re-decompose any layer kind. */
  denseWeight(): Float32Array;
  /** Its bias, if any. */
  denseBias(): Float32Array | undefined;
  /**
   * A new layer of the same kind computing the given output rows and reading the given input columns of
   * this one (unset: all), without densifying: the structured slicing that removes heads, FFN neurons or
   * hidden channels. Stored dtypes are kept where the kind can; the bias is sliced by rows.
   */
  select(selection: Selection): LinearLayer;
  /**
   * Rows of the weight for token ids [...] → [..., inFeatures]: what lets a kind fill the embedding slot (a
   * [vocab, hidden] layer whose rows are looked up and whose forward is the tied head). Optional: a kind
   * without it cannot be an embedding.
   */
  lookup?(ops: Ops, ids: Tensor): Promise<Tensor>;
}

/** Output rows and input columns to keep (see LinearLayer.select), in the order wanted. */
export interface Selection {
  rows?: Indices;
  cols?: Indices;
}

/** A selection's indices checked against a layer of [out, in] features; unset axes are undefined. */
export function checkSelection(
  s: Selection,
  [out, inp]: readonly [number, number],
  where: string,
): { rows?: Int32Array; cols?: Int32Array } {
  return {
    ...(s.rows ? { rows: checkIndices(s.rows, out, `rows of ${where}`) } : {}),
    ...(s.cols ? { cols: checkIndices(s.cols, inp, `columns of ${where}`) } : {}),
  };
}

/** Trainable flags carried from one layer's parameters to another's, by suffix. */
export function carryTrainable(from: LinearLayer, to: LinearLayer): void {
  for (const [k, p] of from.parameters()) {
    const q = to.parameters().get(k);
    if (q) q.trainable = p.trainable;
  }
}

/** How to rebuild a linear layer kind from its stored tensors; registered by the package defining the kind. */
export interface LinearKind {
  kind: string;
  /**
   * `tensors` maps suffix → tensor for this layer; `where` is the layer name for error messages.
   * `expected` is the [out, in] shape the model slot requires.
   */
  load(
    tensors: ReadonlyMap<string, HostTensor>,
    meta: Json,
    where: string,
    expected: [number, number],
  ): LinearLayer;
}

const KINDS = Symbol.for('@lineage/core/linear-kinds');
type Global = typeof globalThis & { [KINDS]?: Map<string, LinearKind> };

function kinds(): Map<string, LinearKind> {
  const g = globalThis as Global;
  g[KINDS] ??= new Map();
  return g[KINDS];
}

export function registerLinearKind(k: LinearKind): void {
  const old = kinds().get(k.kind);
  if (old && old !== k) throw new Error(`registerLinearKind: kind '${k.kind}' is already registered`);
  kinds().set(k.kind, k);
}

export function getLinearKind(kind: string, file?: string): LinearKind {
  const k = kinds().get(kind);
  if (!k) {
    throw new LineageError(
      `layer kind '${kind}' is not registered (known: ${[...kinds().keys()].join(', ')}); import the package that defines it (e.g. @lineage/svd)`,
      file,
    );
  }
  return k;
}

/** Sum of element counts and bytes of a layer's stored tensors (the honest default for stats()). */
export function storedStats(params: ReadonlyMap<string, Parameter>): LayerStats {
  let n = 0;
  let bytes = 0;
  for (const p of params.values()) {
    n += p.value.size;
    bytes += p.value.byteLength;
  }
  return { params: n, bytes };
}
