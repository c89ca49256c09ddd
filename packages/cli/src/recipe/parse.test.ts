import '@lineage/prune';
import '@lineage/svd';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineageError } from '@lineage/core';
import { describe, expect, it } from 'vitest';
import { MODEL, TRAIN, tempDir } from '../test-support.js';
import { compileRecipe } from './parse.js';

const dir = tempDir('lineage-recipe-parse-');

const GOOD = `parent: ${MODEL}
backend: js
data:
  train: ${TRAIN}
stages:
  - method: minitron
    options: { params: 0.7, search: 1 }
    recover: { tokens: 2k }
  - method: plrd
    options:
      schedule: [0.8, 0.6]
      data-aware: true
    recover: { tokens: 128 }
outputs:
  - kind: save
    dir: out/family
  - kind: report
    path: out/report.html
`;

let n = 0;
function recipe(text: string): string {
  const f = join(dir, `r${++n}.yaml`);
  writeFileSync(f, text);
  return f;
}

/** The one-line error of compiling `text`, checked to name the file and the line. */
async function error(text: string): Promise<{ line: number; message: string }> {
  const f = recipe(text);
  const e = await compileRecipe(f).then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(LineageError);
  const m = /^(.+):(\d+): (.+)$/.exec((e as Error).message);
  expect(m, (e as Error).message).not.toBeNull();
  expect(m![1]).toBe(f);
  expect((e as Error).message).not.toContain('\n');
  return { line: Number(m![2]), message: m![3]! };
}

describe('compileRecipe', () => {
  it('compiles stages to one pipeline, options through each method’s schema, paths made absolute', async () => {
    const c = await compileRecipe(recipe(GOOD));
    expect(c.method.name).toBe('minitron+plrd');
    expect(c.method.needs?.training).toBe(true);
    expect(c.stages.map((s) => s.def.name)).toEqual(['minitron', 'plrd']);
    // the budget became the method's own option; the kebab flag name its key; defaults filled in
    expect(c.recipe.stages[0]!.options).toMatchObject({
      params: 0.7,
      search: 1,
      recoverTokens: 2000,
      axes: 'heads,ffn,hidden,layers',
    });
    expect(c.recipe.stages[1]!.options).toMatchObject({
      schedule: [0.8, 0.6],
      dataAware: true,
      recoverTokens: 128,
    });
    expect(c.recipe.outputs[0]).toEqual({ kind: 'save', dir: join(dir, 'out/family') });
    expect(c.recipe.outputs[1]).toEqual({
      kind: 'report',
      path: join(dir, 'out/report.html'),
      format: 'html',
      x: 'params',
    });
    // the normalized recipe compiles to the same thing (what `lineage run` of a recorded recipe does)
    const again = await compileRecipe(recipe(JSON.stringify(c.recipe)));
    expect(again.recipe).toEqual(c.recipe);
  });

  it('YAML syntax error: its line', async () => {
    const e = await error(GOOD.replace('  - method: plrd', '  - method: [plrd'));
    expect(e.message).toMatch(/^YAML syntax error/);
    expect(e.line).toBeGreaterThanOrEqual(9);
  });

  it('unknown method: the stage’s method line, with the registered ones', async () => {
    const e = await error(GOOD.replace('method: plrd', 'method: plrdx'));
    expect(e).toEqual({
      line: 9,
      message: expect.stringMatching(/^stages\[1\]\.method: unknown method 'plrdx' \(registered: .*plrd/),
    });
  });

  it('bad option value: the option’s line, in the method’s words', async () => {
    const e = await error(GOOD.replace('schedule: [0.8, 0.6]', 'schedule: [0.8, 1.6]'));
    expect(e.line).toBe(11);
    expect(e.message).toMatch(/^stages\[1\]\.options\.schedule\[1\]: plrd: must be in \(0, 1\), got 1\.6$/);
  });

  it('unknown option, bad budget, the method’s own cross-field rule', async () => {
    expect(await error(GOOD.replace('data-aware: true', 'data-awre: true'))).toEqual({
      line: 12,
      message: expect.stringMatching(/^stages\[1\]\.options\.data-awre: unknown option of method plrd/),
    });
    expect(await error(GOOD.replace('tokens: 2k', 'tokens: lots'))).toMatchObject({
      line: 8,
      message: expect.stringMatching(/^stages\[0\]\.recover\.tokens: /),
    });
    expect(await error(GOOD.replace('{ params: 0.7, search: 1 }', '{ search: 1 }'))).toMatchObject({
      line: 7,
      message: expect.stringMatching(/give either params .* or shape/),
    });
  });

  it('missing parent or data, unknown fields and output kinds', async () => {
    expect(await error(GOOD.replace(MODEL, '/nonexistent/model.bin'))).toEqual({
      line: 1,
      message: 'parent: no such file or directory: /nonexistent/model.bin',
    });
    // a device (or FIFO) as a file the recipe reads: named at its line, not at run time
    expect(await error(GOOD.replace(MODEL, '/dev/null'))).toEqual({
      line: 1,
      message: 'parent: /dev/null: is a character device, not a regular file',
    });
    expect(await error(GOOD.replace(`data:\n  train: ${TRAIN}\n`, ''))).toMatchObject({
      line: 3,
      message: expect.stringMatching(
        /^stages: minitron\+plrd needs training text for its recovery: give data.train$/,
      ),
    });
    expect(await error(GOOD.replace('backend: js', 'backnd: js'))).toEqual({
      line: 1,
      message: "unknown field 'backnd'",
    });
    expect(await error(GOOD.replace('kind: report', 'kind: nope'))).toMatchObject({
      line: 17,
      message: expect.stringMatching(
        /^outputs\[1\]\.kind: unknown output kind 'nope' \(registered: save, report, export/,
      ),
    });
    expect(
      await error(
        GOOD.replace(
          'outputs:\n  - kind: save\n    dir: out/family\n  - kind: report\n    path: out/report.html\n',
          '',
        ),
      ),
    ).toMatchObject({
      message: 'outputs: is required',
    });
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });
});
