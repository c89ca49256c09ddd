// The quantization ladder on the real stories260K: RTN and LDLQ, with and without randomized Hadamard
// incoherence, at 2, 3 and 4 bits (groups of 64 input columns, f16 scales), against the dense parent; at 2
// bits also LDLQ on QuIP#'s E8P12 lattice codebook (one u16 code per 8 weights, an f16 scale per row), with
// and without Hadamard: `lineage compress --method ldlq --bits 2 --codebook e8p12 [--hadamard]`.
// Calibration: 64 × 256 tokens of train-head.txt (what `lineage compress --method ldlq --data` uses); held
// out: the last 200 TinyStories dev stories, documents protocol, truncation 512 (as the PLRD table).
//
// Run after `pnpm build`: node packages/quant/bench/ladder.mjs [--group-size 64] [--bits 2,3,4] [--only ldlq]
// [--seed 0 (the Hadamard signs')] [--codebooks scalar,e8p12] [--json out.json]
// --smoke: 4 × 32 calibration tokens, 4 held-out stories, 2 bits only; fails unless every figure is sane.
import { writeFileSync } from 'node:fs';
import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import { JsBackend, loadModel, perplexity, readTextFile, sharedPath, splitDocuments } from '@lineage/core';
import { sane, smoke } from '../../../scripts/bench-kit.mjs';
import { quantizeModel } from '../dist/index.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const groupSize = Number(arg('group-size', 64));
const bitsList = (smoke ? '2' : arg('bits', '2,3,4')).split(',').map(Number);
const jsonOut = arg('json');
const seed = Number(arg('seed', 0)); // of the Hadamard signs
const quantizers = arg('only', 'rtn,ldlq').split(',');
const codebooks = arg('codebooks', 'scalar,e8p12').split(',');

const backend = new JsBackend();
const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
const t0 = performance.now();
const sample = sampleSequences(
  await loadDataset(sharedPath('data', 'tinystories', 'train-head.txt')),
  model.tokenizer,
  {
    samples: smoke ? 4 : 64,
    seqLen: smoke ? 32 : 256,
    seed: 0,
  },
);
const stats = await computeStats(model, backend, sample, { statistics: ['hessian'] });
console.log(`calibrated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
const docs = splitDocuments(
  await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt')),
  '<|endoftext|>',
);
const heldOut = docs.slice(smoke ? -4 : -200).join('\n<|endoftext|>\n');
const ppl = async (m) =>
  (await perplexity(m, backend, heldOut, { protocol: 'documents', separator: '<|endoftext|>', seqLen: 512 }))
    .ppl;

const rows = [
  {
    quantizer: 'dense',
    bits: 32,
    hadamard: false,
    bitsPerParam: 32,
    ppl: sane('dense ppl', await ppl(model)),
  },
];
console.log(`dense: ppl ${rows[0].ppl.toFixed(4)}`);
const variants = [];
for (const bits of bitsList)
  for (const quantizer of quantizers)
    for (const codebook of codebooks)
      if (codebook === 'scalar' || (bits === 2 && quantizer === 'ldlq'))
        for (const hadamard of [false, true]) variants.push({ bits, quantizer, codebook, hadamard });
for (const { bits, quantizer, codebook, hadamard } of variants) {
  const t = performance.now();
  const r = await quantizeModel(model, {
    quantizer,
    bits,
    groupSize,
    codebook,
    hadamard,
    hessians: stats,
    seed,
  });
  const seconds = (performance.now() - t) / 1000;
  let bytes = 0;
  let weights = 0;
  for (const l of r.layers) {
    bytes += (l.bitsPerParam * l.shape[0] * l.shape[1]) / 8;
    weights += l.shape[0] * l.shape[1];
  }
  const row = {
    quantizer,
    bits,
    codebook,
    hadamard,
    groupSize: codebook === 'scalar' ? groupSize : null,
    bitsPerParam: sane('bits/param', (bytes * 8) / weights),
    relError: r.layers.reduce((a, l) => a + l.relError, 0) / r.layers.length,
    ppl: sane('ppl', await ppl(r.model)),
    quantizeSeconds: seconds,
  };
  rows.push(row);
  console.log(
    `${bits} bits ${quantizer}${codebook === 'scalar' ? '' : ` ${codebook}`}${hadamard ? ' + hadamard' : ''}: ${row.bitsPerParam.toFixed(3)} bits/param, mean relative proxy error ${row.relError.toFixed(4)}, ppl ${row.ppl.toFixed(4)} (${seconds.toFixed(1)} s)`,
  );
}
if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify(rows, null, 2)}\n`);
