import { evalSequences, LineageError, type LlamaModel } from '@lineage/core';
import { holdOut, loadSources, tokenizeSources, tokensHash, WindowSampler } from './data.js';
import { type EvalSetup, evalSetup } from './evaluate.js';
import type { Setup } from './train-config.js';
import type { CommonTrainOptions } from './trainer.js';

/** The run's training stream, its sampler and the held-out evaluation (when there is one). */
export interface TrainData {
  tokens: Int32Array;
  /** sha256 of the token stream (recorded in the run config). */
  hash: string;
  name: string;
  seed: number;
  sampler: WindowSampler;
  ev: EvalSetup | undefined;
}

/** Checks that the teacher tokenizes text as the student does (same vocabulary size is not enough). */
function checkTokenizers(student: LlamaModel, teacher: LlamaModel, sample: string): void {
  const a = student.tokenizer;
  const b = teacher.tokenizer;
  if (!a || !b) return;
  const probe = sample.slice(0, 2000);
  const x = a.encode(probe, { bos: true });
  const y = b.encode(probe, { bos: true });
  if (x.length !== y.length || x.some((v, i) => v !== y[i]))
    throw new LineageError(
      `the teacher (${b.source}) and the student (${a.source}) tokenize the data differently: distillation needs the same tokenizer`,
    );
}

/** Loads and tokenizes the training (and evaluation) text, and positions the sampler. */
export async function prepareData(s: Setup, o: CommonTrainOptions, seqLen: number): Promise<TrainData> {
  const model = s.model;
  let sources = await loadSources(o.data);
  let heldOut: { docs: string[]; separator: string; from: string } | undefined;
  if (o.holdout) {
    if (o.evalData) throw new LineageError('give either evaluation data or a holdout, not both');
    const h = holdOut(sources, o.holdout);
    sources = h.train;
    heldOut = { docs: h.heldOut, separator: h.separator, from: h.from };
  }
  if (s.teacher) checkTokenizers(model, s.teacher, sources[0]!.documents[0]!);
  const tokens = tokenizeSources(sources, model.tokenizer!);
  const name = sources.map((x) => x.name).join(' + ');
  const seed = o.seed ?? 0;
  const sampler = new WindowSampler(tokens, seqLen, seed, name);
  if (o.dataStart) sampler.load(o.dataStart);
  const ev = await evalSetup(o, model, seqLen, heldOut);
  if (ev) {
    // fail now, not after the first steps, on evaluation data that yields no sequence
    evalSequences(model, ev.text, ev.options, ev.name);
  }
  return { tokens, hash: tokensHash(tokens), name, seed, sampler, ev };
}
