// CALDERA on the real stories260K against quantization alone, at bits per parameter counted from the bytes
// each layer stores (codes + scales + factors + signs) over the dense weights of the decoder's linears.
//
// Held out: the LAST 200 TinyStories dev stories (documents 600–799), documents protocol, truncated to 512
// (see stories-setup.mjs). Calibration: 64 × 256 tokens of train-head.txt (seed 0), Hessians of the parent.
// Rows:
// - parent;
// - RTN-b and LDLQ-b (b = 2, 3, 4) by @lineage/quant's methods (`rtnMethod`/`ldlqMethod`, groups of 64 with
//   an f16 scale each, MSE-fitted ranges; with and without its input-side Hadamard), as quantized layers;
// - LDLQ-b on one RMS-fitted scale per matrix after the two-sided Hadamard transform (CALDERA's Q step
//   alone), as dense layers holding the dequantized weights (bits: the qlr layout without factors);
// - CALDERA --q-bits 2 --lr-bits 4 --rank 4 (20 outer × 5 LPLR iterations, Hadamard), as qlr layers;
// - CALDERA with --ft-rank 1 and its 16-bit ranks fine-tuned by distillation from the parent for
//   --recover-tokens (default 200k) tokens (train-head.txt + the first 600 dev stories).
//
// Run after `pnpm build`: node packages/svd/bench/caldera-stories.mjs [--backend js|onnxruntime]
//   [--outer-iters 20] [--lplr-iters 5] [--recover-tokens 200000] [--json out.json]
//   [--ft-base-rank 4] [--only-ft] (the fine-tuned row alone, e.g. at rank 1: one 16-bit rank, within 2.5 bits)
//   [--q-codebooks scalar,e8p12] [--ranks 4,8] (the plain CALDERA rows: Q on the scalar grid and/or E8P12,
//   at each rank) [--no-baselines] [--no-ft] (skip the quantizer rows / the fine-tuned row)
// --smoke: 2 bits only, 2 × 2 iterations, 8 × 64 calibration tokens, 128 recovery tokens, 20 held-out stories.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import { applyMethod, getBackend, HostTensor, Linear, methodContext } from '@lineage/core';
import { recoverCapability } from '@lineage/distill';
import {
  dequantize,
  ldlqMethod,
  randomIncoherence,
  rtnMethod,
  transformHessian,
  transformWeight,
  untransformWeight,
} from '@lineage/quant';
import { sane, smoke } from '../../../scripts/bench-kit.mjs';
import { caldera, tensorLdlq } from '../dist/index.js';
import { data, heldOutPpl, loadParent, trainPath } from './stories-setup.mjs';

const { values: a } = parseArgs({
  options: {
    backend: { type: 'string' },
    'outer-iters': { type: 'string', default: '20' },
    'lplr-iters': { type: 'string', default: '5' },
    'recover-tokens': { type: 'string', default: '200000' },
    lr: { type: 'string', default: '1e-3' },
    // the fine-tuned row's rank (its first rank is the 16-bit one): 1 keeps it within 2.5 bits/param
    'ft-base-rank': { type: 'string', default: '4' },
    // only the fine-tuned row (and the parent): skips the baselines and the plain CALDERA row
    'only-ft': { type: 'boolean' },
    // only CALDERA's Q step alone (one scale per matrix), with and without the Hadamard transform, at 2 and 3 bits
    'q-alone': { type: 'boolean' },
    'q-codebooks': { type: 'string', default: 'scalar' },
    ranks: { type: 'string', default: '4' },
    'no-baselines': { type: 'boolean' },
    'no-ft': { type: 'boolean' },
    json: { type: 'string' },
    smoke: { type: 'boolean' },
  },
});
if (smoke) Object.assign(a, { 'outer-iters': '2', 'lplr-iters': '2', 'recover-tokens': '128' });
const [calSamples, calSeqLen] = smoke ? [8, 64] : [64, 256];

if (a.backend !== 'js') {
  try {
    await import('@lineage/backend-onnxruntime');
  } catch {}
}
const backend = await getBackend(a.backend);
const log = { info: (m) => console.error(m), warn: (m) => console.error(`warning: ${m}`), debug() {} };
console.error(`backend: ${backend.name} (${backend.device})`);

const parent = await loadParent();
const ppl = (m) => heldOutPpl(m, backend);
const sample = sampleSequences(await loadDataset(trainPath), parent.tokenizer, {
  samples: calSamples,
  seqLen: calSeqLen,
  seed: 0,
});
const stats = await computeStats(parent, backend, sample, { statistics: ['hessian'] });
const linears = parent.linearLayers().filter(([n]) => n !== 'lm_head');
const dense = linears.reduce((s, [, l]) => s + l.outFeatures * l.inFeatures, 0);

const rows = [];
const row = (name, bits, p, extra = {}) => {
  rows.push({ name, bitsPerParam: bits, ppl: sane(`${name} ppl`, p), ...extra });
  console.error(
    `${name.padEnd(40)} ${bits === null ? '   —' : bits.toFixed(3)} bits/param  ppl ${p.toFixed(4)}`,
  );
};
row('parent (f32)', 32, await ppl(parent));

/** Bits per parameter of the decoder's linears: their stored bytes × 8 over their dense weights. */
const decoderBits = (m) => {
  let bytes = 0;
  for (const [name] of linears) bytes += m.getLinear(name).stats().bytes;
  return (8 * bytes) / dense;
};

