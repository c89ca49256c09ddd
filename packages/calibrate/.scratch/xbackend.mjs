import { getBackend, loadModel } from '@lineage/core';
import { calibrate, loadDataset } from '../dist/index.js';
const which = process.argv[2];
await import(`/work/main/packages/backend-${which}/dist/index.js`);
const { model } = await loadModel('/work/shared/models/stories260K/stories260K.bin');
const data = await loadDataset('/work/shared/data/tinystories/valid-dev.txt', { separator: '<|endoftext|>' });
const run = async (name) => {
  const b = await getBackend(name);
  const r = await calibrate(model, b, data, { samples: 12, seqLen: 512, seed: 7 });
  return { b, r };
};
const a = await run('js');
const o = await run(which);
let worst = 0; let worstName = '';
for (const n of a.r.stats.tensorNames()) {
  const x = (await a.r.stats.tensor(n)).data, y = (await o.r.stats.tensor(n)).data;
  let num = 0, den = 0;
  for (let i = 0; i < x.length; i++) { num = Math.max(num, Math.abs(x[i] - y[i])); den = Math.max(den, Math.abs(x[i])); }
  const e = num / den; if (e > worst) { worst = e; worstName = n; }
}
console.log(`${which} (${o.b.device}) vs js: max relative difference over all statistics ${worst.toExponential(2)} (${worstName}); tokens ${a.r.sample.tokens}`);
