import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { JsBackend, loadModel, perplexity, readTextFile, splitDocuments } from '@lineage/core';
import '@lineage/svd'; // registers the low_rank layer kind for loading members here
import { describe, expect, it } from 'vitest';
import {
  compressJson,
  convertDense,
  DEV,
  expectJson,
  expectOneLineError,
  expectStoredParams,
  lineage,
  MODEL,
  pplFirst10,
  readConfig,
  SEP,
  statsOfAnotherModel,
  TRAIN,
  tempDir,
} from './test-support.js';

const tmp = tempDir('lineage-compress-cli-');

/** `lineage compress MODEL --method svd --params 0.5 …extra`. */
function svdHalf(...extra: string[]) {
  return lineage(['compress', MODEL, '--method', 'svd', '--params', '0.5', ...extra]);
}

describe('lineage compress', () => {
  it("--help lists the registered methods and their options; --method X --help shows X's", async () => {
    const all = await lineage(['compress', '--help']);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/svd .*@lineage\/svd/);
    expect(all.stdout).toMatch(/plrd /);
    expect(all.stdout).toMatch(/--params <value>/);
    const one = await lineage(['compress', '--method', 'svd', '--help']);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/--params <value>/);
    expect(one.stdout).toMatch(/--allocation <value>/);
    expect(one.stdout).not.toMatch(/--schedule/);
  });

  it('--method svd --params 0.5 writes a factored model that evaluates and counts honestly', async () => {
    const out = join(tmp, 'svd');
    const j = await compressJson(out, '--method', 'svd', '--params', '0.5');
    expect(j.params.after).toBeLessThan(j.params.before);
    const cfg = readConfig(out);
    expect(Object.keys(cfg.lineage.layers)).toHaveLength(35);
    expect(cfg.lineage.method).toBe('svd');
    expect(cfg.lineage.parent.source).toBe(MODEL);
    await expectStoredParams(out, j.params.after);
    expect(await pplFirst10(out)).toBeGreaterThan(1);
  }, 300_000);

  it('convert --dense makes a factored model a plain llama2.c file again', async () => {
    const out = join(tmp, 'svd');
    const bin = await convertDense(out, 'llama2c', join(tmp, 'dense.bin'));
    expect(Math.abs((await pplFirst10(out)) / (await pplFirst10(bin)) - 1)).toBeLessThan(1e-4);
    const refused = await lineage(['convert', out, '--to', 'llama2c', '--out', join(tmp, 'x.bin')]);
    expectOneLineError(refused, /dense layers only.*--dense/);
  }, 300_000);

  it('bad input: fraction outside (0, 1), unknown method, rising schedule, ranks that save nothing, data-aware without stats, stats of another model', async () => {
    const out = join(tmp, 'never');
    expectOneLineError(
      await lineage(['compress', MODEL, '--method', 'svd', '--params', '1.5', '--out', out]),
      /in \(0, 1\)/,
    );
    expectOneLineError(
      await lineage(['compress', MODEL, '--method', 'nope', '--out', out]),
      /unknown method 'nope'/,
    );
    expectOneLineError(
      await lineage(['compress', MODEL, '--method', 'plrd', '--schedule', '0.6,0.8', '--out', out]),
      /decreasing/,
    );
    expectOneLineError(
      await lineage(['compress', MODEL, '--method', 'svd', '--rank', '47', '--out', out, '--backend', 'js']),
      /saves nothing/,
    );
    expectOneLineError(
      await svdHalf('--data-aware', '--out', out, '--backend', 'js'),
      /needs calibration statistics/,
    );
    const stats = await statsOfAnotherModel(tmp, 'other.safetensors');
    expectOneLineError(
      await svdHalf('--data-aware', '--stats', stats, '--out', out, '--backend', 'js'),
      /another model|different model|fingerprint/,
    );
    expect(existsSync(out)).toBe(false);
  }, 300_000);
});

