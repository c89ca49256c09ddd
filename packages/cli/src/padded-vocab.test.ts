/*
 * A Hugging Face checkpoint whose vocab_size is larger than its tokenizer (Qwen2, Llama-3 derivatives and
 * many fine-tunes pad the embedding to a round row count): the real stories260K converted, then padded from
 * 512 to 520 rows. It must load, evaluate, compress and save (the padding rows kept), and never generate a
 * padding id. Evaluation keeps the padding rows in the softmax, as transformers does: the perplexity is the
 * one of the padded model's full logits, not of its first 512 columns.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  evalSequences,
  JsBackend,
  type LlamaModel,
  loadModel,
  Ops,
  readTextFile,
  saveModel,
} from '@lineage/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  DEV,
  expectJson,
  expectOneLineError,
  lineage,
  MODEL,
  padVocab,
  SEP,
  tempDir,
} from './test-support.js';

const dir = tempDir('lineage-padded-vocab-');
const hf = join(dir, 'hf');
const PAD = 8;
const V = 512;
/** Padding rows of the size trained rows have (Qwen2's are its initialisation), deterministic. */
const small = (r: number, c: number) => 0.05 * Math.sin(97 * r + 13 * c + 1);
/** Padding rows large enough to win every argmax if they were not masked. */
const huge = (r: number, c: number) => 50 * Math.sin(31 * r + 7 * c + 2);

/** Embedding rows of a saved HF directory's safetensors, as raw bytes. */
function embeddingBytes(model: string): { bytes: Buffer; rows: number; cols: number } {
  const b = readFileSync(join(model, 'model.safetensors'));
  const n = Number(b.readBigUInt64LE(0));
  const t = JSON.parse(b.subarray(8, 8 + n).toString('utf8'))['model.embed_tokens.weight'];
  expect(t.dtype).toBe('F32');
  const [start, end] = t.data_offsets as [number, number];
  return { bytes: b.subarray(8 + n + start, 8 + n + end), rows: t.shape[0], cols: t.shape[1] };
}

/** Logits [T, V] of one sequence, read back. */
async function logitsOf(model: LlamaModel, ids: readonly number[]): Promise<Float32Array> {
  const ops = new Ops(new JsBackend());
  return ops.tidy(async () => ops.readF32(await model.forward(ops, Int32Array.from(ids), 1)));
}

const evalArgs = (model: string) => [
  'eval',
  model,
  '--data',
  DEV,
  '--doc-separator',
  SEP,
  '--limit',
  '6',
  '--json',
];

beforeAll(async () => {
  const { model } = await loadModel(MODEL);
  await saveModel(model, hf, { format: 'hf' });
  padVocab(hf, join(dir, 'padded'), PAD, small);
  padVocab(hf, join(dir, 'padded-huge'), PAD, huge);
}, 60_000);

