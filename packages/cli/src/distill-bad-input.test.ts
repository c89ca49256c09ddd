import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { initModel, llamaConfig, loadTokenizer, saveModel } from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectJson, lineage, MODEL, TRAIN, tempDir } from './test-support.js';

/*
 * The training issue's bad input for distillation, through the CLI, over a previous run: a teacher and a
 * student with different vocabularies, a budget of zero tokens, a data file shorter than one sequence and
 * a checkpoint from a different model must each end with exit code 1 and one `lineage:` error line, and
 * leave the existing output (replaceable with --force) and the run directory (its checkpoint and JSONL
 * log) byte for byte and file for file as they were, whether the run asked to --resume or to --restart.
 */

/** Every file and folder under the given roots (by path relative to their parent): content hash, size, modification time and inode (a rewrite changes them). */
function snapshot(...roots: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (root: string, p: string) => {
    const st = statSync(p);
    if (st.isDirectory()) {
      out.set(`${relative(root, p)}/`, `dir ${st.ino}`);
      for (const f of readdirSync(p).sort()) walk(root, join(p, f));
    } else {
      const hash = createHash('sha256').update(readFileSync(p)).digest('hex');
      out.set(relative(root, p), `${hash} ${st.size} ${st.mtimeMs} ${st.ino}`);
    }
  };
  for (const r of roots) walk(dirname(r), r);
  return out;
}

/** The stderr lines that are not progress (`backend: js (cpu)`, `teacher backend: …`). */
function errorLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.length > 0)
    .filter((l) => !/^(teacher )?backend: \S+ \(\S+\)$/.test(l));
}

const tmp = tempDir('lineage-distill-bad-');
const out = join(tmp, 'out');
const runDir = `${out}.run`;
let otherStudent: string;
let bigVocabStudent: string;
let shortData: string;

/** Small settings: 4 × 32 tokens per step on the js backend (teacher too). */
const SMALL = [
  '--seq-len',
  '32',
  '--batch-size',
  '4',
  '--backend',
  'js',
  '--teacher-backend',
  'js',
  '--no-early-stop',
];
/** stories260K distilled into itself on the training head, for 1k tokens. */
const SELF = ['--student', MODEL, '--data', TRAIN, '--tokens', '1k'];

/** `lineage distill --teacher MODEL …args` in small settings, checkpointing every step, to `out` (--force). */
function distill(args: string[], ...extra: string[]) {
  return lineage([
    'distill',
    '--teacher',
    MODEL,
    ...args,
    ...SMALL,
    '--checkpoint-every',
    '1',
    '--out',
    out,
    '--force',
    ...extra,
  ]);
}

beforeAll(async () => {
  // a previous result at --out (replaced only by a successful run with --force)
  const prev = await lineage(['init', '--like', MODEL, '--dim', '32', '--layers', '1', '--out', out]);
  expect(prev.code, prev.stderr).toBe(0);
  // a paused distillation of stories260K: its checkpoint and log in <out>.run
  const paused = await distill(SELF, '--stop-after', '1');
  expect(paused.code, paused.stderr).toBe(0);
  expect(existsSync(join(runDir, 'checkpoint'))).toBe(true);
  expect(existsSync(join(runDir, 'log.jsonl'))).toBe(true);
  // another student of the same vocabulary (the checkpoint is not its own)
  otherStudent = join(tmp, 'other');
  const other = await lineage(['init', '--like', MODEL, '--seed', '9', '--out', otherStudent]);
  expect(other.code, other.stderr).toBe(0);
  // a student with Llama 2's 32000-token vocabulary (stories260K has 512)
  bigVocabStudent = join(tmp, 'vocab32000');
  const big = initModel(
    llamaConfig({ dim: 16, layers: 1, heads: 2, hidden: 32, vocab: 32000, context: 256, tied: true }),
    { seed: 1 },
  );
  big.tokenizer = loadTokenizer(sharedPath('models', 'llama2-tokenizer', 'tokenizer.bin'));
  await saveModel(big, bigVocabStudent, { format: 'hf' });
  shortData = join(tmp, 'short.txt');
  writeFileSync(shortData, 'Once upon a time.\n');
}, 120_000);

const cases: { name: string; args: () => string[]; error: () => RegExp; modes: string[] }[] = [
  {
    name: 'a teacher and a student with different vocabularies',
    args: () => ['--student', bigVocabStudent, '--data', TRAIN, '--tokens', '1k'],
    error: () =>
      /^lineage: the teacher and the student have different vocabularies \(teacher 512 tokens, student 32000\): distillation needs the same tokenizer$/,
    modes: ['--resume', '--restart'],
  },
  {
    name: 'a budget of zero tokens',
    args: () => ['--student', MODEL, '--data', TRAIN, '--tokens', '0'],
    error: () =>
      /^lineage: --tokens 0: less than one training step \(4 sequences of 32 tokens = 128 tokens\); give at least 128 \(run with --help for usage\)$/,
    modes: ['--resume', '--restart'],
  },
  {
    name: 'a data file shorter than one sequence',
    args: () => ['--student', MODEL, '--data', shortData, '--tokens', '1k'],
    error: () => new RegExp(`^lineage: ${shortData}.*has \\d+ tokens, fewer than one sequence of 33`),
    modes: ['--resume', '--restart'],
  },
  {
    name: 'a checkpoint from a different model',
    args: () => ['--student', otherStudent, '--data', TRAIN, '--tokens', '1k'],
    error: () =>
      new RegExp(
        `^lineage: ${join(runDir, 'checkpoint')}: was made from a different student \\(fingerprint sha256:[0-9a-f]+…, this one is sha256:[0-9a-f]+…\\)$`,
      ),
    // --restart discards a checkpoint by request: only resuming it is bad input
    modes: ['--resume'],
  },
];

describe('lineage distill: bad input is a one-line error and overwrites nothing', () => {
  for (const c of cases) {
    it(c.name, async () => {
      for (const mode of c.modes) {
        const before = snapshot(out, runDir);
        const files = [...before.keys()].join(' ');
        for (const f of ['out/model.safetensors', 'out.run/log.jsonl', 'out.run/checkpoint/state.json'])
          expect(files).toContain(f);
        const r = await distill(c.args(), mode);
        expect(r.code, `${mode}: ${r.stderr}`).toBe(1);
        const errors = errorLines(r.stderr);
        expect(errors, `${mode}: stderr ${JSON.stringify(r.stderr)}`).toHaveLength(1);
        expect(errors[0], mode).toMatch(c.error());
        expect(r.stdout, mode).toBe('');
        expect(snapshot(out, runDir), `${mode}: files under ${out} or ${runDir} changed`).toEqual(before);
      }
    }, 60_000);
  }

  it('the previous run is intact: it still resumes to the end', async () => {
    const r = await distill(SELF, '--resume', '--json');
    expect(expectJson(r)).toMatchObject({ stopped: 'budget', steps: 7, resumedFrom: 1 });
  }, 60_000);
});
