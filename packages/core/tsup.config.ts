import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    backend: 'src/backend/index.ts',
    'testing/index': 'src/testing/index.ts',
    'wasm-assembler': 'src/util/wasm-assembler.ts',
  },
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
});
