import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BIN,
  expectJson,
  expectOneLineError,
  lineage,
  MODEL,
  type Run,
  TRAIN,
  tempDir,
} from './test-support.js';

const dir = tempDir('lineage-run-');

// the acceptance recipe, small: minitron to 0.7 of the parameters, then a 2-member PLRD family, tiny budgets
const RECIPE = `# minitron → plrd on stories260K
parent: ${MODEL}
backend: js
seed: 3
data:
  train: ${TRAIN}
recovery: { batchSize: 2, seqLen: 32, earlyStop: false }
stages:
  - method: minitron
    options: { params: 0.7, search: 1 }
    recover: { tokens: 128 }
  - method: plrd
    options: { schedule: [0.8, 0.6] }
    recover: { tokens: 192 }
evaluation: { limit: 5 }
outputs:
  - kind: save
    dir: out/family
  - kind: report
    path: out/report.html
  - kind: export
    dir: out/onnx
`;

const file = join(dir, 'recipe.yaml');
let first: Run;

beforeAll(async () => {
  writeFileSync(file, RECIPE);
  first = await lineage(['run', file, '--json']);
}, 240_000);

const members = (fam: string) =>
  readdirSync(fam)
    .filter((n) => n !== 'family.json')
    .sort();

describe('lineage run', () => {
  it('runs minitron → plrd from one command: the members, family.json and the report', async () => {
    const r = expectJson(first);
    expect(r.outputs).toEqual([
      { kind: 'save', path: join(dir, 'out/family') },
      { kind: 'report', path: join(dir, 'out/report.html') },
      { kind: 'export', path: join(dir, 'out/onnx') },
    ]);
    // each member exported as ONNX in the layout transformers.js loads (lineage export --to onnx)
    for (const m of ['minitron-plrd-0.80', 'minitron-plrd-0.60'])
      expect(existsSync(join(dir, 'out/onnx', m, 'onnx', 'model.onnx'))).toBe(true);
    const fam = join(dir, 'out/family');
    expect(members(fam)).toEqual(['minitron-plrd-0.60', 'minitron-plrd-0.80']);
    const record = JSON.parse(readFileSync(join(fam, 'family.json'), 'utf8'));
    expect(record.method.name).toBe('minitron+plrd');
    expect(record.parent.perplexity).toBeGreaterThan(1);
    // plrd cut the minitron-pruned model: each member smaller than the last, all below 0.7 of the parent
    expect(record.members[0].params).toBeLessThan(0.7 * record.parent.params);
    expect(record.members[1].params).toBeLessThan(record.members[0].params);
    for (const m of record.members) expect(m.perplexity).toBeGreaterThan(1);
    const html = readFileSync(join(dir, 'out/report.html'), 'utf8');
    expect(html.match(/class="point"/g)).toHaveLength(2);
    expect(html.match(/class="point parent"/g)).toHaveLength(1);
    // each member records its held-out perplexity, which `lineage report <member dir>` shows
    const md = join(dir, 'member.md');
    const rep = await lineage(['report', join(fam, 'minitron-plrd-0.60'), '--format', 'md', '--out', md]);
    expect(rep.code, rep.stderr).toBe(0);
    expect(readFileSync(md, 'utf8')).toContain(`| ${record.members[1].perplexity.toFixed(4)} |`);
  });

  it('records the recipe in every output’s provenance, and running the recorded recipe reproduces the members bitwise', async () => {
    const fam = join(dir, 'out/family');
    const recorded = members(fam).map(
      (m) => JSON.parse(readFileSync(join(fam, m, 'config.json'), 'utf8')).lineage.recipe,
    );
    expect(recorded[0]).toEqual(recorded[1]);
    const recipe = recorded[0];
    expect(recipe.stages.map((s: { method: string }) => s.method)).toEqual(['minitron', 'plrd']);
    expect(recipe.stages[0].options).toMatchObject({ params: 0.7, recoverTokens: 128 });
    // the recorded recipe (JSON, which is YAML) with the outputs moved elsewhere
    const again = join(dir, 'again.json');
    writeFileSync(again, JSON.stringify({ ...recipe, outputs: [{ kind: 'save', dir: join(dir, 'again') }] }));
    const r = await lineage(['run', again]);
    expect(r.code, r.stderr).toBe(0);
    for (const m of members(fam)) {
      const a = readFileSync(join(fam, m, 'model.safetensors'));
      const b = readFileSync(join(dir, 'again', m, 'model.safetensors'));
      expect(a.equals(b), m).toBe(true);
    }
  }, 240_000);

  it('Ctrl-C during a recovery stops with a checkpoint; --resume gives the members of the uninterrupted run', async () => {
    const cut = join(dir, 'cut.yaml');
    writeFileSync(cut, RECIPE.replace(/out\//g, 'cut-out/'));
    expectOneLineError(await lineage(['run', cut, '--resume']), /cut\.yaml\.run: nothing to resume/);
    // interrupt once the second PLRD member's recovery has taken its first step
    let second = false;
    let sent = false;
    const r = await new Promise<Run>((resolve) => {
      const child = spawn('node', [BIN, 'run', cut], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d) => {
        stderr += d;
        if (!second && /PLRD step 2\/2/.test(stderr)) second = true;
        if (second && !sent && /PLRD step 2\/2[\s\S]*\nstep \d+\/\d+/.test(stderr)) {
          sent = true;
          child.kill('SIGINT');
        }
      });
      child.on('close', (code) => resolve({ code: code ?? 1, stdout: '', stderr }));
    });
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(
      /interrupted: the recovery checkpoint is in .*cut\.yaml\.run; run the same command with --resume/,
    );
    expect(existsSync(join(dir, 'cut-out'))).toBe(false);
    const resumed = await lineage(['run', cut, '--resume']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resuming at step [1-9]/);
    const fam = join(dir, 'out/family');
    for (const m of members(fam)) {
      const a = readFileSync(join(fam, m, 'model.safetensors'));
      const b = readFileSync(join(dir, 'cut-out/family', m, 'model.safetensors'));
      expect(a.equals(b), m).toBe(true);
    }
  }, 240_000);

  it('a single-model recipe (svd, no recovery) saves one Hugging Face directory and reports it', async () => {
    const one = join(dir, 'one.yaml');
    writeFileSync(
      one,
      `parent: ${MODEL}\nbackend: js\ndata: { train: ${TRAIN} }\nstages:\n  - method: svd\n    options: { params: 0.5 }\nevaluation: { limit: 5 }\noutputs:\n  - { kind: save, dir: one }\n  - { kind: report, path: one.md, format: md }\n`,
    );
    const j = expectJson(await lineage(['run', one, '--json']));
    expect(j.family.members).toHaveLength(1);
    expect(existsSync(join(dir, 'one', 'config.json'))).toBe(true);
    const config = JSON.parse(readFileSync(join(dir, 'one', 'config.json'), 'utf8'));
    expect(config.lineage.recipe.stages).toEqual([
      { method: 'svd', options: expect.objectContaining({ params: 0.5 }) },
    ]);
    const rows = readFileSync(join(dir, 'one.md'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('| svd |'));
    expect(rows).toHaveLength(2); // the parent and the model
    expect(rows[1]).toContain(`| ${j.family.members[0].perplexity.toFixed(4)} |`);
  });

  it('a malformed recipe fails before any work in one line naming file, line and field; nothing written', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      RECIPE.replace('schedule: [0.8, 0.6]', 'schedule: [0.8, 0.6, 7]').replace(/out\//g, 'bad-out/'),
    );
    expectOneLineError(
      await lineage(['run', bad]),
      new RegExp(
        `^lineage: ${bad}:13: stages\\[1\\]\\.options\\.schedule\\[2\\]: plrd: must be in \\(0, 1\\), got 7$`,
      ),
    );
    writeFileSync(bad, RECIPE.replace('method: plrd', 'method: nope').replace(/out\//g, 'bad-out/'));
    expectOneLineError(
      await lineage(['run', bad]),
      new RegExp(`^lineage: ${bad}:12: stages\\[1\\]\\.method: unknown method 'nope'`),
    );
    expect(existsSync(join(dir, 'bad-out'))).toBe(false);
  });

  it('refuses an output that is, holds or lies inside an input, even with --force', async () => {
    const bad = join(dir, 'over.yaml');
    writeFileSync(
      bad,
      `parent: ${MODEL}\nbackend: js\ndata: { train: ${TRAIN} }\nstages:\n  - method: svd\n    options: { params: 0.5 }\noutputs:\n  - { kind: export, dir: ${dirname(MODEL)} }\n`,
    );
    expectOneLineError(
      await lineage(['run', bad, '--force']),
      new RegExp(`^lineage: ${bad}:8: outputs\\[0\\]: .*holds the parent model`),
    );
  });

  it('refuses existing outputs without --force, before any work', async () => {
    expectOneLineError(
      await lineage(['run', file]),
      new RegExp(
        `^lineage: ${file}:17: outputs\\[0\\]: ${join(dir, 'out/family')}: output exists \\(pass --force`,
      ),
    );
  });
});
