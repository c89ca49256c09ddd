import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Backend,
  createJsBackend,
  HostTensor,
  initModel,
  type LlamaModel,
  llamaConfig,
  loadModel,
  methodContext,
  modelFingerprint,
  SafetensorsFile,
  saveModel,
  writeSafetensors,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrate, computeStats, sampleFromSequences } from './calibrate.js';
import { loadDataset } from './dataset.js';
import { GramAccumulator } from './gram.js';
import { openStreamedModel } from './source.js';
import { parseStatistics } from './statistics.js';
import { loadStats, readStatsInfo, STATS_METADATA_KEY, statsOf } from './stats.js';
import { directGram, relErr } from './test-reference.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');

let js: Backend;
let model: LlamaModel;
let tmp: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'lineage-stats-')); // first, so afterAll always has it to remove
  js = await createJsBackend();
  model = (await loadModel(MODEL)).model;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('GramAccumulator', () => {
  it('equals the direct float64 Gram for widths not a multiple of 4 and rows across chunk boundaries', () => {
    for (const [w, rows] of [
      [7, 3],
      [13, 700],
      [64, 257],
    ] as const) {
      const x = Float32Array.from({ length: w * rows }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 5)));
      const g = new GramAccumulator(w);
      g.addRows(x, 0, Math.min(100, rows));
      if (rows > 100) g.addRows(x, 100 * w, rows - 100);
      expect(relErr(g.gram(), directGram([x], w))).toBeLessThan(1e-14);
      expect(g.count).toBe(rows);
    }
  });
});