/** A copy of the parent whose decoder linears hold dequantized f(W, H) → { w, bytes } (a dense stand-in). */
async function fakeQuant(f) {
  const m = parent.clone();
  let bytes = 0;
  for (const [name, l] of linears) {
    const [o, i] = [l.outFeatures, l.inFeatures];
    const r = f(Float64Array.from(l.denseWeight()), o, i, await stats.hessian(name));
    bytes += r.bytes;
    m.setLinear(name, new Linear(new HostTensor('f32', [o, i], Float32Array.from(r.w))));
  }
  return { model: m, bits: (8 * bytes) / dense };
}

const quiet = { info() {}, warn: (m) => console.error(`warning: ${m}`), debug() {} };
const qctx = methodContext(backend, { stats, log: quiet, seed: 0 });
for (const bits of a['only-ft'] || a['no-baselines'] ? [] : smoke ? [2] : a['q-alone'] ? [2, 3] : [2, 3, 4]) {
  // @lineage/quant's methods, as `lineage compress --method rtn|ldlq --bits b [--hadamard]` runs them
  for (const [name, make] of a['q-alone']
    ? []
    : [
        ['RTN', rtnMethod],
        ['LDLQ', ldlqMethod],
      ])
    for (const hadamard of smoke ? [false] : [false, true]) {
      const m = await applyMethod(make({ bits, groupSize: 64, hadamard }), parent, qctx);
      row(`${name}-${bits} g64${hadamard ? ' Hadamard' : ''} (quant)`, decoderBits(m), await ppl(m));
    }
  // CALDERA's Q step alone: LDLQ on one RMS-fitted scale per matrix after the two-sided Hadamard transform
  // (QuIP#'s incoherence setting), and without the transform (--q-alone adds that row)
  for (const hadamard of a['q-alone'] ? [true, false] : [true]) {
    const t = await fakeQuant((w, o, i, h) => {
      const inc = hadamard ? randomIncoherence(o, i, 42, 'both') : undefined;
      let ms = 0;
      for (const v of w) ms += v * v;
      const s = Math.sqrt(ms / w.length);
      const wt = (inc ? transformWeight(w, o, i, inc) : w).map((v) => v / s);
      const q = tensorLdlq(wt, o, i, inc ? transformHessian(h, inc.signsIn) : h, bits);
      const dq = dequantize(q);
      const back = (inc ? untransformWeight(dq, o, i, inc) : dq).map((v) => v * s);
      // one f16 scale (+ the signs), as a qlr layer without factors stores them
      const signs = inc ? Math.ceil(o / 8) + Math.ceil(i / 8) : 0;
      return { w: back, bytes: Math.ceil((o * i * bits) / 8) + 2 + signs };
    });
    row(
      `LDLQ-${bits} one scale/matrix${hadamard ? ', Hadamard' : ', no Hadamard'} (Q alone)`,
      t.bits,
      await ppl(t.model),
    );
  }
}
if (a['q-alone']) process.exit(0);

const iters = { outerIters: Number(a['outer-iters']), lplrIters: Number(a['lplr-iters']) };
const bitsOf = (m) => m.provenance.bitsPerParam;
const ctx = methodContext(backend, { stats, log, seed: 0 });
let t0 = performance.now();
let layerErrors;
if (!a['only-ft'])
  for (const rank of a.ranks.split(',').map(Number))
    for (const qCodebook of a['q-codebooks'].split(',')) {
      t0 = performance.now();
      const c = await caldera({ qBits: 2, qCodebook, lrBits: 4, rank, ...iters }).apply(parent, ctx);
      const calderaSeconds = (performance.now() - t0) / 1000;
      layerErrors ??= {};
      layerErrors[`${qCodebook} rank ${rank}`] = Object.fromEntries(
        Object.entries(c.provenance.layers).map(([k, v]) => [k, { error: v.error, errors: v.errors }]),
      );
      const q = qCodebook === 'scalar' ? '' : ` Q ${qCodebook}`;
      row(`CALDERA q2${q} lr4 rank ${rank}`, bitsOf(c), await ppl(c), { seconds: calderaSeconds });
    }
if (a['no-ft']) {
  if (a.json)
    writeFileSync(
      a.json,
      `${JSON.stringify({ backend: backend.name, ...iters, rows, layerErrors }, null, 2)}\n`,
    );
  process.exit(0);
}

const recoverTokens = Number(a['recover-tokens']);
const recover = recoverCapability({
  backend,
  data,
  seqLen: smoke ? 32 : 256,
  batchSize: smoke ? 2 : 4,
  lr: Number(a.lr),
  minLr: Number(a.lr) / 100,
  weightDecay: 0,
  seed: 0,
  log,
  logEvery: 50,
});
const ftCtx = methodContext(backend, { stats, log, seed: 0, recover });
t0 = performance.now();
const ftRank = Number(a['ft-base-rank']);
// Q's codebook: the first of --q-codebooks (default scalar, as the table in BENCHMARKS.md was measured)
const ftCodebook = a['q-codebooks'].split(',')[0];
const ft = await caldera({
  qBits: 2,
  qCodebook: ftCodebook,
  lrBits: 4,
  rank: ftRank,
  ftRank: 1,
  recoverTokens,
  ...iters,
}).apply(parent, ftCtx);
// the same decomposition as above (same seeds), its leading rank stored in 16 bits and fine-tuned
row(`CALDERA q2 lr4 rank ${ftRank}, ft-rank 1 + ${recoverTokens} tokens`, bitsOf(ft), await ppl(ft), {
  seconds: (performance.now() - t0) / 1000,
});

const result = {
  backend: backend.name,
  calibration: `${calSamples} × ${calSeqLen}`,
  ...iters,
  rows,
  layerErrors,
};
if (a.json) writeFileSync(a.json, `${JSON.stringify(result, null, 2)}\n`);
