import { loadModel } from '@lineage/core';
import '@lineage/quant';
import { buildLlamaGraph } from '@lineage/onnx';
const p = process.argv[2];
const { model } = await loadModel(p);
const { graph } = buildLlamaGraph(model);
const by = {};
for (const [n, t] of graph.initializers) { const k = n.replace(/model\.layers\.\d+\./, 'L.'); by[k] = (by[k] ?? 0) + t.rawData.byteLength; }
console.log(by, graph.initializerBytes());
console.log(model.stats().layers.slice(0,7).map(l => [l.name, l.bytes]));
