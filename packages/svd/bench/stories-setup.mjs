// The PLRD benches' shared setup: stories260K, its training text and the held-out set they all score on.
// Held out: the LAST 200 TinyStories dev stories (valid-dev.txt documents 600–799), documents protocol,
// truncated to 512. Training: train-head.txt (one stream) + the first 600 dev stories.
// Smoke runs (--smoke, LINEAGE_BENCH_SMOKE=1) score on the first 20 of those 200 only.
import { loadModel, perplexity, readTextFile, sharedPath, splitDocuments } from '@lineage/core';
import { smoke } from '../../../scripts/bench-kit.mjs';

export const SEP = '<|endoftext|>';
export const trainPath = sharedPath('data', 'tinystories', 'train-head.txt');
const devPath = sharedPath('data', 'tinystories', 'valid-dev.txt');
export const data = [{ path: trainPath }, { path: devPath, separator: SEP, documents: [0, 600] }];
const heldOut = splitDocuments(await readTextFile(devPath), SEP)
  .slice(600, smoke ? 620 : 800)
  .join(`\n${SEP}\n`);

/** The parent, stories260K. */
export const loadParent = async () =>
  (await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'))).model;

/** Held-out perplexity of `m` on `backend`. */
export const heldOutPpl = async (m, backend) =>
  (await perplexity(m, backend, heldOut, { protocol: 'documents', separator: SEP, seqLen: 512 })).ppl;

/** '200k' → 200000. */
export const tokenCount = (s) => Number(s.replace(/k$/, '000'));
