import { GramAccumulator } from './gram-r.ts';
for (const C of [512, 1376]) {
  const rows = 2048;
  const x = Float32Array.from({ length: rows * C }, () => Math.random() - 0.5);
  const g = new GramAccumulator(C);
  g.addRows(x, 0, rows); // warm
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < 3000) { g.addRows(x, 0, rows); n++; }
  const s = (performance.now() - t0) / 1000 / n;
  const flops = rows * (C * (C + 4) / 2) * 2;
  console.log(C, 'GFLOP/s (useful, upper tri)', (flops / s / 1e9).toFixed(2), 'ms per 2048 rows', (s * 1000).toFixed(1));
}
