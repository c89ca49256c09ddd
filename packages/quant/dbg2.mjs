import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import { JsBackend, loadModel, perplexity, readTextFile, splitDocuments } from '@lineage/core';
import { quantizeModel } from '@lineage/quant';

const backend = new JsBackend();
const { model } = await loadModel('/work/shared/models/stories260K/stories260K.bin');
const sample = sampleSequences(
  await loadDataset('/work/shared/data/tinystories/train-head.txt'),
  model.tokenizer,
  { samples: 16, seqLen: 128, seed: 0 },
);
const stats = await computeStats(model, backend, sample, { statistics: ['hessian'] });
const docs = splitDocuments(
  await readTextFile('/work/shared/data/tinystories/valid-dev.txt'),
  '<|endoftext|>',
);
const held = docs.slice(-200, -160).join('\n<|endoftext|>\n');
const ppl = async (m) =>
  (await perplexity(m, backend, held, { protocol: 'documents', separator: '<|endoftext|>', seqLen: 256 }))
    .ppl;
console.log('dense', (await ppl(model)).toFixed(3));
for (const bits of (process.argv[2] ?? '2,3,4').split(',').map(Number))
  for (const [quantizer, hadamard] of [
    ['rtn', false],
    ['ldlq', false],
    ['rtn', true],
    ['ldlq', true],
  ]) {
    const r = await quantizeModel(model, {
      quantizer,
      bits,
      groupSize: Number(process.argv[3] ?? 64),
      hessians: stats,
      hadamard,
    });
    const e = r.layers.reduce((a, l) => a + l.relError, 0) / r.layers.length;
    console.log(bits, quantizer, hadamard, (await ppl(r.model)).toFixed(3), 'mean relErr', e.toFixed(4));
  }
