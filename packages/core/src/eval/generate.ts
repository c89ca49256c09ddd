import type { Backend } from '../backend/backend.js';
import { Ops } from '../backend/ops.js';
import { KVCache, type LlamaModel } from '../nn/llama.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LineageError } from '../util/errors.js';
import { Random } from '../util/random.js';

export interface GenerateOptions {
  /** New tokens to produce at most. */
  maxTokens: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches topP (default 1). */
  topP?: number;
  seed?: number;
  /** Stop at the end-of-sequence token (default true). */
  stopAtEos?: boolean;
  /** Called with each new token id. */
  onToken?: (id: number) => void;
}

export interface GenerateResult {
  /** Prompt ids followed by generated ids. */
  ids: number[];
  /** Generated ids only. */
  generated: number[];
  /** Decoded generated text (when the model has a tokenizer). */
  text?: string;
}

/** Picks the next token from logits: argmax when temperature is 0, else seeded temperature + top-p sampling. */
export function sampleToken(logits: Float32Array, temperature: number, topP: number, rng: Random): number {
  if (temperature <= 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let max = Number.NEGATIVE_INFINITY;
  for (const v of logits) if (v > max) max = v;
  const probs = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += probs[i] = Math.exp((logits[i]! - max) / temperature);
  const idx = Array.from(probs.keys());
  let cutoff = idx.length;
  if (topP < 1) {
    idx.sort((a, b) => probs[b]! - probs[a]! || a - b);
    let acc = 0;
    for (let k = 0; k < idx.length; k++) {
      acc += probs[idx[k]!]! / sum;
      if (acc >= topP) {
        cutoff = k + 1;
        break;
      }
    }
  }
  let mass = 0;
  for (let k = 0; k < cutoff; k++) mass += probs[idx[k]!]!;
  let r = rng.next() * mass;
  for (let k = 0; k < cutoff; k++) {
    r -= probs[idx[k]!]!;
    if (r < 0) return idx[k]!;
  }
  // rounding left r ≥ 0: the last token that could be drawn (never a masked one, of probability 0)
  for (let k = cutoff - 1; k > 0; k--) if (probs[idx[k]!]! > 0) return idx[k]!;
  return idx[0]!;
}

/**
 * A NaN or +Inf logit means the model's numbers broke down (non-finite weights, an overflow): argmax would
 * pick token 0 every step and print garbage with exit 0, so it is an error instead.
 */
function assertLogitsFinite(logits: Float32Array, step: number): void {
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (Number.isNaN(v) || v === Number.POSITIVE_INFINITY) {
      throw new LineageError(
        `the model produced a ${Number.isNaN(v) ? 'NaN' : 'infinite'} logit (token ${i}) at generation step ${step + 1}; its weights or activations are not finite`,
      );
    }
  }
}

/**
 * The text of `generated` as it continues `prompt`: decoded together and cut after the prompt's text, since a
 * tokenizer decoding a sequence on its own drops the first piece's leading space (transformers' Llama
 * decoder strips it; run.c right after BOS), which would glue the continuation to the prompt.
 */
export function decodeContinuation(
  tok: Tokenizer,
  prompt: readonly number[],
  generated: readonly number[],
): string {
  const head = tok.decode(prompt);
  const whole = tok.decode([...prompt, ...generated]);
  return whole.startsWith(head) ? whole.slice(head.length) : tok.decode(generated);
}

/** Autoregressive generation with a KV cache. `prompt` is text (BOS is prepended) or token ids. */
export async function generate(
  model: LlamaModel,
  backend: Backend,
  prompt: string | readonly number[],
  opts: GenerateOptions,
): Promise<GenerateResult> {
  const tok = model.tokenizer;
  let ids: number[];
  if (typeof prompt === 'string') {
    if (!tok) throw new LineageError('the model has no tokenizer; pass token ids or --tokenizer');
    ids = tok.encode(prompt, { bos: true });
  } else ids = [...prompt];
  if (!ids.length) throw new LineageError('empty prompt');
  const max = Math.min(opts.maxTokens, model.config.maxPositions - ids.length);
  if (max < 0)
    throw new LineageError(
      `prompt of ${ids.length} tokens exceeds the model's context of ${model.config.maxPositions}`,
    );
  const rng = new Random(opts.seed ?? 0);
  const eos = model.config.eosTokenId ?? tok?.eosId;
  const ops = new Ops(backend);
  const cache = new KVCache(ops);
  const generated: number[] = [];
  try {
    let input = ids;
    for (let step = 0; step < max; step++) {
      const last = await ops.tidy(async () => {
        const logits = await model.forward(ops, Int32Array.from(input), 1, cache);
        const V = model.config.vocabSize;
        const row = await ops.slice(logits, [0, input.length - 1, 0], [1, 1, V]);
        return ops.readF32(row);
      });
      assertLogitsFinite(last, step);
      // a padded vocabulary's rows past the tokenizer are never emitted: the tokenizer could not decode them
      if (tok && tok.vocabSize < last.length) last.fill(Number.NEGATIVE_INFINITY, tok.vocabSize);
      const next = sampleToken(last, opts.temperature ?? 0, opts.topP ?? 1, rng);
      if ((opts.stopAtEos ?? true) && next === eos) break;
      generated.push(next);
      opts.onToken?.(next);
      input = [next];
    }
  } finally {
    cache.dispose();
  }
  const all = [...ids, ...generated];
  return { ids: all, generated, ...(tok ? { text: decodeContinuation(tok, ids, generated) } : {}) };
}
