import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import {
  type Backend,
  keepLayers,
  type LlamaModel,
  modelFingerprint,
  perplexity,
  type TextData,
  writeFileAtomic,
} from '@lineage/core';

/** How much text scores depth by LM loss (the paper's "LM-loss increase when a layer is removed"). */
export interface DepthLossOptions {
  /** Sequences (documents, or stream windows) scored per removal (default 32). */
  samples?: number;
  /** Tokens per sequence (default min(128, context)). */
  seqLen?: number;
  /**
   * Cache file (JSON, beside the statistics file): scores already computed for this model and text are
   * read back instead of recomputed, new ones are added.
   */
  cache?: string;
  log?: (msg: string) => void;
}

interface CacheFile {
  format: 'lineage-minitron-depth';
  version: 1;
  /** `${modelFingerprint}|${textHash}|${samples}|${seqLen}` → removed-block size → loss increase per start. */
  entries: Record<string, Record<string, number[]>>;
}

function readCache(path: string | undefined): CacheFile {
  const empty: CacheFile = { format: 'lineage-minitron-depth', version: 1, entries: {} };
  if (!path || !existsSync(path)) return empty;
  try {
    const c = JSON.parse(readFileSync(path, 'utf8')) as CacheFile;
    return c.format === 'lineage-minitron-depth' && c.version === 1 && c.entries ? c : empty;
  } catch {
    return empty; // a damaged cache is recomputed and rewritten
  }
}

/**
 * The LM-loss increase (mean nats per token, on `text`) when each contiguous block of `size` layers is
 * removed: entry i for layers [i, i + size). Lower: the block matters less. size 1 scores single layers.
 * Results are cached per model fingerprint, text, sample count and length.
 */
export async function depthLossIncrease(
  model: LlamaModel,
  backend: Backend,
  text: TextData,
  size: number,
  o: DepthLossOptions = {},
): Promise<Float64Array> {
  const L = model.config.numLayers;
  const samples = o.samples ?? 32;
  const seqLen = o.seqLen ?? Math.min(128, model.config.maxPositions);
  const key = [
    modelFingerprint(model),
    createHash('sha256').update(text.text).digest('hex').slice(0, 16),
    samples,
    seqLen,
  ].join('|');
  const cache = readCache(o.cache);
  const hit = cache.entries[key]?.[String(size)];
  if (hit && hit.length === L - size + 1) {
    o.log?.(`depth scores (LM loss, blocks of ${size}) read from ${o.cache}`);
    return Float64Array.from(hit);
  }
  const opts = {
    protocol: text.separator ? ('documents' as const) : ('stream' as const),
    ...(text.separator ? { separator: text.separator } : {}),
    seqLen,
    limit: samples,
  };
  const nll = async (m: LlamaModel) => (await perplexity(m, backend, text.text, opts)).nll;
  const t0 = performance.now();
  const base = await nll(model);
  const out = new Float64Array(L - size + 1);
  for (let i = 0; i + size <= L; i++) {
    const keep = Array.from({ length: L }, (_, l) => l).filter((l) => l < i || l >= i + size);
    const pruned = keepLayers(model, keep);
    out[i] = (await nll(pruned)) - base;
    pruned.release();
  }
  o.log?.(
    `depth scores (LM loss, blocks of ${size}) on ${samples} × ${seqLen} tokens: ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  if (o.cache) {
    cache.entries[key] = { ...(cache.entries[key] ?? {}), [String(size)]: [...out] };
    await writeFileAtomic(o.cache, `${JSON.stringify(cache, null, 1)}\n`);
  }
  return out;
}

/** Layers kept when the contiguous block of `drop` layers whose removal costs least is removed. */
export function keepAroundBlock(increase: Float64Array, L: number, drop: number): number[] {
  let best = 0;
  for (let i = 1; i < increase.length; i++) if (increase[i]! < increase[best]!) best = i;
  return Array.from({ length: L }, (_, l) => l).filter((l) => l < best || l >= best + drop);
}
