import { createHash } from 'node:crypto';
import type { Backend } from '../backend/backend.js';
import { Ops } from '../backend/ops.js';
import { memoised } from '../data/token-memo.js';
import type { LlamaModel } from '../nn/llama.js';
import { encodePrefix } from '../tokenizer/tokenizer.js';
import { LineageError } from '../util/errors.js';
import { splitDocuments } from './documents.js';

export type EvalProtocol = 'documents' | 'stream';

export interface PerplexityOptions {
  /** `documents`: each document alone with BOS, truncated to seqLen. `stream`: one token stream in non-overlapping windows. */
  protocol: EvalProtocol;
  /** Documents protocol: separator line (e.g. `<|endoftext|>`). */
  separator?: string;
  /** Window length (stream) or truncation length (documents); default: the model's context. */
  seqLen?: number;
  /** Sequences per forward pass (default 8). Results do not depend on it. */
  batchSize?: number;
  /** Score at most this many documents / windows. */
  limit?: number;
  onProgress?: (p: { done: number; total: number; tokens: number }) => void;
  /**
   * Use the backend's fused evaluation (`backend.fused`: one graph for the whole model, logits and loss
   * inside the runtime) when it offers one; the per-op path otherwise, and when the model has something
   * the fused graph cannot express (`onFusedFallback` says why, once). Only for a model that does not change
   * during the call (a frozen model: `lineage eval`, held-out scoring); default false.
   */
  fused?: boolean;
  onFusedFallback?: (reason: string) => void;
}

export interface PerplexityResult {
  ppl: number;
  /** Mean negative log-likelihood per scored token (nats). */
  nll: number;
  /** Scored tokens (predictions). */
  tokens: number;
  /** Documents or windows scored. */
  sequences: number;
  protocol: EvalProtocol;
  seqLen: number;
  /** Whether every batch ran on the backend's fused evaluation. */
  fused: boolean;
}

/** Tokenised sequences for a protocol (each starting with BOS in the documents protocol). */
export function evalSequences(
  model: LlamaModel,
  text: string,
  opts: PerplexityOptions,
  file?: string,
): number[][] {
  const tok = model.tokenizer;
  if (!tok) throw new LineageError('the model has no tokenizer; pass --tokenizer', file);
  const seqLen = opts.seqLen ?? model.config.maxPositions;
  if (!Number.isInteger(seqLen) || seqLen < 2)
    throw new LineageError(`sequence length must be an integer ≥ 2, got ${seqLen}`);
  if (seqLen > model.config.maxPositions) {
    throw new LineageError(
      `sequence length ${seqLen} exceeds the model's context of ${model.config.maxPositions} (lower --seq-len)`,
    );
  }
  if (opts.protocol === 'documents' && !opts.separator)
    throw new LineageError('the documents protocol needs a separator');
  // memoised per tokenizer: a trainer evaluating every n steps, or once per recovery, tokenizes once
  const key = `eval\0${createHash('sha256').update(text).digest('hex')}\0${opts.protocol}\0${opts.separator ?? ''}\0${seqLen}\0${opts.limit ?? ''}`;
  const seqs = memoised(tok, key, () => {
    let seqs: number[][];
    if (opts.protocol === 'documents') {
      const docs = splitDocuments(text, opts.separator!);
      seqs = docs.slice(0, opts.limit ?? docs.length).map((d) => encodePrefix(tok, d, seqLen, { bos: true }));
    } else {
      // with a limit only the windows scored are tokenized (a 5 MB line with --limit 4 takes 2048 tokens)
      const trimmed = text.trim();
      const ids =
        opts.limit === undefined
          ? tok.encode(trimmed, { bos: true })
          : encodePrefix(tok, trimmed, opts.limit * seqLen, { bos: true });
      seqs = [];
      for (
        let i = 0;
        i + 1 < ids.length && seqs.length < (opts.limit ?? Number.POSITIVE_INFINITY);
        i += seqLen
      ) {
        seqs.push(ids.slice(i, i + seqLen));
      }
    }
    return seqs.filter((s) => s.length >= 2);
  });
  if (!seqs.length) throw new LineageError('the data yields no sequence of at least two tokens', file);
  return seqs.map((s) => s.slice());
}

/**
 * Perplexity of `model` on `text`. Sequences of a batch are right-padded: with causal attention, padding
 * after a sequence cannot change the logits of its real positions, so batching is exact.
 */
export async function perplexity(
  model: LlamaModel,
  backend: Backend,
  text: string,
  opts: PerplexityOptions,
  file?: string,
): Promise<PerplexityResult> {
  const seqs = evalSequences(model, text, opts, file);
  const seqLen = opts.seqLen ?? model.config.maxPositions;
  const batchSize = Math.max(1, opts.batchSize ?? 8);
  // Sorting by length keeps padding small; the sum over tokens does not depend on order.
  const order = seqs.map((s, i) => [s.length, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const ops = new Ops(backend);
  let nllSum = 0;
  let count = 0;
  let done = 0;
  let fused = opts.fused ? backend.fused : undefined;
  for (let start = 0; start < order.length; start += batchSize) {
    const group = order.slice(start, start + batchSize).map(([, i]) => seqs[i]!);
    const T = group[0]!.length;
    const B = group.length;
    const ids = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    const valid = new Uint8Array(B * T);
    group.forEach((s, b) => {
      for (let t = 0; t < s.length; t++) ids[b * T + t] = s[t]!;
      for (let t = 0; t + 1 < s.length; t++) {
        targets[b * T + t] = s[t + 1]!;
        valid[b * T + t] = 1;
      }
    });
    let nll: Float32Array | undefined;
    if (fused) {
      const r = await fused.nll(model, ids, targets, B);
      if ('unsupported' in r) {
        opts.onFusedFallback?.(r.unsupported);
        fused = undefined;
      } else nll = r;
    }
    nll ??= await ops.tidy(async () => {
      const h = await model.hidden(ops, ids, B);
      const flat = await ops.reshape(h, [B * T, model.config.hiddenSize]);
      const logits = await model.logits(ops, flat);
      return ops.readF32(await ops.crossEntropy(logits, ops.upload(targets, [B * T])));
    });
    for (let i = 0; i < nll.length; i++) {
      if (valid[i]) {
        nllSum += nll[i]!;
        count++;
      }
    }
    done += B;
    opts.onProgress?.({ done, total: seqs.length, tokens: count });
  }
  const mean = nllSum / count;
  // A NaN loss is no perplexity: printing "NaN" (or JSON null) with success would hide a broken model.
  if (Number.isNaN(mean))
    throw new LineageError(
      "perplexity is NaN: the model's outputs are not finite (NaN or infinite weights, or an overflow)",
    );
  return {
    ppl: Math.exp(mean),
    nll: mean,
    tokens: count,
    sequences: seqs.length,
    protocol: opts.protocol,
    seqLen,
    fused: fused !== undefined,
  };
}
