import { JsBackend, loadModel, perplexity, readTextFile, splitDocuments } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { perturbLinearWeights } from './init.js';
import { distill } from './trainer.js';

// The full experiment (≤ 300k tokens, all 200 held-out stories, perplexity back within 10% of the
// original's) takes minutes: it is bench/recovery.mjs, recorded in BENCHMARKS.md. This is the same
// experiment shortened to fit a test on the js backend: 8 steps of 8 × 128 tokens, 20 held-out stories.
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const SEP = '<|endoftext|>';

describe('recovery of a damaged stories260K by distillation from the original', () => {
  it('recovers most of the held-out log-perplexity gap in 8k tokens', async () => {
    const js = new JsBackend();
    const { model: teacher } = await loadModel(MODEL);
    const { model: student } = await loadModel(MODEL);
    perturbLinearWeights(student, 0.3, 1);
    // held out: the last dev stories (never trained on); training: train-head + the first 600 dev stories
    const heldOut = { path: DEV, separator: SEP, documents: [780, 800] as [number, number] };
    const text = splitDocuments(await readTextFile(DEV), SEP)
      .slice(780)
      .join(`\n${SEP}\n`);
    const original = await perplexity(teacher, js, text, {
      protocol: 'documents',
      separator: SEP,
      seqLen: 256,
    });
    const r = await distill({
      teacher,
      student,
      data: [TRAIN, { path: DEV, separator: SEP, documents: [0, 600] }],
      evalData: heldOut,
      evalSeqLen: 256,
      tokens: 8 * 1024,
      seqLen: 128,
      batchSize: 8,
      lr: 3e-3,
      backend: js,
      teacherBackend: js,
    });
    const noised = r.evals[0]!.nll;
    const recovered = r.evals[r.evals.length - 1]!.nll;
    const fraction = (noised - recovered) / (noised - original.nll);
    console.log(
      `held-out ppl: original ${original.ppl.toFixed(3)}, noised ${Math.exp(noised).toFixed(3)}, after ${r.tokens} tokens ${Math.exp(recovered).toFixed(3)} (${(100 * fraction).toFixed(0)}% of the log gap)`,
    );
    expect(Math.exp(noised)).toBeGreaterThan(5 * original.ppl); // the damage is real
    expect(fraction).toBeGreaterThan(0.45); // measured: 60%
  }, 900_000); // minutes on the single-threaded js backend, more on a busy machine
});
