import { getBackend, LineageError, type LlamaModel, loadModel } from '@lineage/core';
import { type DistillLoss, distill, type HiddenLossOptions } from '@lineage/distill';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { describeBackend, selectBackend } from '../backend.js';
import { log, logSoon } from '../output.js';
import { checkNoOverlap, tokenizerInput } from '../output-policy.js';
import {
  checkBatchFits,
  checkBudget,
  checkSeqLen,
  parseFloatArg,
  requireContext,
  UsageError,
} from './common.js';
import { addTrainingOptions, finishRun, prepareRun, type TrainingFlags } from './train.js';

interface DistillFlags extends TrainingFlags {
  teacher: string;
  student: string;
  teacherTokenizer?: string;
  loss?: DistillLoss;
  temperature?: number;
  ceWeight?: number;
  hiddenLayers?: HiddenLossOptions['layers'];
  hiddenWeight?: number;
  teacherBackend?: string;
  teacherDevice?: string;
}

/** `uniform`, or student:teacher pairs like `0:0,1:2,2:4`. */
export function parseLayerMap(v: string): HiddenLossOptions['layers'] {
  if (v === 'uniform') return 'uniform';
  const pairs = v.split(',').map((p) => {
    const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(p);
    if (!m)
      throw new InvalidArgumentError(`must be 'uniform' or pairs student:teacher like 0:0,1:2, got '${v}'`);
    return [Number(m[1]), Number(m[2])] as [number, number];
  });
  return pairs;
}

/**
 * The hidden-state flags against the two models, with the flags' names (`--hidden-layers 0:99: the
 * teacher has layers 0..4`); the library checks the same, in its own words, for callers of its API.
 */
function checkHiddenFlags(o: DistillFlags, student: LlamaModel, teacher: LlamaModel): void {
  const wanted = o.hiddenLayers !== undefined || (o.hiddenWeight !== undefined && o.hiddenWeight > 0);
  const [ws, wt] = [student.config.hiddenSize, teacher.config.hiddenSize];
  if (wanted && ws !== wt) {
    const [flag, value] =
      o.hiddenLayers !== undefined
        ? ['--hidden-layers', layerMapText(o.hiddenLayers)]
        : ['--hidden-weight', o.hiddenWeight];
    throw new UsageError(
      flag,
      value,
      `the hidden-state loss needs the same width in both models (student ${ws}, teacher ${wt}); use --hidden-weight 0`,
    );
  }
  if (!Array.isArray(o.hiddenLayers)) return;
  const [Ls, Lt] = [student.config.numLayers, teacher.config.numLayers];
  const seen = new Set<number>();
  for (const [s, t] of o.hiddenLayers) {
    const problem =
      s >= Ls
        ? `the student has layers 0..${Ls - 1}`
        : t >= Lt
          ? `the teacher has layers 0..${Lt - 1}`
          : seen.has(s)
            ? `names student layer ${s} twice`
            : undefined;
    if (problem)
      throw new UsageError('--hidden-layers', layerMapText(o.hiddenLayers), `pair ${s}:${t}: ${problem}`);
    seen.add(s);
  }
}

function layerMapText(m: HiddenLossOptions['layers']): string {
  return m === 'uniform' ? m : m.map(([s, t]) => `${s}:${t}`).join(',');
}

/** The hidden-state loss the flags ask for; without either flag the library's default (on at the same width). */
function hiddenOption(o: DistillFlags): { hidden?: HiddenLossOptions | false } {
  if (o.hiddenWeight === 0) return { hidden: false };
  if (!o.hiddenLayers && o.hiddenWeight === undefined) return {};
  return {
    hidden: {
      layers: o.hiddenLayers ?? 'uniform',
      ...(o.hiddenWeight !== undefined ? { weight: o.hiddenWeight } : {}),
    },
  };
}

export function distillCommand(program: Command): void {
  const cmd = program
    .command('distill')
    .description("train a student on a teacher's next-token distributions (forward KL, T = 1, as Minitron)")
    .requiredOption('--teacher <model>', 'the model to learn from (llama2.c .bin or Hugging Face directory)')
    .requiredOption(
      '--student <model>',
      'the model to train (e.g. a compressed or pruned teacher, or init output)',
    )
    .addOption(new Option('--loss <loss>', 'objective (default kl)').choices(['kl', 'ce', 'kl+ce']))
    .option(
      '--temperature <t>',
      'softmax temperature of both distributions (default 1)',
      parseFloatArg(1e-3, 100),
    )
    .option('--ce-weight <w>', 'weight of the next-token loss under kl+ce (default 1)', parseFloatArg(0, 100))
    .option(
      '--hidden-layers <map>',
      "layer map of the hidden-state loss: 'uniform' or student:teacher pairs (0:0,1:2,2:4); default uniform, on when student and teacher have the same width",
      parseLayerMap,
    )
    .option(
      '--hidden-weight <w>',
      'weight of the hidden-state loss (default 1; 0 turns it off: KL only)',
      parseFloatArg(0, 1e6),
    )
    .option('--teacher-tokenizer <path>', "the teacher's tokenizer (default: found beside it)")
    .option('--teacher-backend <name>', "the teacher's backend (default: the fastest available)")
    .option('--teacher-device <device>', "the teacher's device");
  addTrainingOptions(cmd);
  cmd.action(async (o: DistillFlags) => {
    if (o.hiddenWeight === 0 && o.hiddenLayers)
      throw new LineageError(
        '--hidden-weight 0 turns the hidden-state loss off; drop --hidden-layers or give a weight',
      );
    const run = await prepareRun(o, [
      { path: o.teacher, what: 'the teacher (--teacher)' },
      { path: o.student, what: 'the student (--student)' },
      { path: o.tokenizer, what: 'the tokenizer' },
      { path: o.teacherTokenizer, what: "the teacher's tokenizer" },
    ]);
    try {
      const { model: teacher } = await loadModel(o.teacher, {
        ...(o.teacherTokenizer ? { tokenizer: o.teacherTokenizer } : {}),
      });
      const { model: student } = await loadModel(o.student, { tokenizer: o.tokenizer });
      requireContext(teacher, o.teacher);
      requireContext(student, o.student);
      checkHiddenFlags(o, student, teacher);
      const both = [
        { model: student, path: o.student },
        { model: teacher, path: o.teacher },
      ];
      checkSeqLen('--seq-len', o.seqLen, both);
      checkSeqLen('--eval-seq-len', o.evalSeqLen, both);
      checkBatchFits(o, [student, teacher]);
      checkBudget(o, [student, teacher], student);
      const tokenizers = [tokenizerInput(teacher, "the teacher's tokenizer"), tokenizerInput(student)];
      checkNoOverlap(o.out, tokenizers);
      checkNoOverlap(o.runDir ?? `${o.out}.run`, tokenizers, '--run-dir');
      const backend = await selectBackend(o);
      const teacherBackend = await getBackend(
        o.teacherBackend,
        o.teacherDevice ? { device: o.teacherDevice } : {},
      );
      logSoon(`teacher backend: ${describeBackend(teacherBackend)}`);
      const r = await distill({
        ...run.options,
        teacher,
        student,
        backend,
        teacherBackend,
        ...(o.loss ? { loss: o.loss } : {}),
        ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
        ...(o.ceWeight !== undefined ? { ceWeight: o.ceWeight } : {}),
        ...hiddenOption(o),
      });
      await finishRun(o, run, student, r, {
        kind: 'distill',
        teacher: o.teacher,
        student: o.student,
        objective: o.loss ?? 'kl',
        temperature: o.temperature ?? 1,
      });
    } finally {
      run.dispose();
    }
  });
}