describe('statistics files', () => {
  it('are safetensors with float64 tensors and the JSON metadata block; loading checks the fingerprint', async () => {
    const out = join(tmp, 'stats.safetensors');
    const data = await loadDataset(DEV, { separator: '<|endoftext|>' });
    const r = await calibrate(model, js, data, { samples: 8, seqLen: 128, seed: 5, out });
    expect(readdirSync(tmp).filter((f) => f.startsWith('.'))).toEqual([]); // no spool left behind
    const f = await SafetensorsFile.open(out);
    const meta = JSON.parse(f.metadata[STATS_METADATA_KEY]!);
    expect(meta).toMatchObject({
      format: 'lineage-calibration-stats',
      version: 1,
      modelFingerprint: modelFingerprint(model),
      datasetHash: data.hash,
      statistics: ['hessian', 'importance'],
      samples: 8,
      seqLen: 128,
      seed: 5,
      protocol: 'documents',
      tokens: r.sample.tokens,
      dataset: { path: DEV, files: 1, separator: '<|endoftext|>' },
    });
    expect(f.info('model.layers.0.mlp.down_proj.hessian')).toMatchObject({ dtype: 'f64', shape: [172, 172] });
    await f.close();

    const loaded = await loadStats(out, model);
    expect(loaded.info).toEqual(r.stats.info);
    for (const n of r.stats.tensorNames())
      expect(
        relErr((await loaded.tensor(n)).data as Float64Array, (await r.stats.tensor(n)).data as Float64Array),
      ).toBe(0);
    // typed access through a method context
    const ctx = methodContext(js, { stats: loaded });
    expect((await statsOf(ctx, 'hessian').hessian('layers.4.self_attn.o_proj')).length).toBe(64 * 64);
    expect(() => statsOf(methodContext(js))).toThrow(/needs calibration statistics/);
    await loaded.close();
    expect((await readStatsInfo(out)).sampleHash).toBe(r.sample.hash);
    await r.stats.close();
  });

  it('refuses statistics of another model with one line naming the file', async () => {
    const out = join(tmp, 'other.safetensors');
    const other = initModel(llamaConfig({ dim: 16, layers: 1, heads: 2, hidden: 32, vocab: 32 }), {
      seed: 1,
    });
    await (
      await computeStats(other, js, sampleFromSequences([[1, 2, 3]]), { out, statistics: 'hessian' })
    ).close();
    const e = await loadStats(out, model).catch((x: Error) => x);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(
      /other\.safetensors: statistics were computed for another model \(fingerprint [0-9a-f]{12}, this model is [0-9a-f]{12}\)/,
    );
    expect((e as Error).message.split('\n')).toHaveLength(1);
    await (await loadStats(out, other)).close();
    await (await loadStats(out, { fingerprint: modelFingerprint(other) })).close();
    // a safetensors file that is not a statistics file
    const plain = join(tmp, 'plain.safetensors');
    await writeSafetensors(plain, []);
    await expect(loadStats(plain, model)).rejects.toThrow(/not a Lineage statistics file/);
  });

  it('a forged fingerprint, a non-finite Gram or a negative diagonal: one line naming the statistics file', async () => {
    const out = join(tmp, 'small.safetensors');
    const other = initModel(llamaConfig({ dim: 16, layers: 1, heads: 2, hidden: 32, vocab: 32 }), {
      seed: 1,
    });
    await (
      await computeStats(other, js, sampleFromSequences([[1, 2, 3, 4]]), { out, statistics: 'hessian' })
    ).close();
    // the statistics of `other` relabelled with `model`'s fingerprint: their recorded shape gives them away
    const f = await SafetensorsFile.open(out);
    const info = JSON.parse(f.metadata[STATS_METADATA_KEY]!);
    const tensors = await Promise.all(f.names().map(async (n) => [n, await f.read(n)] as const));
    await f.close();
    const forged = join(tmp, 'forged.safetensors');
    const write = (path: string, fp: string, edit?: (name: string, d: Float64Array) => void) =>
      writeSafetensors(
        path,
        tensors.map(([n, t]) => {
          const d = Float64Array.from(t.data as Float64Array);
          edit?.(n, d);
          return [n, new HostTensor('f64', t.shape, d)] as const;
        }),
        { format: 'pt', [STATS_METADATA_KEY]: JSON.stringify({ ...info, modelFingerprint: fp }) },
      );
    await write(forged, modelFingerprint(model));
    await expect(loadStats(forged, model)).rejects.toThrow(
      /^.*forged\.safetensors: statistics were computed for a model of another shape \(numLayers 1, this model has 5\)/,
    );
    const gram = 'model.layers.0.self_attn.q_proj.hessian';
    for (const [name, value, why] of [
      ['nan', Number.NaN, /is not finite \(entry \(0, 0\) is NaN\)/],
      ['negative', -1, /is not positive semi-definite \(diagonal entry 0 is -1\)/],
    ] as const) {
      const path = join(tmp, `${name}.safetensors`);
      await write(path, info.modelFingerprint, (n, d) => {
        if (n === gram) d[0] = value;
      });
      const stats = await loadStats(path, other);
      const e = await stats.hessian('model.layers.0.self_attn.q_proj').catch((x: Error) => x);
      expect((e as Error).message).toMatch(
        new RegExp(`${name}\\.safetensors: the Gram '${gram.replace(/\./g, '\\.')}'`),
      );
      expect((e as Error).message).toMatch(why);
      await stats.close();
    }
  });

  it('refuses a Gram of the right element count but the wrong shape, naming the stats file', async () => {
    const other = initModel(llamaConfig({ dim: 16, layers: 1, heads: 2, hidden: 32, vocab: 32 }), {
      seed: 1,
    });
    const good = join(tmp, 'good-shape.safetensors');
    await (
      await computeStats(other, js, sampleFromSequences([[1, 2, 3]]), { out: good, statistics: 'hessian' })
    ).close();
    const f = await SafetensorsFile.open(good);
    const tensors = new Map<string, Awaited<ReturnType<typeof f.read>>>();
    for (const n of f.names()) tensors.set(n, await f.read(n));
    const metadata = { [STATS_METADATA_KEY]: f.metadata[STATS_METADATA_KEY]! };
    await f.close();
    const name = 'model.layers.0.mlp.down_proj.hessian';
    const layer = 'model.layers.0.mlp.down_proj';
    const h = tensors.get(name)!;
    expect(h.shape).toEqual([32, 32]);
    for (const [file, shape, why] of [
      ['flat.safetensors', [1024], 'has shape [1024], but a Gram must be square [n, n]'],
      ['wide.safetensors', [16, 64], 'has shape [16,64], but a Gram must be square [n, n]'],
    ] as const) {
      const bad = join(tmp, file);
      await writeSafetensors(bad, new Map([...tensors, [name, h.reshape([...shape])]]), metadata);
      const stats = await loadStats(bad, other);
      const e = await stats.hessian(layer).catch((x: Error) => x);
      await stats.close();
      expect((e as Error).message).toBe(
        `${bad}: statistic '${name}' ${why}; recompute the statistics with lineage calibrate`,
      );
    }
    // a mean not as wide as the layer's input (the model the statistics describe)
    const mean = 'model.layers.0.mlp.down_proj.mean';
    const narrow = join(tmp, 'narrow.safetensors');
    const m = tensors.get(mean)!;
    await writeSafetensors(
      narrow,
      new Map([...tensors, [mean, new HostTensor('f64', [16], (m.data as Float64Array).slice(0, 16))]]),
      metadata,
    );
    const stats = await loadStats(narrow, other);
    await expect(stats.mean(layer)).rejects.toThrow(
      `statistic '${mean}' has shape [16], but its layer's input is 32 wide`,
    );
    await stats.close();
  });

  it('unknown statistic names are refused before any work', async () => {
    expect(() => parseStatistics('hessian,fisher')).toThrow(
      "unknown statistic 'fisher' (known: hessian, importance)",
    );
    const out = join(tmp, 'never.safetensors');
    const data = await loadDataset(DEV, { separator: '<|endoftext|>' });
    await expect(
      calibrate(model, js, data, { samples: 2, seqLen: 32, statistics: ['gram'], out }),
    ).rejects.toThrow(/unknown statistic 'gram'/);
    expect(existsSync(out)).toBe(false);
  });

  it('a run that fails part-way leaves no output and no spool', async () => {
    const cfg = llamaConfig({ dim: 16, layers: 3, heads: 2, hidden: 32, vocab: 32 });
    const dir = join(tmp, 'broken');
    await saveModel(initModel(cfg, { seed: 3 }), dir, { format: 'hf' });
    // Corrupt layer 2: rename one of its tensors in the header (same length, so offsets stay valid).
    const st = join(dir, 'model.safetensors');
    const bytes = readFileSync(st);
    const i = bytes.indexOf('model.layers.2.mlp.up_proj.weight');
    bytes.write('model.layers.2.mlp.uq_proj.weight', i);
    writeFileSync(st, bytes);
    const streamed = await openStreamedModel(dir, { tokenizerOptional: true });
    const outDir = join(tmp, 'out');
    rmSync(outDir, { recursive: true, force: true });
    mkdirSync(outDir);
    const out = join(outDir, 'stats.safetensors');
    const layersDone: number[] = [];
    await expect(
      computeStats(streamed, js, sampleFromSequences([[1, 2, 3, 4]]), {
        out,
        onProgress: (p) => layersDone.push(p.layer),
      }),
    ).rejects.toThrow(/missing tensor 'model\.layers\.2\.mlp\.up_proj\.weight'/);
    expect(Math.max(...layersDone)).toBe(2); // layers 1 and 2 ran before the failure
    expect(readdirSync(outDir)).toEqual([]);
    await streamed.close();
  });

  it('an output path in a missing directory fails before any work', async () => {
    const out = join(tmp, 'no', 'such', 'dir', 'stats.safetensors');
    let walked = false;
    await expect(
      computeStats(model, js, sampleFromSequences([[1, 2, 3]]), { out, onProgress: () => (walked = true) }),
    ).rejects.toThrow(/stats\.safetensors: cannot create/);
    expect(walked).toBe(false);
  });
});
