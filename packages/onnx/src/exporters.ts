import {
  f32ArrayToF16,
  finiteMagnitude,
  HALF_OVERFLOW_AT,
  type HostTensor,
  LineageError,
  type Linear,
  type LinearLayer,
} from '@lineage/core';
import { FLOAT, FLOAT16, type GraphBuilder } from './graph-builder.js';

/** How float weights are stored in an exported graph (compute stays f32: fp16 weights are Cast on load). */
export type WeightDType = 'fp32' | 'fp16';

/**
 * What a layer exporter gets: the graph, the layer's checkpoint name (prefix for its initializers) and
 * helpers that store float weights in the export's dtype.
 */
export interface ExportContext {
  g: GraphBuilder;
  /** The layer's checkpoint name, e.g. `model.layers.3.mlp.up_proj` (for messages). */
  name: string;
  /** The initializer name of one of the layer's tensors (see initializerPrefix), e.g. `l3.up_proj.codes`. */
  init(suffix: string): string;
  dtype: WeightDType;
  /**
   * A float weight as an f32 value of the graph: an initializer in the export's dtype (named
   * `init(suffix)`), behind a Cast when stored fp16 (the export's dtype, or `half` for tensors the
   * model itself stores in 16 bits, so the file keeps the model's bytes). Asking twice for one suffix
   * gives the same value.
   */
  weight(suffix: string, data: Float32Array, dims: readonly number[], o?: { half?: boolean }): string;
}

/**
 * Exports one layer kind: `linear` maps x [batch, seq, in] (f32) to [batch, seq, out]; `lookup` (for kinds that can be
 * the embedding) maps int64 ids [...] to rows [..., in]. `tied` is set when the same layer is also the
 * embedding, so its exporter can reuse the lookup's initializers instead of storing them twice.
 */
export interface LayerExporter<L extends LinearLayer = LinearLayer> {
  kind: string;
  linear(ctx: ExportContext, layer: L, x: string, o: { tied: boolean }): string;
  lookup?(ctx: ExportContext, layer: L, ids: string): string;
}

/**
 * Layer kinds by name → their layer type, for typed exporters. A package defining a kind adds it by
 * declaration merging beside its exporter's registration:
 *
 * ```ts
 * declare module '@lineage/onnx' {
 *   interface OnnxLayerKinds { low_rank: LowRankLinear }
 * }
 * ```
 *
 * so `registerLayerExporter('low_rank', { linear(ctx, layer) { layer.A … } })` is typed with no cast,
 * duck typing or `instanceof` across package copies: the registry is keyed by the kind a layer reports.
 */
export interface OnnxLayerKinds {
  linear: Linear;
}

const EXPORTERS = Symbol.for('@lineage/onnx/layer-exporters');
type Global = typeof globalThis & { [EXPORTERS]?: Map<string, LayerExporter> };

function exporters(): Map<string, LayerExporter> {
  const g = globalThis as Global;
  g[EXPORTERS] ??= new Map();
  return g[EXPORTERS];
}

/** Registers the ONNX exporter of a layer kind (one per kind; the package of the kind registers it). */
export function registerLayerExporter<K extends keyof OnnxLayerKinds & string>(
  kind: K,
  exporter: Omit<LayerExporter<OnnxLayerKinds[K]>, 'kind'>,
): void {
  const old = exporters().get(kind);
  const e = { kind, ...exporter } as unknown as LayerExporter;
  if (old) throw new Error(`registerLayerExporter: kind '${kind}' already has an exporter`);
  exporters().set(kind, e);
}

/** The exporter of `layer`'s kind; a one-line LineageError naming the layer when there is none. */
export function layerExporter(layer: LinearLayer, where: string): LayerExporter {
  const e = exporters().get(layer.kind);
  if (!e)
    throw new LineageError(
      `layer '${where}' is a '${layer.kind}' layer, which cannot be exported to ONNX (exportable kinds: ${[...exporters().keys()].join(', ')}; densify it first with lineage convert --dense)`,
    );
  return e;
}

/** Kinds that have an exporter. */
export function exportableKinds(): string[] {
  return [...exporters().keys()];
}

/**
 * The short prefix of a layer's initializers: `model.layers.3.self_attn.q_proj` → `l3.q_proj`,
 * `model.embed_tokens` → `embed_tokens`. On a small model the names are a visible part of the file
 * (each is stored once and referenced by its nodes), so they are kept short but recognisable.
 */
export function initializerPrefix(name: string): string {
  return name
    .replace(/^model\.layers\.(\d+)\.(?:self_attn\.|mlp\.)?/, 'l$1.')
    .replace(/^model\./, '')
    .replace(/\.weight$/, '');
}

/** An ExportContext over `g` for the layer `name`. */
export function exportContext(g: GraphBuilder, name: string, dtype: WeightDType): ExportContext {
  const prefix = initializerPrefix(name);
  return {
    g,
    name,
    dtype,
    init: (suffix) => `${prefix}.${suffix}`,
    weight(suffix, data, dims, o = {}) {
      const init = `${prefix}.${suffix}`;
      if (dtype === 'fp32' && !o.half) {
        if (!g.has(init)) g.initializer(init, FLOAT, dims, data);
        return init;
      }
      if (!g.has(init)) {
        checkF16Range(`${name}.${suffix.replace(/_t$/, '')}`, data, dtype);
        g.initializer(init, FLOAT16, dims, f32ArrayToF16(data));
      }
      return g.shared(`${init} as f32`, () => g.op('Cast', [init], { to: FLOAT }));
    },
  };
}

/**
 * Refuses weights that float16 would store as infinities (the graph would compute NaN): one line naming the
 * tensor and its largest magnitude, as `convert --dtype f16` does.
 */
function checkF16Range(tensor: string, data: Float32Array, dtype: WeightDType): void {
  const m = finiteMagnitude(data).max;
  if (m < HALF_OVERFLOW_AT.f16) return;
  const fix = dtype === 'fp16' ? 'export with --dtype fp32' : 'it is stored 16-bit; convert it to f32 first';
  throw new LineageError(
    `tensor '${tensor}' has values up to ${m.toPrecision(6)} in magnitude, beyond the largest float16 (65504): storing it fp16 would make them infinite (${fix})`,
  );
}

/** Whether a stored tensor is 16-bit float (kept 16-bit in the export: see ExportContext.weight). */
export function isHalf(t: HostTensor): boolean {
  return t.dtype === 'f16' || t.dtype === 'bf16';
}

/** [rows, cols] row-major → [cols, rows] row-major. */
export function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}
