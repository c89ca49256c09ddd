import { computeStats, loadDataset, sampleSequences } from '@lineage/calibrate';
import {
  HostTensor,
  JsBackend,
  Linear,
  loadModel,
  perplexity,
  readTextFile,
  splitDocuments,
} from '@lineage/core';
import {
  dequantize,
  ldlq,
  randomSigns,
  rtn,
  transformHessian,
  transformInput,
  untransformOutput,
} from '@lineage/quant';

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
const bits = Number(process.argv[2] ?? 3);
for (const q of ['rtn', 'ldlq']) {
  const m = model.clone();
  let i = 0;
  for (const [name, l] of m.linearLayers()) {
    if (name === 'lm_head') continue;
    const rows = l.outFeatures,
      cols = l.inFeatures;
    const s = randomSigns(cols, 100 + i++);
    const w = Float64Array.from(l.denseWeight());
    transformInput(w, s, rows); // W T_in^T
    const h = transformHessian(await stats.hessian(name), s);
    const qm =
      q === 'rtn'
        ? rtn(w, rows, cols, { bits, groupSize: 64 })
        : ldlq(w, rows, cols, h, { bits, groupSize: 64 });
    const d = dequantize(qm);
    untransformOutput(d, s, rows); // rows back: d_r = T_in^T d̃_r
    m.setLinear(name, new Linear(new HostTensor('f32', [rows, cols], Float32Array.from(d))));
  }
  console.log(bits, q, 'input-side hadamard', (await ppl(m)).toFixed(3));
}