describe('lineage family', () => {
  it('builds members with recovery, writes family.json and a table; members reload with the same perplexity', async () => {
    const out = join(tmp, 'family');
    const r = await lineage([
      'family',
      MODEL,
      '--schedule',
      '0.8,0.5',
      '--recover-tokens',
      '2k',
      '--data-aware', // no --stats: each step calibrates the model it truncates on the first --data file
      '--calib-samples',
      '16',
      '--data',
      TRAIN,
      '--data',
      DEV,
      '--doc-separator',
      SEP,
      '--holdout',
      '20',
      '--eval-seq-len',
      '256',
      '--batch-size',
      '4',
      '--seq-len',
      '64',
      '--lr',
      '2e-3',
      '--backend',
      'js',
      '--out',
      out,
      '--json',
    ]);
    // --json prints the family record plus where its report is
    const { report, ...j } = expectJson(r);
    expect(report).toBe(join(out, 'report.html'));
    expect(j.members).toHaveLength(2);
    expect(readdirSync(out).sort()).toEqual(['family.json', 'plrd-0.50', 'plrd-0.80', 'report.html']);
    expect(JSON.parse(readFileSync(join(out, 'family.json'), 'utf8'))).toEqual(j);
    expect(j.schema).toBe('lineage.family/1');
    expect(j.members.map((m: { dir: string }) => m.dir)).toEqual(['plrd-0.80', 'plrd-0.50']);
    expect(j.members[0].bitsPerParam).toBeCloseTo((8 * j.members[0].bytes) / j.members[0].params, 12);
    expect(j.parent.perplexity).toBeLessThan(j.members[1].perplexity);
    expect(j.members[0].params).toBeGreaterThan(j.members[1].params);
    expect(j.members[1].tokens).toBeGreaterThan(j.members[0].tokens);
    // held-out docs: the last 20 dev stories, never trained on; reloading gives the table's perplexity
    const docs = splitDocuments(await readTextFile(DEV), SEP);
    const held = docs.slice(docs.length - 20).join(`\n${SEP}\n`);
    for (const [i, dir] of ['plrd-0.80', 'plrd-0.50'].entries()) {
      const { model } = await loadModel(join(out, dir));
      const p = await perplexity(model, new JsBackend(), held, {
        protocol: 'documents',
        separator: SEP,
        seqLen: 256,
      });
      expect(Math.abs(p.ppl / j.members[i].perplexity - 1)).toBeLessThan(1e-6);
      expect(model.provenance).toMatchObject({
        method: 'plrd',
        step: i + 1,
        dataAware: true,
        whitenedBy: i === 0 ? 'parent' : 'member 1',
      });
      // params and bytes are a count of the stored tensors
      let params = 0;
      let bytes = 0;
      for (const t of model.stateDict().values()) {
        params += t.size;
        bytes += t.byteLength;
      }
      expect(params).toBe(j.members[i].params);
      expect(bytes).toBe(j.members[i].bytes);
    }
  }, 600_000);

  it('refuses to run without held-out data or with a rising schedule', async () => {
    const out = join(tmp, 'never2');
    expectOneLineError(
      await lineage(['family', MODEL, '--schedule', '0.8,0.5', '--recover-tokens', '0', '--out', out]),
      /held-out data/,
    );
    expectOneLineError(
      await lineage(['family', MODEL, '--method', 'nope', '--schedule', '0.8', '--out', out]),
      /unknown method 'nope'/,
    );
    expectOneLineError(
      await lineage(['family', MODEL, '--schedule', '0.8', '--data', TRAIN, '--out', out, '--resume']),
      /nothing to resume/,
    );
    expectOneLineError(
      await lineage([
        'family',
        MODEL,
        '--schedule',
        '0.5,0.8',
        '--recover-tokens',
        '0',
        '--eval-data',
        DEV,
        '--out',
        out,
      ]),
      /--schedule must be decreasing/,
    );
  });
});
