// Writes the damaged stories260K of the recovery bench and issue #18 as a llama2.c file, plus the data
// split the issue measures with, so that the CLI's recovery (`lineage distill` with default flags) can be
// timed and scored as a new user would run it.
//
// node packages/distill/bench/damage.mjs --out <dir> [--sigma 0.3] [--seed 1] (--smoke: into a temporary dir)
//   <dir>/damaged.bin        every linear weight × (1 + σ·N(0,1)), seeded (perturbLinearWeights)
//   <dir>/train-dev600.txt   the first 600 dev stories (documents, '<|endoftext|>' separated)
//   <dir>/heldout-dev200.txt the last 200 dev stories (never trained on)
// Then: lineage distill --teacher <stories260K.bin> --student <dir>/damaged.bin --data train-head.txt
//   --data <dir>/train-dev600.txt --doc-separator '<|endoftext|>' --tokens 300k --out <out>
// and `lineage eval <out> --data <dir>/heldout-dev200.txt --doc-separator '<|endoftext|>'`.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel, readTextFile, saveModel, sharedPath, splitDocuments } from '@lineage/core';
import { smoke } from '../../../scripts/bench-kit.mjs';
import { perturbLinearWeights } from '../dist/index.js';

const { values: a } = parseArgs({
  options: {
    out: { type: 'string' },
    sigma: { type: 'string', default: '0.3' },
    seed: { type: 'string', default: '1' },
    smoke: { type: 'boolean' },
  },
});
// --smoke (scripts/bench-smoke.mjs): the same files in a temporary directory, removed afterwards
if (smoke && !a.out) a.out = mkdtempSync(join(tmpdir(), 'lineage-damage-'));
if (!a.out) throw new Error('--out <dir> is required');
mkdirSync(a.out, { recursive: true });
const SEP = '<|endoftext|>';
const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
perturbLinearWeights(model, Number(a.sigma), Number(a.seed));
await saveModel(model, join(a.out, 'damaged.bin'), { format: 'llama2c', overwrite: true });
const docs = splitDocuments(await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt')), SEP);
if (docs.length !== 800) throw new Error(`expected 800 dev stories, found ${docs.length}`);
writeFileSync(join(a.out, 'train-dev600.txt'), `${docs.slice(0, 600).join(`\n${SEP}\n`)}\n`);
writeFileSync(join(a.out, 'heldout-dev200.txt'), `${docs.slice(600).join(`\n${SEP}\n`)}\n`);
console.log(
  `wrote ${a.out}/damaged.bin (σ ${a.sigma}, seed ${a.seed}), train-dev600.txt, heldout-dev200.txt`,
);
if (smoke) rmSync(a.out, { recursive: true, force: true });
