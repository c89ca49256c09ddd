import {
  type FusedEvaluation,
  type FusedUnsupported,
  type HostTensor,
  LineageError,
  type LlamaModel,
} from '@lineage/core';
import { buildLlamaGraph, FUSED_NLL_KERNELS, type LlamaGraphOptions } from '@lineage/onnx';
import type { OrtModule, OrtSession, OrtSessionOptions, OrtTensor } from './load-runtime.js';

interface Entry {
  /** The model's parameter values the session was built from (by identity: replacing one invalidates). */
  values: HostTensor[];
  session: Promise<OrtSession> | FusedUnsupported;
  /** Released to bound memory (see MAX_SESSIONS): the next call builds it again. */
  released?: boolean;
}

/**
 * Sessions kept at once: each holds a copy of its model's weights, and a family scores one member after
 * another, so the least recently built ones are released (a later call on their model rebuilds).
 */
const MAX_SESSIONS = 2;

const sameValues = (a: readonly HostTensor[], b: readonly HostTensor[]) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Fused evaluation on onnxruntime: the model's forward with the cross-entropy head (`buildLlamaGraph` with
 * `head: 'nll'`, every layer kind through its registered exporter) as one InferenceSession per model, its
 * weights initializers built once and cached (WeakMap on the model) until a parameter's value is replaced.
 * A model the graph cannot express (a layer kind without an exporter, a graph over protobuf's 2 GiB) is
 * reported unsupported once and remembered, and the caller stays on the per-op path.
 */
export class OrtFusedEvaluation implements FusedEvaluation {
  private readonly cache = new WeakMap<LlamaModel, Entry>();
  /** Live sessions in build order (a WeakMap cannot be walked), for the bound and `close`. */
  private readonly open = new Map<Promise<OrtSession>, Entry>();
  private closed = false;

  /**
   * `graph` picks the graph's kernels (default FUSED_NLL_KERNELS, the fastest measured; benches compare
   * others) and node names for onnxruntime's profiler.
   */
  constructor(
    private readonly ort: OrtModule,
    private readonly options: OrtSessionOptions,
    private readonly graph: Pick<LlamaGraphOptions, 'kernels' | 'nodeNames'> = { kernels: FUSED_NLL_KERNELS },
  ) {}

  async nll(
    model: LlamaModel,
    ids: Int32Array,
    targets: Int32Array,
    batch: number,
  ): Promise<Float32Array | FusedUnsupported> {
    if (this.closed) throw new LineageError('the onnxruntime backend was closed');
    // Ids outside the vocabulary: the per-op path reports them with its one-line error.
    const V = model.config.vocabSize;
    for (const a of [ids, targets])
      for (let i = 0; i < a.length; i++)
        if (!(a[i]! >= 0 && a[i]! < V)) return { unsupported: `token id ${a[i]} outside the vocabulary` };
    const entry = this.entry(model);
    const { session } = entry;
    if ('unsupported' in session) return session;
    let s: OrtSession;
    try {
      s = await session;
    } catch (e) {
      // onnxruntime refused the graph: remember why, and stay on the per-op path for this model
      this.open.delete(session);
      entry.session = { unsupported: `onnxruntime cannot load the fused graph: ${(e as Error).message}` };
      return entry.session;
    }
    const T = ids.length / batch;
    const i64 = (v: ArrayLike<number>) =>
      new this.ort.Tensor('int64', BigInt64Array.from(Array.from(v, BigInt)), [batch, T]);
    const positions = new Int32Array(batch * T);
    for (let i = 0; i < positions.length; i++) positions[i] = i % T;
    // Right padding needs no mask: causal attention keeps it out of the real positions' losses. Positions
    // 0…T−1 in every row (what GroupQueryAttention's own RoPE assumes).
    const out = (await s.run({
      input_ids: i64(ids),
      attention_mask: i64(new Int32Array(batch * T).fill(1)),
      position_ids: i64(positions),
      targets: i64(targets),
    })) as Record<string, OrtTensor>;
    const nll = out.nll!.data;
    if (!(nll instanceof Float32Array)) throw new TypeError(`onnxruntime fused nll: got ${out.nll!.type}`);
    return nll;
  }

  private entry(model: LlamaModel): Entry {
    const values = [...model.namedParameters().values()].map((p) => p.value);
    const old = this.cache.get(model);
    if (old && !old.released && sameValues(old.values, values)) return old;
    if (old && !old.released && !('unsupported' in old.session)) this.release(old.session);
    let session: Entry['session'];
    try {
      const { graph, opset, opsets, irVersion } = buildLlamaGraph(model, { ...this.graph, head: 'nll' });
      const bytes = graph.serialize({ opset, opsets, irVersion }).model;
      session = this.ort.InferenceSession.create(bytes, this.options);
    } catch (e) {
      session = { unsupported: e instanceof Error ? e.message : String(e) };
    }
    const entry: Entry = { values, session };
    this.cache.set(model, entry);
    if (!('unsupported' in session)) {
      this.open.set(session, entry);
      for (const [p, e] of this.open) {
        if (this.open.size <= MAX_SESSIONS) break;
        e.released = true;
        this.release(p);
      }
    }
    return entry;
  }

  private release(p: Promise<OrtSession>): void {
    this.open.delete(p);
    p.then(
      (s) => s.release(),
      () => {},
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.open.keys()];
    for (const e of this.open.values()) e.released = true;
    this.open.clear();
    for (const p of all) {
      try {
        await (await p).release();
      } catch {
        // a session that failed to build has nothing to release
      }
    }
  }
}
