import type { FusedEvaluation, FusedUnsupported, HostTensor, LlamaModel } from '@lineage/core';
import { buildLlamaGraph } from '@lineage/onnx';
import type { OrtModule, OrtSession, OrtSessionOptions, OrtTensor } from './load-runtime.js';

interface Entry {
  /** The model's parameter values the session was built from (by identity: replacing one invalidates). */
  values: HostTensor[];
  session: Promise<OrtSession> | FusedUnsupported;
}

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
  /** Every session built (a WeakMap cannot be walked), for `close`. */
  private readonly open = new Set<Promise<OrtSession>>();

  constructor(
    private readonly ort: OrtModule,
    private readonly options: OrtSessionOptions,
  ) {}

  async nll(
    model: LlamaModel,
    ids: Int32Array,
    targets: Int32Array,
    batch: number,
  ): Promise<Float32Array | FusedUnsupported> {
    const { session } = this.entry(model);
    if ('unsupported' in session) return session;
    const s = await session;
    const T = ids.length / batch;
    const i64 = (v: ArrayLike<number>) =>
      new this.ort.Tensor('int64', BigInt64Array.from(Array.from(v, BigInt)), [batch, T]);
    const positions = new Int32Array(batch * T);
    for (let i = 0; i < positions.length; i++) positions[i] = i % T;
    // Right padding needs no mask: causal attention keeps it out of the real positions' losses.
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
    if (old && sameValues(old.values, values)) return old;
    if (old && !('unsupported' in old.session)) this.release(old.session);
    let session: Entry['session'];
    try {
      const { graph, opset, opsets, irVersion } = buildLlamaGraph(model, { head: 'nll' });
      const bytes = graph.serialize({ opset, opsets, irVersion }).model;
      const p = this.ort.InferenceSession.create(bytes, this.options);
      this.open.add(p);
      session = p;
    } catch (e) {
      session = { unsupported: e instanceof Error ? e.message : String(e) };
    }
    const entry = { values, session };
    this.cache.set(model, entry);
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
    const all = [...this.open];
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
