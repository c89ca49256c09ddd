import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  compressJson,
  convertDense,
  expectOneLineError,
  lineage,
  MODEL,
  pplFirst10,
  readConfig,
  TRAIN,
  tempDir,
} from './test-support.js';

const tmp = tempDir('lineage-caldera-cli-');

describe('lineage compress --method caldera', () => {
  it('writes qlr layers from the schema flags (--no-hadamard included), which convert --dense materialises', async () => {
    const out = join(tmp, 'caldera');
    await compressJson(
      out,
      ...['--method', 'caldera', '--q-bits', '2', '--lr-bits', '4', '--rank', '4'],
      ...[
        '--outer-iters',
        '2',
        '--lplr-iters',
        '1',
        '--no-hadamard',
        '--data',
        TRAIN,
        '--calib-samples',
        '8',
      ],
    );
    const cfg = readConfig(out);
    const layers = Object.values(cfg.lineage.layers) as {
      kind: string;
      meta: { hadamard: boolean; rank: number };
    }[];
    expect(layers).toHaveLength(35);
    expect(layers.every((l) => l.kind === 'qlr' && l.meta.hadamard === false && l.meta.rank === 4)).toBe(
      true,
    );
    expect(cfg.lineage.method).toBe('caldera');
    expect(cfg.lineage.hadamard).toBe(false);
    expect(cfg.lineage.bitsPerParam).toBeLessThan(2.5);
    const dense = await convertDense(out, 'hf', join(tmp, 'caldera-dense'));
    const a = await pplFirst10(out);
    const b = await pplFirst10(dense);
    expect(Math.abs(a - b) / a).toBeLessThan(1e-5);
  });

  it('bits outside the supported set are one line naming the flag', async () => {
    const r = await lineage([
      'compress',
      MODEL,
      '--method',
      'caldera',
      '--q-bits',
      '5',
      '--out',
      join(tmp, 'bad'),
    ]);
    expectOneLineError(r, /caldera: --q-bits must be one of 2, 3, 4, 8, got 5/);
  });

  it('--sequential (shared with ldlq) walks the model block by block on the --data sample, recorded in the config', async () => {
    const out = join(tmp, 'ldlq-sequential');
    await compressJson(
      out,
      ...['--method', 'ldlq', '--bits', '2', '--sequential', '--data', TRAIN, '--calib-samples', '8'],
    );
    const cfg = readConfig(out);
    expect(cfg.lineage.method).toBe('ldlq');
    expect(cfg.lineage.sequential).toBe(true);
    expect(
      Object.values(cfg.lineage.layers as Record<string, { kind: string }>).every(
        (l) => l.kind === 'quantized',
      ),
    ).toBe(true);
  });
});
