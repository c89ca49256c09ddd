import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', graph: 'src/graph.ts', testing: 'src/test-support.ts' },
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  // the testing entry's onnxruntime is the caller's (a dev dependency here), never bundled
  external: ['onnxruntime-node'],
});