describe('a padded vocabulary (tokenizer smaller than vocab_size)', () => {
  it('loads: inspect shows the padding rows', async () => {
    const info = expectJson(await lineage(['inspect', join(dir, 'padded'), '--json']));
    expect(info.config.vocab_size).toBe(V + PAD);
    expect(info.tokenizer).toMatchObject({ vocabSize: V, paddingRows: PAD });
    const text = await lineage(['inspect', join(dir, 'padded')]);
    expect(text.stdout).toContain(`(${V} tokens; vocab padded by ${PAD} rows, never generated)`);
  });

  it('evaluates as transformers does: the real logits unchanged, the padding rows in the softmax', async () => {
    const plain = (await loadModel(hf)).model;
    const padded = (await loadModel(join(dir, 'padded'))).model;
    const text = await readTextFile(DEV);
    const seqs = evalSequences(plain, text, { protocol: 'documents', separator: SEP, limit: 6 });
    // the reference: −log softmax over all V + PAD logits of the padded model, in float64, and the same
    // over the plain model's V (whose logits must be the padded model's first V columns)
    let hfNll = 0;
    let plainNll = 0;
    let count = 0;
    for (const s of seqs) {
      const a = await logitsOf(plain, s);
      const b = await logitsOf(padded, s);
      for (let t = 0; t + 1 < s.length; t++) {
        const rowA = a.subarray(t * V, (t + 1) * V);
        const rowB = b.subarray(t * (V + PAD), (t + 1) * (V + PAD));
        for (let i = 0; i < V; i++) expect(Math.abs(rowB[i]! - rowA[i]!)).toBeLessThan(1e-5);
        const lse = (row: Float32Array) => {
          let m = Number.NEGATIVE_INFINITY;
          for (const v of row) m = Math.max(m, v);
          let z = 0;
          for (const v of row) z += Math.exp(v - m);
          return m + Math.log(z);
        };
        const target = s[t + 1]!;
        hfNll += lse(rowB) - rowB[target]!;
        plainNll += lse(rowA) - rowA[target]!;
        count++;
      }
    }
    hfNll /= count;
    plainNll /= count;
    // the default backend (fused evaluation where it has one) and the js backend
    for (const backend of [[], ['--backend', 'js']]) {
      const p = expectJson(await lineage([...evalArgs(join(dir, 'padded')), ...backend]));
      expect(p.tokens).toBe(count);
      expect(Math.abs(p.nll - hfNll)).toBeLessThan(1e-5 * hfNll);
    }
    const q = expectJson(await lineage(evalArgs(hf)));
    expect(Math.abs(q.nll - plainNll)).toBeLessThan(1e-5 * plainNll);
    // the padding rows' share of the normaliser is small but real (HF counts it; so do we)
    expect(hfNll).toBeGreaterThan(plainNll);
  }, 60_000);

  it('never generates a padding id, even when those rows would win every argmax', async () => {
    const { model } = await loadModel(join(dir, 'padded-huge'));
    const prompt = model.tokenizer!.encode('Once upon a time', { bos: true });
    const logits = await logitsOf(model, prompt);
    const last = logits.subarray((prompt.length - 1) * (V + PAD));
    let best = 0;
    for (let i = 1; i < V + PAD; i++) if (last[i]! > last[best]!) best = i;
    expect(
      best,
      'the unmasked argmax is a padding id (the test would mean nothing otherwise)',
    ).toBeGreaterThanOrEqual(V);
    for (const sampling of [[], ['--temperature', '0.9', '--seed', '5']]) {
      const args = ['--max-tokens', '40', '--json', ...sampling];
      const plain = expectJson(await lineage(['generate', hf, ...args]));
      const padded = expectJson(await lineage(['generate', join(dir, 'padded-huge'), ...args]));
      expect(padded.ids.every((id: number) => id < V)).toBe(true);
      // the real rows' logits are the plain model's, so masking the padding gives its very tokens
      expect(padded.ids).toEqual(plain.ids);
      expect(padded.text).toBe(plain.text);
    }
  }, 60_000);

  it('compresses and saves with the padding rows kept; llama2.c (one piece per row) is refused', async () => {
    const out = join(dir, 'svd');
    const r = await lineage([
      'compress',
      join(dir, 'padded'),
      '--method',
      'svd',
      '--rank',
      '8',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const before = embeddingBytes(join(dir, 'padded'));
    const after = embeddingBytes(out);
    expect([after.rows, after.cols]).toEqual([V + PAD, before.cols]);
    expect(after.bytes.equals(before.bytes)).toBe(true);
    const info = expectJson(await lineage(['inspect', out, '--json']));
    expect(info.tokenizer).toMatchObject({ vocabSize: V, paddingRows: PAD });
    const p = expectJson(await lineage([...evalArgs(out)]));
    expect(Number.isFinite(p.ppl)).toBe(true);
    const bin = join(dir, 'padded.bin');
    const c = await lineage(['convert', join(dir, 'padded'), '--to', 'llama2c', '--out', bin]);
    expectOneLineError(
      c,
      /padded\.bin: the llama2\.c format needs a tokenizer piece for each of the model's 520 vocabulary rows, but the tokenizer has 512 .*save as hf/,
    );
    expect(existsSync(bin)).toBe(false);
    expect(existsSync(join(dir, 'tok520.bin'))).toBe(false);
  }, 60_000);

  it('a tokenizer larger than vocab_size is an error naming both files', async () => {
    const cut = join(dir, 'cut');
    padVocab(hf, cut, -8);
    const r = await lineage(['eval', cut, '--data', DEV, '--limit', '2']);
    expectOneLineError(
      r,
      /tokenizer\.json: tokenizer has 512 tokens, more than the 504 of the model's vocabulary \(.*cut\/config\.json\): ids 504\.\.511 have no embedding row/,
    );
  });
});
