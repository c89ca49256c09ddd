import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { JsBackend, KVCache, type LlamaModel, Ops } from '@lineage/core';
import * as ort from 'onnxruntime-node';

// Test helpers for exported models (`@lineage/onnx/testing`; onnxruntime-node and, for the checker, a Python
// with the onnx package are the caller's): shared by this package's tests and the CLI's export tests.

/** A Python with the `onnx` package (scripts/setup-onnx-checker.sh installs Debian's python3-onnx), if any. */
export function pythonWithOnnx(): string | undefined {
  for (const py of ['python3', '/usr/bin/python3'])
    if (spawnSync(py, ['-c', 'import onnx'], { encoding: 'utf8' }).status === 0) return py;
  return undefined;
}

/** Runs onnx.checker's full check on `dir`/onnx/model.onnx with `python`: its exit status and stderr. */
export function onnxCheck(python: string, dir: string): { status: number | null; stderr: string } {
  const r = spawnSync(
    python,
    [
      '-c',
      'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)',
      join(dir, 'onnx', 'model.onnx'),
    ],
    { encoding: 'utf8' },
  );
  return { status: r.status, stderr: r.stderr };
}

/** Lineage's own logits [T·V] for `ids` (after `prefix` in the cache when given), on the JS backend. */
export async function lineageLogits(
  model: LlamaModel,
  ids: number[],
  prefix: number[] = [],
): Promise<Float32Array> {
  const ops = new Ops(new JsBackend());
  const cache = new KVCache(ops);
  if (prefix.length) ops.dispose(await model.forward(ops, Int32Array.from(prefix), 1, cache));
  const y = await model.forward(ops, Int32Array.from(ids), 1, prefix.length ? cache : undefined);
  const out = await ops.readF32(y);
  ops.dispose(y);
  cache.dispose();
  return out;
}

const i64 = (v: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), dims);

/**
 * onnxruntime's logits for `ids` after `prefix`: the prefix is run first with an empty cache and its
 * `present` outputs fed back as `past_key_values` (the decoding loop transformers.js runs).
 */
export async function onnxLogits(
  session: ort.InferenceSession,
  model: LlamaModel,
  ids: number[],
  prefix: number[] = [],
): Promise<Float32Array> {
  const { numLayers: L, numKvHeads: Hkv, headDim: D } = model.config;
  const cached = session.inputNames.includes('past_key_values.0.key');
  let past: Record<string, ort.Tensor> = {};
  if (cached)
    for (let l = 0; l < L; l++)
      for (const kv of ['key', 'value'])
        past[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [1, Hkv, 0, D]);
  const run = async (tokens: number[], offset: number) => {
    const n = tokens.length;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: i64(tokens, [1, n]),
      attention_mask: i64(Array(offset + n).fill(1), [1, offset + n]),
      position_ids: i64(
        tokens.map((_, i) => offset + i),
        [1, n],
      ),
      ...past,
    };
    const out = await session.run(feeds);
    past = {};
    if (cached)
      for (let l = 0; l < L; l++)
        for (const kv of ['key', 'value']) past[`past_key_values.${l}.${kv}`] = out[`present.${l}.${kv}`]!;
    return out.logits!.data as Float32Array;
  };
  if (prefix.length) await run(prefix, 0);
  return run(ids, prefix.length);
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Right-padded [B, T] ids and next-token targets (0 where there is no target), as perplexity() batches. */
export function nllBatch(seqs: number[][]): { ids: Int32Array; targets: Int32Array; B: number; T: number } {
  const B = seqs.length;
  const T = Math.max(...seqs.map((s) => s.length));
  const ids = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  seqs.forEach((s, b) => {
    ids.set(s, b * T);
    targets.set(s.slice(1), b * T);
  });
  return { ids, targets, B, T };
}

/** Lineage's per-op per-token cross-entropy [B·T] on the JS backend (the reference of the `nll` head). */
export async function lineageNll(model: LlamaModel, seqs: number[][]): Promise<Float32Array> {
  const { ids, targets, B, T } = nllBatch(seqs);
  const ops = new Ops(new JsBackend());
  return ops.tidy(async () => {
    const h = await ops.reshape(await model.hidden(ops, ids, B), [B * T, model.config.hiddenSize]);
    return ops.readF32(await ops.crossEntropy(await model.logits(ops, h), ops.upload(targets, [B * T])));
  });
}

/** The `nll` head's output [B·T] for the same batch. */
export async function onnxNll(session: ort.InferenceSession, seqs: number[][]): Promise<Float32Array> {
  const { ids, targets, B, T } = nllBatch(seqs);
  const big = (a: ArrayLike<number>) =>
    new ort.Tensor('int64', BigInt64Array.from(Array.from(a, BigInt)), [B, T]);
  const out = await session.run({
    input_ids: big(ids),
    attention_mask: big(new Int32Array(B * T).fill(1)),
    position_ids: big(Array.from({ length: B * T }, (_, i) => i % T)),
    targets: big(targets),
  });
  return out.nll!.data as Float32Array;
}
