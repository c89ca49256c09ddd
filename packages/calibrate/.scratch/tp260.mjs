import { getBackend, loadModel, perplexity } from '@lineage/core';
import { computeStats, loadDataset, sampleSequences, walkLayers } from '../dist/index.js';
const backend = await getBackend('js');
const { model } = await loadModel('/work/shared/models/stories260K/stories260K.bin');
const path = '/work/shared/data/tinystories/valid-dev.txt';
const data = await loadDataset(path, { separator: '<|endoftext|>' });
const sample = sampleSequences(data, model.tokenizer, { samples: 64, seqLen: 512, seed: 0 });
const evalText = sample.sequences.map((s) => model.tokenizer.decode([...s].slice(1))).join('\n<|endoftext|>\n');
const mode = process.argv[2] ?? 'all';
for (let rep = 0; rep < 2; rep++) {
  let t0 = (process.cpuUsage().user/1000);
  if (mode === 'all' || mode === 'eval') { const r = await perplexity(model, backend, evalText, { protocol: 'documents', separator: '<|endoftext|>', batchSize: 8 });
  console.log('eval', ((r.tokens + r.sequences) / (((process.cpuUsage().user/1000) - t0) / 1000)).toFixed(0)); }
  t0 = (process.cpuUsage().user/1000);
  if (mode === 'all' || mode === 'walk') { await walkLayers(model, backend, sample.sequences);
  console.log('walk', (sample.tokens / (((process.cpuUsage().user/1000) - t0) / 1000)).toFixed(0)); }
  t0 = (process.cpuUsage().user/1000);
  if (mode === 'all' || mode === 'stats') { await computeStats(model, backend, sample, process.argv[3] ? { statistics: process.argv[3] } : {});
  console.log('stats', (sample.tokens / (((process.cpuUsage().user/1000) - t0) / 1000)).toFixed(0)); }
}
