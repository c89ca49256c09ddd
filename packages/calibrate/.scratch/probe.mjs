import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { getBackend, initModel, llamaConfig, saveModel, Random } from '@lineage/core';
import { computeStats, openStreamedModel, sampleFromSequences } from '../dist/index.js';
const [layers, N, L, mb] = process.argv.slice(2).map(Number);
const dir = `/tmp/probe-m${layers}`;
if (!existsSync(dir)) {
  await saveModel(initModel(llamaConfig({ dim: 512, layers, heads: 8, hidden: 1376, vocab: 32000, context: 1024 }), { seed: 1 }), dir, { format: 'hf' });
  console.log('saved; rerun'); process.exit(0);
}
const mem = () => { const m = process.memoryUsage(); return `rss ${(m.rss/2**20).toFixed(0)} ext ${(m.external/2**20).toFixed(0)} ab ${(m.arrayBuffers/2**20).toFixed(0)} heap ${(m.heapUsed/2**20).toFixed(0)} maxrss ${(process.resourceUsage().maxRSS/1024).toFixed(0)}`; };
console.log('start', mem());
const backend = await getBackend('js');
const model = await openStreamedModel(dir, { tokenizerOptional: true });
console.log('opened', mem());
const rng = new Random(1);
const seqs = Array.from({ length: N }, () => Int32Array.from({ length: L }, () => 3 + rng.int(31997)));
let last = -1;
const t0 = performance.now();
await computeStats(model, backend, sampleFromSequences(seqs), { out: '/tmp/probe.st', microBatchTokens: mb || 512, onProgress: (p) => {

  if (p.layerTokens === p.tokens || p.layer !== last) { console.log(`layer ${p.layer} ${p.layerTokens}/${p.tokens}`, mem(), `${((performance.now()-t0)/1000).toFixed(1)}s`); last = p.layer; }
}});
console.log('done', mem());
