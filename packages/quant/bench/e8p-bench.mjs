// QuIP#'s E8P12 lattice codebook against the scalar 2-bit grid at the same storage, on the real stories260K:
// LDLQ with input-side Hadamard incoherence, one f16 scale per row for both (E8P: 16 bits per 8 weights, a
// row's scale its RMS / 1.03; scalar: 2-bit codes, mse-searched row scale), so both store 2 + 16/in bits
// per weight (E8P pads a width of 172 to 176: 2.05 + 16/172). E8P has no layer kind yet: its weights are
// materialised densely for the evaluation. Calibration and held-out text as ladder.mjs; also the squared
// error on Gaussian weights.
//
// Run after `pnpm build`: node packages/quant/bench/e8p-bench.mjs [--no-hadamard-too: both codebooks also
// without the transform] [--seed N]   (--smoke: 2 held-out stories, tiny calibration)
import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import {
  HostTensor,
  JsBackend,
  Linear,
  loadModel,
  perplexity,
  readTextFile,
  sharedPath,
  splitDocuments,
} from '@lineage/core';
import { gaussian64 } from '@lineage/linalg';
import { sane, smoke, startBench } from '../../../scripts/bench-kit.mjs';

// load before/after, the verdict and the JSON record (scripts/bench-kit.mjs)
const bench = startBench('quant-e8p');

import {
  dequantize,
  e8pBytes,
  e8pDequantize,
  ldlq,
  ldlqE8p,
  randomIncoherence,
  rtn,
  transformHessian,
  transformWeight,
  untransformWeight,
} from '../dist/index.js';

// Gaussian weights: mean squared error per weight at ~2 bits
{
  const rows = smoke ? 8 : 64;
  const cols = 512;
  const w = gaussian64(rows, cols, 7).data;
  const mse = (d) => d.reduce((a, v, i) => a + (v - w[i]) ** 2, 0) / w.length;
  const e8 = sane('e8p mse', mse(e8pDequantize(ldlqE8p(w, rows, cols, undefined))));
  const sc = sane('scalar mse', mse(dequantize(rtn(w, rows, cols, { bits: 2, groupSize: 0 }))));
  console.log(
    `Gaussian ${rows}×${cols}, one scale per row: mse E8P ${e8.toFixed(4)}, scalar 2-bit ${sc.toFixed(4)} (${(e8 / sc).toFixed(3)}×)`,
  );
}

const backend = new JsBackend();
const { model } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
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
const docs = splitDocuments(
  await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt')),
  '<|endoftext|>',
);
const heldOut = docs.slice(smoke ? -2 : -200).join('\n<|endoftext|>\n');
const ppl = async (m) =>
  (await perplexity(m, backend, heldOut, { protocol: 'documents', separator: '<|endoftext|>', seqLen: 512 }))
    .ppl;

const hadamards = process.argv.includes('--no-hadamard-too') ? [true, false] : [true];
// --seed N: another draw of the random signs (layer i uses 2i + 1000·N)
const seedArg = process.argv.indexOf('--seed');
const seed = seedArg >= 0 ? Number(process.argv[seedArg + 1]) : 0;
for (const hadamard of hadamards)
  for (const codebook of ['scalar', 'e8p']) {
    const m = model.clone();
    let bytes = 0;
    let weights = 0;
    for (const [i, [name, l]] of m.linearLayers().entries()) {
      if (name === 'lm_head') continue;
      const rows = l.outFeatures;
      const cols = l.inFeatures;
      const t = hadamard ? randomIncoherence(rows, cols, 2 * i + 1000 * seed) : undefined;
      const w0 = Float64Array.from(l.denseWeight());
      const w = t ? transformWeight(w0, rows, cols, t) : w0;
      const h0 = await stats.hessian(name);
      const h = t ? transformHessian(h0, t.signsIn) : h0;
      let d;
      if (codebook === 'e8p') {
        // pad the width to a multiple of 8: zero weights, identity Hessian rows
        const pc = Math.ceil(cols / 8) * 8;
        const wp = new Float64Array(rows * pc);
        for (let r = 0; r < rows; r++) wp.set(w.subarray(r * cols, (r + 1) * cols), r * pc);
        const hp = new Float64Array(pc * pc);
        let tr = 0;
        for (let c = 0; c < cols; c++) tr += h[c * cols + c];
        for (let a = 0; a < pc; a++)
          for (let b = 0; b < pc; b++)
            hp[a * pc + b] = a < cols && b < cols ? h[a * cols + b] : a === b ? tr / cols : 0;
        const q = ldlqE8p(wp, rows, pc, hp, { damp: 0.01 }, name);
        bytes += e8pBytes(q);
        const dp = e8pDequantize(q);
        d = new Float64Array(rows * cols);
        for (let r = 0; r < rows; r++) d.set(dp.subarray(r * pc, r * pc + cols), r * cols);
      } else {
        const q = ldlq(w, rows, cols, h, { bits: 2, groupSize: cols, damp: 0.01 }, name);
        bytes += Math.ceil((rows * cols * 2) / 8) + 2 * rows;
        d = dequantize(q);
      }
      if (t) bytes += Math.ceil(cols / 8); // the sign bits
      weights += rows * cols;
      const dense = t ? untransformWeight(d, rows, cols, t) : d;
      m.setLinear(name, new Linear(new HostTensor('f32', [rows, cols], Float32Array.from(dense))));
    }
    console.log(
      `${codebook === 'e8p' ? 'E8P12' : 'scalar 2-bit'} LDLQ${hadamard ? ' + Hadamard' : ', no Hadamard'}, row scales: ${sane('bits', (bytes * 8) / weights).toFixed(3)} bits/param, held-out ppl ${sane('ppl', await ppl(m)).toFixed(4)}`,
    );
  }
bench.finish({});
