// Does the width rule's learning rate for `train` hold up on the stories42M shape (issue #18)? A seeded
// random init of the stories42M-shaped model (dim 512, 8 layers, 8 heads, FFN 1376, vocab 32000 with the
// llama2 tokenizer; what `lineage init` makes) is trained with the next-token loss (`train`, what
// `lineage train` runs) for the SAME token budget at each rate of a sweep around the rule's rate
// (widthLr(512, 'train')), every other setting the defaults (batch, warmup, cosine decay to lr/10, AdamW
// 0.01, clip 1), the same init and the same data order (seed 0) for every rate. Each result is scored on
// the same held-out text: the last --held-out TinyStories dev stories, documents protocol, truncated to 256.
// Reports the best rate and whether the rule's rate is within 2× of it.
//
// The runs are short (a few thousand tokens from random init): they rank rates for the start of
// training, where higher rates tend to look better than they would over a long run.
//
// node packages/distill/bench/lr-sweep-42m.mjs [--tokens 4096] [--factors 0.125,0.25,0.5,1,2,4,8] [--held-out 50]
//   [--backend js|onnxruntime]
// Default backend: onnxruntime when @lineage/backend-onnxruntime is built, else js.
// --smoke: the tiny bench shape (vocab 32000), 64 tokens of 32 per rate, 3 rates, 3 held-out stories, js.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  getBackend,
  initModel,
  JsBackend,
  llamaConfig,
  loadTokenizer,
  perplexity,
  readTextFile,
  sharedPath,
  splitDocuments,
} from '@lineage/core';
import { benchShape, sane, smoke } from '../../../scripts/bench-kit.mjs';
import { train, widthLr } from '../dist/index.js';

const { values: a } = parseArgs({
  options: {
    tokens: { type: 'string', default: '4096' },
    factors: { type: 'string', default: '0.125,0.25,0.5,1,2,4,8' },
    'held-out': { type: 'string', default: '50' },
    'seq-len': { type: 'string', default: '256' },
    backend: { type: 'string' },
    smoke: { type: 'boolean' },
  },
});
if (smoke)
  Object.assign(a, { tokens: '64', factors: '0.5,1,2', 'held-out': '3', 'seq-len': '32', backend: 'js' });
const here = dirname(fileURLToPath(import.meta.url));

async function pickBackend(name) {
  if (name === 'js') return new JsBackend();
  const dist = join(here, '..', '..', 'backend-onnxruntime', 'dist', 'index.js');
  if (!existsSync(dist)) {
    if (name) throw new Error('@lineage/backend-onnxruntime is not built');
    return new JsBackend();
  }
  await import(dist);
  return getBackend('onnxruntime');
}

const backend = await pickBackend(a.backend);
const SEP = '<|endoftext|>';
const seqLen = Number(a['seq-len']);
const tokens = Number(a.tokens);
const factors = a.factors.split(',').map(Number);
const heldOut = Number(a['held-out']);
const config = llamaConfig({ ...benchShape, vocab: 32000 });
const tokenizer = await loadTokenizer(sharedPath('models', 'llama2-tokenizer', 'tokenizer.bin'));
const trainText = await readTextFile(sharedPath('data', 'tinystories', 'train-head.txt'));
const dev = splitDocuments(await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt')), SEP);
const evalText = dev.slice(dev.length - heldOut).join(`\n${SEP}\n`);
const rule = widthLr(config.hiddenSize, 'train');

console.log(
  `backend ${backend.name} (${backend.device}); dim ${config.hiddenSize}, ${config.numLayers} layers, vocab ${config.vocabSize}; ` +
    `${tokens} tokens per rate (seq ${seqLen}); rule lr ${rule}; held-out: last ${heldOut} dev stories`,
);
const rows = [];
const t0 = performance.now();
for (const f of factors) {
  const lr = Number((rule * f).toPrecision(3));
  const model = initModel(config, { seed: 0 }); // the same init for every rate
  model.tokenizer = tokenizer;
  const r = await train({ model, data: { text: trainText }, tokens, seqLen, lr, seed: 0, backend });
  const ev = await perplexity(model, backend, evalText, {
    protocol: 'documents',
    separator: SEP,
    seqLen: 256,
  });
  const row = {
    factor: f,
    lr,
    steps: r.steps,
    trainLoss: r.loss,
    heldOutNll: Math.log(ev.ppl),
    heldOutPpl: ev.ppl,
    trainSeconds: r.seconds,
  };
  rows.push(row);
  console.log(
    `lr ${lr} (${f}× rule): ${r.steps} steps, last train loss ${r.loss.toFixed(3)}, held-out ppl ${ev.ppl.toFixed(1)} ` +
      `(nll ${row.heldOutNll.toFixed(4)}), ${r.seconds.toFixed(0)} s training`,
  );
  model.release();
}
const best = rows.reduce((b, r) => (r.heldOutNll < b.heldOutNll ? r : b));
const ruleRow = rows.find((r) => r.factor === 1);
const ratio = Math.max(rule / best.lr, best.lr / rule);
for (const r of rows) sane(`lr ${r.lr} held-out ppl`, r.heldOutPpl);
const summary = {
  backend: `${backend.name} (${backend.device})`,
  tokensPerRate: tokens,
  seqLen,
  ruleLr: rule,
  bestLr: best.lr,
  ruleToBest: ratio,
  ruleWithin2x: ratio <= 2,
  ruleHeldOutNll: ruleRow?.heldOutNll ?? null,
  bestHeldOutNll: best.heldOutNll,
  totalSeconds: (performance.now() - t0) / 1000,
  rows,
};
console.log(JSON.stringify(summary, null, 2));
