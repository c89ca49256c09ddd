/*
 * The corpus of bad inputs and misuses that `bad-inputs.test.ts` runs through the built CLI: every command,
 * every class of mistake this package owns (outputs that would destroy inputs, failures of the environment,
 * resume with nothing to resume, errors that must name their file). Each case is a command line over the
 * fixtures and what its one error line must name. fast-check draws the mutated inputs (truncations, JSON
 * field mutations) from fixed seeds, so the corpus is the same on every run.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, saveModel } from '@lineage/core';
import fc from 'fast-check';
import { BIN, DEV, MODEL, padVocab } from './test-support.js';

/** The fixtures every case reads (all hashed before and after every case). */
export interface Fixtures {
  dir: string;
  /** llama2.c checkpoint with its tokenizer beside it (tok512.bin). */
  bin: string;
  tok: string;
  /** The same model as a Hugging Face directory. */
  hf: string;
  data: string;
  dev: string;
  stats: string;
  /** A file and a non-empty directory that no case reads. */
  other: string;
  otherDir: string;
  /** Statistics with a NaN in a Gram, with negated Grams, of another model with a forged fingerprint, cut short. */
  nanStats: string;
  negStats: string;
  forgedStats: string;
  shortStats: string;
  /** Statistics with one Gram entry made asymmetric; importance statistics with a NaN head score. */
  asymStats: string;
  nanImportanceStats: string;
  /** A Hugging Face directory whose context is one token. */
  ctx1: string;
  /** Truncations of the checkpoint and of model.safetensors; config.json and tokenizer.json mutations. */
  truncatedBins: string[];
  truncatedHf: string[];
  configMutants: string[];
  tokenizerMutants: string[];
  /** A data directory holding a text file and a FIFO (outside the fixtures: hashing would block on it). */
  fifoData: string;
  /** family.json files: a member's dir a number, a negative parameter count, a perplexity of -1, a key twice. */
  badFamilies: string[];
  /** Recipes: an empty data.docSeparator; nesting deeper than any recipe. */
  emptySeparatorRecipe: string;
  deepRecipe: string;
  /** Recipes: an unknown backend; two outputs to one directory; the run directory the recipe itself. */
  backendRecipe: string;
  twoOutputsRecipe: string;
  runDirRecipe: string;
  /** HF directories: config.json claiming 10^9 layers; rope_parameters a string; a merge of unknown pieces;
   * tokenizer_config.json a list. */
  billionLayers: string;
  ropeString: string;
  unknownMerge: string;
  tokenizerConfigList: string;
  /** HF directory whose tokenizer.json lists a vocabulary piece twice. */
  tokenizerDupKey: string;
  /** HF directories: the vocabulary padded to 520 rows (a legitimate input); cut to 504 (the tokenizer larger). */
  paddedVocab: string;
  cutVocab: string;
  /** The model compressed by svd (low_rank layers). */
  lowRank: string;
  /** A Hugging Face directory with one weight of 1e6 (beyond float16). */
  bigWeight: string;
  /** Data: a JSONL file whose records name `text` twice; a text file of nothing but separator lines. */
  dupKeyJsonl: string;
  onlySeparators: string;
  /** tmpfs mounts (when the suite may mount): 64 KiB, and read-only. */
  tiny: string;
  readOnly: string;
}

export interface Case {
  name: string;
  /** The command line after `lineage`, given the fixtures and a fresh empty directory for outputs. */
  argv: (f: Fixtures, out: string) => string[];
  /** What the one error line must name (a path as given, or an option). */
  names: (f: Fixtures, out: string) => string;
  /** What it must not say (e.g. an option the user never gave). */
  notSaying?: RegExp;
  /** Needs the tmpfs mounts (root and mount(8)). */
  needsMount?: boolean;
}

const LONG = 'n'.repeat(300);
const SEED = 17;

type Header = Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;

/** A safetensors file as its header JSON and data bytes. */
function readSafetensors(path: string): {
  header: Header & { __metadata__?: Record<string, string> };
  data: Buffer;
} {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  return { header: JSON.parse(b.subarray(8, 8 + n).toString('utf8')), data: Buffer.from(b.subarray(8 + n)) };
}

function writeSafetensors(path: string, header: object, data: Buffer): void {
  let h = Buffer.from(JSON.stringify(header));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(path, Buffer.concat([len, h, data]));
}

function calibrate(dir: string, model: string, data: string, out: string, stats = 'hessian'): void {
  execFileSync(
    'node',
    [
      BIN,
      'calibrate',
      model,
      '--data',
      data,
      '--samples',
      '2',
      '--seq-len',
      '16',
      '--stats',
      stats,
      '--out',
      out,
    ],
    { cwd: dir, stdio: 'pipe' },
  );
}

/** Builds the fixtures in `dir` (seconds: one conversion, two small calibrations through the CLI). */
export async function makeFixtures(
  dir: string,
  mounts: { tiny: string; readOnly: string },
): Promise<Fixtures> {
  const f = (...p: string[]) => join(dir, ...p);
  const bin = f('model.bin');
  copyFileSync(MODEL, bin);
  copyFileSync(join(MODEL, '..', 'tok512.bin'), f('tok512.bin'));
  const { model } = await loadModel(bin);
  await saveModel(model, f('hf'), { format: 'hf' });
  const dev = readFileSync(DEV, 'utf8');
  writeFileSync(f('data.txt'), dev.slice(0, 20_000));
  writeFileSync(f('dev.txt'), dev.slice(20_000, 30_000));
  writeFileSync(f('other.txt'), 'not an input of any case\n');
  mkdirSync(f('other-dir'));
  writeFileSync(f('other-dir', 'keep.txt'), 'keep me\n');

  // statistics: good, NaN in a Gram, negated Grams, another model's with this model's fingerprint, cut short
  const stats = f('stats.st');
  calibrate(dir, bin, f('data.txt'), stats);
  const { header, data } = readSafetensors(stats);
  const gram = Object.keys(header).find((k) => k.endsWith('.hessian'))!;
  const [start, end] = header[gram]!.data_offsets;
  const nan = Buffer.from(data);
  nan.writeDoubleLE(Number.NaN, start);
  writeSafetensors(f('nan.st'), header, nan);
  const neg = Buffer.from(data);
  for (let o = start; o < end; o += 8) neg.writeDoubleLE(-neg.readDoubleLE(o), o);
  writeSafetensors(f('neg.st'), header, neg);
  // one off-diagonal entry of a Gram changed: no longer symmetric (not a Gram, though finite and its diagonal fine)
  const asym = Buffer.from(data);
  asym.writeDoubleLE(12345, start + 8 * 1);
  writeSafetensors(f('asym.st'), header, asym);
  // importance statistics with a NaN in one layer's head scores (a pruner would choose heads by NaN)
  calibrate(dir, bin, f('data.txt'), f('importance.st'), 'importance');
  const imp = readSafetensors(f('importance.st'));
  const heads = 'model.layers.0.self_attn.head_importance';
  const nanImp = Buffer.from(imp.data);
  nanImp.writeDoubleLE(Number.NaN, imp.header[heads]!.data_offsets[0]);
  writeSafetensors(f('nan-importance.st'), imp.header, nanImp);
  const small = initLike(bin, f('small-parent'));
  calibrate(dir, small, f('data.txt'), f('small.st'));
  const other = readSafetensors(f('small.st'));
  const key = 'lineage.calibration';
  const otherInfo = JSON.parse(other.header.__metadata__![key]!);
  otherInfo.modelFingerprint = JSON.parse(header.__metadata__![key]!).modelFingerprint;
  other.header.__metadata__![key] = JSON.stringify(otherInfo);
  writeSafetensors(f('forged.st'), other.header, other.data);
  writeFileSync(f('short.st'), readFileSync(stats).subarray(0, statSync(stats).size - 1000));

  // a one-token context
  cpSync(f('hf'), f('ctx1'), { recursive: true });
  const config = JSON.parse(readFileSync(f('hf', 'config.json'), 'utf8'));
  writeFileSync(f('ctx1', 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 1 }));

  // random truncations of the checkpoint and of model.safetensors
  const binSize = statSync(bin).size;
  const truncatedBins = fc
    .sample(fc.integer({ min: 0, max: binSize - 1 }), { seed: SEED, numRuns: 6 })
    .map((n, i) => {
      const p = f(`cut-${i}.bin`);
      writeFileSync(p, readFileSync(bin).subarray(0, n));
      return p;
    });
  const st = f('hf', 'model.safetensors');
  const truncatedHf = fc
    .sample(fc.integer({ min: 0, max: statSync(st).size - 1 }), { seed: SEED, numRuns: 4 })
    .map((n, i) => {
      const d = f(`hf-cut-${i}`);
      cpSync(f('hf'), d, { recursive: true });
      writeFileSync(join(d, 'model.safetensors'), readFileSync(st).subarray(0, n));
      return d;
    });

  // config.json: a structural field made invalid (missing, zero, negative, fractional, a string, null)
  const fields = [
    'hidden_size',
    'num_hidden_layers',
    'num_attention_heads',
    'intermediate_size',
    'vocab_size',
    'num_key_value_heads',
  ];
  const invalid = fc.oneof(
    fc.constant(undefined),
    fc.constant(0),
    fc.integer({ min: -1_000_000, max: -1 }),
    fc.double({ min: 0.1, max: 1000, noInteger: true, noNaN: true }),
    fc.string({ maxLength: 6 }),
    fc.constant(null),
  );
  const configMutants = fc
    .sample(fc.tuple(fc.constantFrom(...fields), invalid), { seed: SEED, numRuns: 8 })
    .map(([field, value], i) => {
      const d = f(`hf-config-${i}`);
      cpSync(f('hf'), d, { recursive: true });
      const c = { ...config };
      if (value === undefined) delete c[field];
      else c[field] = value;
      writeFileSync(join(d, 'config.json'), JSON.stringify(c));
      return d;
    });

  // tokenizer.json: cut short, or its model section broken
  const tokJson = readFileSync(f('hf', 'tokenizer.json'), 'utf8');
  const tok = JSON.parse(tokJson);
  const tokenizerMutants = [
    tokJson.slice(
      0,
      fc.sample(fc.integer({ min: 1, max: tokJson.length - 1 }), { seed: SEED, numRuns: 1 })[0],
    ),
    JSON.stringify({ ...tok, model: undefined }),
    JSON.stringify({ ...tok, model: { ...tok.model, vocab: undefined } }),
    JSON.stringify([tok]),
  ].map((text, i) => {
    const d = f(`hf-tok-${i}`);
    cpSync(f('hf'), d, { recursive: true });
    writeFileSync(join(d, 'tokenizer.json'), text);
    return d;
  });

  // a FIFO inside a data directory, outside the fixtures (hashing them would block on it)
  const fifoData = join(dir, '..', 'special', 'data-with-fifo');
  mkdirSync(fifoData, { recursive: true });
  copyFileSync(f('data.txt'), join(fifoData, 'a.txt'));
  execFileSync('mkfifo', [join(fifoData, 'b.txt')]);

  // family records with a malformed field each (what `lineage report` reads)
  const family = {
    schema: 'lineage.family/1',
    method: { name: 'svd', version: '1' },
    parent: { path: bin, params: 1000, bytes: 4000, bitsPerParam: 32, perplexity: 5, nll: 1.6 },
    heldOut: 'dev.txt',
    sizes: [0.5],
    members: [{ dir: 'svd-0.50', size: 0.5, params: 500, bytes: 2000, bitsPerParam: 32, perplexity: 6 }],
    wallSeconds: 1,
  };
  const member = family.members[0]!;
  const badFamilies = [
    { ...family, members: [{ ...member, dir: 5 }] },
    { ...family, members: [{ ...member, params: -500 }] },
    { ...family, members: [{ ...member, perplexity: -1 }] },
  ]
    .map((r) => JSON.stringify(r))
    .concat(`${JSON.stringify(family).slice(0, -1)},"members":[]}`)
    .concat(
      [
        { ...family, members: [{ ...member, dir: '../../../../etc' }] },
        { ...family, members: [{ ...member, dir: '/etc' }] },
        { ...family, members: [{ ...member, dir: 'gone' }] },
        { ...family, members: [member, member] },
      ].map((r) => JSON.stringify(r)),
    )
    .map((text, i) => {
      mkdirSync(f(`family-bad-${i}`));
      // the member directory exists (but for 'gone'), so that only the case's own fault is found
      mkdirSync(f(`family-bad-${i}`, 'svd-0.50'));
      const p = f(`family-bad-${i}`, 'family.json');
      writeFileSync(p, text);
      return p;
    });

  const recipe = (extra: string) =>
    `parent: ${bin}\ndata:\n  train: ${f('data.txt')}\n${extra}stages:\n  - method: svd\n    options: { rank: 4 }\noutputs:\n  - kind: save\n    dir: out\n`;
  const emptySeparatorRecipe = f('recipe-empty-separator.yaml');
  writeFileSync(emptySeparatorRecipe, recipe('').replace('\nstages:', "\n  docSeparator: ''\nstages:"));
  const deepRecipe = f('recipe-deep.yaml');
  writeFileSync(deepRecipe, `${recipe('')}seed: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`);
  const backendRecipe = f('recipe-backend.yaml');
  writeFileSync(backendRecipe, `${recipe('')}backend: cuda9\n`);
  const twoOutputsRecipe = f('recipe-two-outputs.yaml');
  writeFileSync(twoOutputsRecipe, `${recipe('')}  - kind: save\n    dir: out\n`);
  const runDirRecipe = f('recipe-run-dir.yaml');
  writeFileSync(runDirRecipe, `${recipe('')}runDir: recipe-run-dir.yaml\n`);

  const hfVariant = (name: string, file: string, text: string) => {
    const d = f(name);
    cpSync(f('hf'), d, { recursive: true });
    writeFileSync(join(d, file), text);
    return d;
  };
  const billionLayers = hfVariant(
    'hf-layers',
    'config.json',
    JSON.stringify({ ...config, num_hidden_layers: 1e9 }),
  );
  const ropeString = hfVariant('hf-rope', 'config.json', JSON.stringify({ ...config, rope_parameters: 'x' }));
  const unknownMerge = hfVariant(
    'hf-merge',
    'tokenizer.json',
    JSON.stringify({ ...tok, model: { ...tok.model, merges: ['zzq yyq'] } }),
  );
  const tokenizerConfigList = hfVariant('hf-tokcfg', 'tokenizer_config.json', '[1]');
  const tokenizerDupKey = hfVariant(
    'hf-tok-dup',
    'tokenizer.json',
    tokJson.replace('"<unk>":0,', '"<unk>":0,"<unk>":0,'),
  );
  // one weight beyond float16's range (a legitimate f32 model; exporting it fp16 would store an infinity)
  cpSync(f('hf'), f('hf-big-weight'), { recursive: true });
  const big = readSafetensors(f('hf', 'model.safetensors'));
  big.data.writeFloatLE(1e6, big.header['model.layers.0.self_attn.q_proj.weight']!.data_offsets[0]);
  writeSafetensors(f('hf-big-weight', 'model.safetensors'), big.header, big.data);
  // a compressed (low-rank) model: a quantizer must name it rather than only the layer
  execFileSync('node', [BIN, 'compress', bin, '--method', 'svd', '--rank', '4', '--out', f('low-rank')], {
    stdio: 'pipe',
  });
  writeFileSync(f('dup-key.jsonl'), '{"text": "Once upon a time.", "text": "x"}\n');
  writeFileSync(f('only-separators.txt'), '<|endoftext|>\n'.repeat(50));
  padVocab(f('hf'), f('hf-padded'), 8);
  padVocab(f('hf'), f('hf-cut-vocab'), -8);

  return {
    dir,
    bin,
    tok: f('tok512.bin'),
    hf: f('hf'),
    data: f('data.txt'),
    dev: f('dev.txt'),
    stats,
    other: f('other.txt'),
    otherDir: f('other-dir'),
    nanStats: f('nan.st'),
    negStats: f('neg.st'),
    forgedStats: f('forged.st'),
    shortStats: f('short.st'),
    asymStats: f('asym.st'),
    nanImportanceStats: f('nan-importance.st'),
    ctx1: f('ctx1'),
    truncatedBins,
    truncatedHf,
    configMutants,
    tokenizerMutants,
    fifoData,
    badFamilies,
    emptySeparatorRecipe,
    deepRecipe,
    backendRecipe,
    twoOutputsRecipe,
    runDirRecipe,
    billionLayers,
    ropeString,
    unknownMerge,
    tokenizerConfigList,
    tokenizerDupKey,
    paddedVocab: f('hf-padded'),
    cutVocab: f('hf-cut-vocab'),
    dupKeyJsonl: f('dup-key.jsonl'),
    bigWeight: f('hf-big-weight'),
    lowRank: f('low-rank'),
    onlySeparators: f('only-separators.txt'),
    ...mounts,
  };
}

/** A narrower model like `parent` (another shape, for the forged statistics). */
function initLike(parent: string, out: string): string {
  execFileSync('node', [BIN, 'init', '--like', parent, '--dim', '32', '--hidden', '96', '--out', out], {
    stdio: 'pipe',
  });
  return out;
}

const svd = ['--method', 'svd', '--rank', '4'];
const calib = (f: Fixtures) => ['--data', f.data, '--samples', '2', '--seq-len', '16'];

/** The corpus. `out` is an empty directory of the case's own; outputs named there must not appear. */
export const cases: Case[] = [
  // 1. outputs that are, hold or lie inside an input: refused with or without --force
  {
    name: 'calibrate --out the data file',
    argv: (f) => ['calibrate', f.bin, ...calib(f), '--out', f.data],
    names: (f) => f.data,
  },
  {
    name: 'calibrate --out the model --force',
    argv: (f) => ['calibrate', f.bin, ...calib(f), '--out', f.bin, '--force'],
    names: (f) => f.bin,
  },
  {
    name: 'calibrate --out the tokenizer found beside the model --force',
    argv: (f) => ['calibrate', f.bin, ...calib(f), '--out', f.tok, '--force'],
    names: (f) => f.tok,
  },
  {
    name: 'calibrate --out an existing file without --force',
    argv: (f) => ['calibrate', f.bin, ...calib(f), '--out', f.other],
    names: (f) => f.other,
  },
  {
    name: 'calibrate --out a directory',
    argv: (f) => ['calibrate', f.bin, ...calib(f), '--out', f.otherDir, '--force'],
    names: (f) => f.otherDir,
  },
  {
    name: 'calibrate --out inside the model directory',
    argv: (f) => ['calibrate', f.hf, ...calib(f), '--out', join(f.hf, 'stats.st')],
    names: (f) => join(f.hf, 'stats.st'),
  },
  {
    name: 'convert --to llama2c --out its own --tokenizer --force',
    argv: (f) => ['convert', f.bin, '--to', 'llama2c', '--tokenizer', f.tok, '--out', f.tok, '--force'],
    names: (f) => f.tok,
  },
  {
    name: 'convert --to llama2c --out the tokenizer beside the model --force',
    argv: (f) => ['convert', f.bin, '--to', 'llama2c', '--out', f.tok, '--force'],
    names: (f) => f.tok,
  },
  {
    name: 'convert --to hf --out the model directory --force',
    argv: (f) => ['convert', f.hf, '--to', 'hf', '--out', f.hf, '--force'],
    names: (f) => f.hf,
  },
  {
    name: 'convert --to hf --out a directory holding the model --force',
    argv: (f) => ['convert', f.hf, '--to', 'hf', '--out', f.dir, '--force'],
    names: (f) => f.dir,
  },
  {
    name: 'convert --to hf --out inside the model directory --force',
    argv: (f) => ['convert', f.hf, '--to', 'hf', '--out', join(f.hf, 'sub'), '--force'],
    names: (f) => join(f.hf, 'sub'),
  },
  {
    name: 'convert --to llama2c --out an existing file without --force',
    argv: (f) => ['convert', f.bin, '--to', 'llama2c', '--out', f.other],
    names: (f) => f.other,
  },
  {
    name: 'convert --to llama2c --out a directory --force',
    argv: (f) => ['convert', f.bin, '--to', 'llama2c', '--out', f.otherDir, '--force'],
    names: (f) => f.otherDir,
  },
  {
    name: 'init --out its --like model --force',
    argv: (f) => ['init', '--like', f.bin, '--out', f.bin, '--force'],
    names: (f) => f.bin,
  },
  {
    name: 'init --out the --like directory --force',
    argv: (f) => ['init', '--like', f.hf, '--out', f.hf, '--force'],
    names: (f) => f.hf,
  },
  {
    name: 'init --out a non-empty directory without --force',
    argv: (f) => ['init', '--like', f.bin, '--out', f.otherDir],
    names: (f) => f.otherDir,
  },
  {
    name: 'train --out the data file --force',
    argv: (f) => ['train', f.bin, '--data', f.data, '--tokens', '1k', '--out', f.data, '--force'],
    names: (f) => f.data,
  },
  {
    name: 'train --out the model --force',
    argv: (f) => ['train', f.hf, '--data', f.data, '--tokens', '1k', '--out', f.hf, '--force'],
    names: (f) => f.hf,
  },
  {
    name: 'train --run-dir the model directory',
    argv: (f, o) => [
      'train',
      f.hf,
      '--data',
      f.data,
      '--tokens',
      '1k',
      '--out',
      join(o, 't'),
      '--run-dir',
      f.hf,
    ],
    names: (f) => f.hf,
  },
  {
    name: 'train --out holding its --eval-data --force',
    argv: (f) => [
      'train',
      f.bin,
      '--data',
      f.data,
      '--eval-data',
      f.dev,
      '--tokens',
      '1k',
      '--out',
      f.dir,
      '--force',
    ],
    names: (f) => f.dir,
  },
  {
    name: 'distill --out the student --force',
    argv: (f) => [
      'distill',
      '--teacher',
      f.bin,
      '--student',
      f.hf,
      '--data',
      f.data,
      '--tokens',
      '1k',
      '--out',
      f.hf,
      '--force',
    ],
    names: (f) => f.hf,
  },
  {
    name: 'distill --out the teacher (.bin) --force',
    argv: (f) => [
      'distill',
      '--teacher',
      f.bin,
      '--student',
      f.hf,
      '--data',
      f.data,
      '--tokens',
      '1k',
      '--out',
      f.bin,
      '--force',
    ],
    names: (f) => f.bin,
  },
  {
    name: 'compress --out the model directory --force',
    argv: (f) => ['compress', f.hf, ...svd, '--out', f.hf, '--force'],
    names: (f) => f.hf,
  },
  {
    name: 'compress --out a directory holding the model --force',
    argv: (f) => ['compress', f.hf, ...svd, '--out', f.dir, '--force'],
    names: (f) => f.dir,
  },
  {
    name: 'compress --out the statistics file --force',
    argv: (f) => ['compress', f.bin, ...svd, '--data-aware', '--stats', f.stats, '--out', f.stats, '--force'],
    names: (f) => f.stats,
  },
  {
    name: 'compress --run-dir the data file',
    argv: (f, o) => ['compress', f.bin, ...svd, '--data', f.data, '--out', join(o, 'c'), '--run-dir', f.data],
    names: (f) => f.data,
  },
  {
    name: 'compress --out a non-empty directory without --force',
    argv: (f) => ['compress', f.bin, ...svd, '--out', f.otherDir],
    names: (f) => f.otherDir,
  },
  {
    name: 'compress --out an existing file --force',
    argv: (f) => ['compress', f.bin, ...svd, '--out', f.other, '--force'],
    names: (f) => f.other,
  },
  {
    name: 'family --out the data file --force',
    argv: (f) => ['family', f.bin, '--schedule', '0.5', '--data', f.data, '--out', f.data, '--force'],
    names: (f) => f.data,
  },
  {
    name: 'family --out its --eval-data --force',
    argv: (f) => ['family', f.bin, '--schedule', '0.5', '--eval-data', f.dev, '--out', f.dev, '--force'],
    names: (f) => f.dev,
  },
  {
    name: 'family --out a directory holding the model --force',
    argv: (f) => ['family', f.bin, '--schedule', '0.5', '--data', f.data, '--out', f.dir, '--force'],
    names: (f) => f.dir,
  },
  {
    name: 'family --run-dir inside the model directory',
    argv: (f, o) => [
      'family',
      f.hf,
      '--schedule',
      '0.5',
      '--data',
      f.data,
      '--out',
      join(o, 'fam'),
      '--run-dir',
      join(f.hf, 'run'),
    ],
    names: (f) => join(f.hf, 'run'),
  },

  // 5. the environment: a regular file as a parent, a name too long, a run directory that is a file, a full
  // or read-only file system
  {
    name: 'convert --out under a regular file',
    argv: (f) => ['convert', f.bin, '--to', 'hf', '--out', join(f.other, 'x')],
    names: (f) => join(f.other, 'x'),
  },
  {
    name: 'calibrate --out under a regular file',
    argv: (f) => ['calibrate', f.bin, ...calib(f), '--out', join(f.other, 'x.st')],
    names: (f) => join(f.other, 'x.st'),
  },
  {
    name: 'train --out under a regular file',
    argv: (f) => ['train', f.bin, '--data', f.data, '--tokens', '1k', '--out', join(f.other, 'm')],
    names: (f) => join(f.other, 'm'),
  },
  {
    name: 'init --out a name too long',
    argv: (f, o) => ['init', '--like', f.bin, '--out', join(o, `${LONG}.bin`)],
    names: () => LONG,
  },
  {
    name: 'compress --out a directory name too long',
    argv: (f, o) => ['compress', f.bin, ...svd, '--out', join(o, LONG, 'm')],
    names: () => LONG,
  },
  {
    name: 'calibrate --out a name too long',
    argv: (f, o) => ['calibrate', f.bin, ...calib(f), '--out', join(o, `${LONG}.st`)],
    names: () => LONG,
  },
  {
    name: 'train --run-dir a regular file',
    argv: (f, o) => [
      'train',
      f.bin,
      '--data',
      f.data,
      '--tokens',
      '1k',
      '--out',
      join(o, 't'),
      '--run-dir',
      f.other,
    ],
    names: (f) => f.other,
  },
  {
    name: 'family --run-dir a regular file',
    argv: (f, o) => [
      'family',
      f.bin,
      '--schedule',
      '0.5',
      '--data',
      f.data,
      '--out',
      join(o, 'fam'),
      '--run-dir',
      f.other,
    ],
    names: (f) => f.other,
  },
  {
    name: 'compress --run-dir a regular file',
    argv: (f, o) => [
      'compress',
      f.bin,
      ...svd,
      '--data',
      f.data,
      '--out',
      join(o, 'c'),
      '--run-dir',
      f.other,
    ],
    names: (f) => f.other,
  },
  {
    name: 'distill --run-dir a regular file',
    argv: (f, o) => [
      'distill',
      '--teacher',
      f.bin,
      '--student',
      f.hf,
      '--data',
      f.data,
      '--tokens',
      '1k',
      '--out',
      join(o, 'd'),
      '--run-dir',
      f.other,
    ],
    names: (f) => f.other,
  },
  {
    name: 'convert --to hf onto a full file system',
    argv: (f) => ['convert', f.bin, '--to', 'hf', '--out', join(f.tiny, 'm')],
    names: (f) => join(f.tiny, 'm'),
    needsMount: true,
  },
  {
    name: 'calibrate --out onto a full file system',
    argv: (f) => ['calibrate', f.bin, ...calib(f), '--out', join(f.tiny, 's.st')],
    names: (f) => join(f.tiny, 's.st'),
    needsMount: true,
  },
  {
    name: 'init --out a .bin onto a full file system',
    argv: (f) => ['init', '--like', f.bin, '--out', join(f.tiny, 'm.bin')],
    names: (f) => join(f.tiny, 'm.bin'),
    needsMount: true,
  },
  {
    name: 'convert --to hf onto a read-only file system',
    argv: (f) => ['convert', f.bin, '--to', 'hf', '--out', join(f.readOnly, 'm')],
    names: (f) => join(f.readOnly, 'm'),
    needsMount: true,
  },
  {
    name: 'calibrate --out onto a read-only file system',
    argv: (f) => ['calibrate', f.bin, ...calib(f), '--out', join(f.readOnly, 's.st')],
    names: (f) => join(f.readOnly, 's.st'),
    needsMount: true,
  },
  {
    name: 'compress --out onto a read-only file system',
    argv: (f) => ['compress', f.bin, ...svd, '--out', join(f.readOnly, 'c')],
    names: (f) => join(f.readOnly, 'c'),
    needsMount: true,
  },

  // 6. --resume with nothing to resume
  {
    name: 'family --resume with an empty run directory',
    argv: (f, o) => [
      'family',
      f.bin,
      '--schedule',
      '0.5',
      '--data',
      f.data,
      '--out',
      join(o, 'fam'),
      '--run-dir',
      o,
      '--resume',
    ],
    names: (_, o) => o,
  },
  {
    name: 'compress --resume with nothing to resume',
    argv: (f, o) => ['compress', f.bin, ...svd, '--data', f.data, '--out', join(o, 'c'), '--resume'],
    names: (_, o) => join(o, 'c.run'),
  },
  {
    name: 'train --resume with nothing to resume',
    argv: (f, o) => ['train', f.bin, '--data', f.data, '--tokens', '1k', '--out', join(o, 't'), '--resume'],
    names: (_, o) => join(o, 't.run'),
  },
  {
    name: 'distill --resume with nothing to resume',
    argv: (f, o) => [
      'distill',
      '--teacher',
      f.bin,
      '--student',
      f.hf,
      '--data',
      f.data,
      '--tokens',
      '1k',
      '--out',
      join(o, 'd'),
      '--resume',
    ],
    names: (_, o) => join(o, 'd.run'),
  },

  // 7. messages that name their file
  {
    name: 'compress --stats with a NaN in a Gram',
    argv: (f, o) => ['compress', f.bin, ...svd, '--data-aware', '--stats', f.nanStats, '--out', join(o, 'c')],
    names: (f) => f.nanStats,
  },
  {
    name: 'compress --stats with negative-definite Grams (not called "not finite")',
    argv: (f, o) => ['compress', f.bin, ...svd, '--data-aware', '--stats', f.negStats, '--out', join(o, 'c')],
    names: (f) => f.negStats,
    notSaying: /not finite/,
  },
  {
    name: "compress --stats of another model's shape with a forged fingerprint",
    argv: (f, o) => [
      'compress',
      f.bin,
      ...svd,
      '--data-aware',
      '--stats',
      f.forgedStats,
      '--out',
      join(o, 'c'),
    ],
    names: (f) => f.forgedStats,
  },
  {
    name: 'compress --stats cut short',
    argv: (f, o) => [
      'compress',
      f.bin,
      ...svd,
      '--data-aware',
      '--stats',
      f.shortStats,
      '--out',
      join(o, 'c'),
    ],
    names: (f) => f.shortStats,
  },
  {
    name: 'compress --stats that is a model, not statistics',
    argv: (f, o) => [
      'compress',
      f.bin,
      ...svd,
      '--data-aware',
      '--stats',
      join(f.hf, 'model.safetensors'),
      '--out',
      join(o, 'c'),
    ],
    names: (f) => join(f.hf, 'model.safetensors'),
  },
  {
    name: 'eval a model whose context is one token (no --seq-len given)',
    argv: (f) => ['eval', f.ctx1, '--data', f.dev],
    names: (f) => f.ctx1,
    notSaying: /seq-len|sequence length/,
  },
  {
    name: 'train a model whose context is one token',
    argv: (f, o) => ['train', f.ctx1, '--data', f.data, '--tokens', '1k', '--out', join(o, 't')],
    names: (f) => f.ctx1,
    notSaying: /seq-len|sequence length/,
  },
  {
    name: 'family of a model whose context is one token',
    argv: (f, o) => ['family', f.ctx1, '--schedule', '0.5', '--eval-data', f.dev, '--out', join(o, 'fam')],
    names: (f) => f.ctx1,
    notSaying: /seq-len|sequence length/,
  },

  // misuse and malformed inputs across the other commands
  {
    name: 'inspect a missing file',
    argv: (_, o) => ['inspect', join(o, 'missing.bin')],
    names: (_, o) => join(o, 'missing.bin'),
  },
  {
    name: 'inspect an empty file',
    argv: (f) => ['inspect', f.other],
    names: (f) => f.other,
  },
  {
    name: 'inspect a directory without config.json',
    argv: (f) => ['inspect', f.otherDir],
    names: (f) => f.otherDir,
  },
  {
    name: 'eval --data missing',
    argv: (f, o) => ['eval', f.bin, '--data', join(o, 'none.txt')],
    names: (_, o) => join(o, 'none.txt'),
  },
  {
    name: 'generate with a tokenizer that is a model',
    argv: (f) => ['generate', f.bin, '--tokenizer', f.bin, '--prompt', 'hi'],
    names: (f) => f.bin,
  },
  {
    name: 'calibrate --data missing',
    argv: (f, o) => [
      'calibrate',
      f.bin,
      '--data',
      join(o, 'none.txt'),
      '--samples',
      '2',
      '--seq-len',
      '16',
      '--out',
      join(o, 's.st'),
    ],
    names: (_, o) => join(o, 'none.txt'),
  },
  {
    name: 'compress --stats missing',
    argv: (f, o) => [
      'compress',
      f.bin,
      ...svd,
      '--data-aware',
      '--stats',
      join(o, 'none.st'),
      '--out',
      join(o, 'c'),
    ],
    names: (_, o) => join(o, 'none.st'),
  },
  {
    name: 'distill --teacher missing',
    argv: (f, o) => [
      'distill',
      '--teacher',
      join(o, 'none.bin'),
      '--student',
      f.hf,
      '--data',
      f.data,
      '--tokens',
      '1k',
      '--out',
      join(o, 'd'),
    ],
    names: (_, o) => join(o, 'none.bin'),
  },
  {
    name: 'train --resume and --restart together',
    argv: (f, o) => [
      'train',
      f.bin,
      '--data',
      f.data,
      '--tokens',
      '1k',
      '--out',
      join(o, 't'),
      '--resume',
      '--restart',
    ],
    names: () => '--restart',
  },
  {
    name: 'convert --to llama2c --dtype f16',
    argv: (f, o) => ['convert', f.bin, '--to', 'llama2c', '--dtype', 'f16', '--out', join(o, 'm.bin')],
    names: () => '--dtype',
  },

  // flags against each other or against the model: the error names the flag, not a library field
  {
    name: 'init --kv-heads that does not divide the heads',
    argv: (f, o) => ['init', '--like', f.bin, '--kv-heads', '3', '--out', join(o, 'i')],
    names: () => '--kv-heads 3',
  },
  {
    name: 'init --heads that does not divide the width',
    argv: (f, o) => ['init', '--like', f.bin, '--heads', '6', '--out', join(o, 'i')],
    names: () => '--heads 6',
  },
  {
    name: 'init --dim giving heads of odd width',
    argv: (f, o) => ['init', '--like', f.bin, '--dim', '40', '--out', join(o, 'i')],
    names: () => '--dim 40',
  },
  {
    name: 'distill --hidden-layers past the teacher',
    argv: (f, o) => [
      'distill',
      '--teacher',
      f.bin,
      '--student',
      f.hf,
      '--data',
      f.data,
      '--tokens',
      '1k',
      '--hidden-layers',
      '0:99',
      '--out',
      join(o, 'd'),
    ],
    names: () => '--hidden-layers 0:99',
  },
  {
    name: 'train --holdout more documents than the data holds',
    argv: (f, o) => [
      'train',
      f.bin,
      '--data',
      f.data,
      '--doc-separator',
      '<|endoftext|>',
      '--holdout',
      '100000',
      '--tokens',
      '1k',
      '--out',
      join(o, 't'),
    ],
    names: () => '--holdout 100000',
  },
  {
    name: 'family --holdout more documents than the data holds',
    argv: (f, o) => [
      'family',
      f.bin,
      '--schedule',
      '0.5',
      '--data',
      f.data,
      '--doc-separator',
      '<|endoftext|>',
      '--holdout',
      '100000',
      '--out',
      join(o, 'fam'),
    ],
    names: () => '--holdout 100000',
  },
  {
    name: 'train --seq-len past the context',
    argv: (f, o) => [
      'train',
      f.bin,
      '--data',
      f.data,
      '--seq-len',
      '4096',
      '--tokens',
      '1M',
      '--out',
      join(o, 't'),
    ],
    names: () => '--seq-len 4096',
  },
  {
    name: 'train --micro-batch larger than --batch-size',
    argv: (f, o) => [
      'train',
      f.bin,
      '--data',
      f.data,
      '--batch-size',
      '8',
      '--micro-batch',
      '16',
      '--tokens',
      '100k',
      '--out',
      join(o, 't'),
    ],
    names: () => '--micro-batch 16',
  },
  {
    name: 'train --batch-size whose activations cannot fit in memory',
    argv: (f, o) => [
      'train',
      f.bin,
      '--data',
      f.data,
      '--batch-size',
      '1000000000',
      '--tokens',
      '1e15',
      '--out',
      join(o, 't'),
    ],
    names: () => '--batch-size 1000000000',
  },
  {
    name: 'eval --batch-size whose activations cannot fit in memory (even with --limit)',
    argv: (f) => ['eval', f.bin, '--data', f.dev, '--limit', '3', '--batch-size', '1000000000'],
    names: () => '--batch-size 1000000000',
    notSaying: /--micro-batch/,
  },
  {
    name: 'export --dtype fp16 of a weight beyond ±65504 (not stored as infinity)',
    argv: (f, o) => ['export', f.bigWeight, '--to', 'onnx', '--dtype', 'fp16', '--out', join(o, 'x')],
    names: () => "tensor 'model.layers.0.self_attn.q_proj.weight' has values up to 1.00000e+6",
  },
  {
    name: 'compress --method rtn of a low-rank model (names the model and the method, not only the layer)',
    argv: (f, o) => ['compress', f.lowRank, '--method', 'rtn', '--bits', '8', '--out', join(o, 'q')],
    names: (f) => `${f.lowRank}: rtn: layer 'model.layers.0.self_attn.q_proj' is a 'low_rank' layer`,
  },
  {
    name: 'eval --data a JSONL record naming its text twice',
    argv: (f) => ['eval', f.bin, '--data', f.dupKeyJsonl],
    names: (f) => `${f.dupKeyJsonl}: line 1 names the key 'text' twice`,
  },
  {
    name: 'eval --data holding only <|endoftext|> separators (no --doc-separator)',
    argv: (f) => ['eval', f.bin, '--data', f.onlySeparators],
    names: (f) => `${f.onlySeparators}: no document`,
  },
  {
    name: 'generate --max-tokens past the context (not silently cut)',
    argv: (f) => ['generate', f.bin, '--prompt', 'hi', '--max-tokens', '1e15'],
    names: () => '--max-tokens',
  },
  {
    name: 'generate --top-p 0',
    argv: (f) => ['generate', f.bin, '--prompt', 'hi', '--top-p', '0'],
    names: () => '--top-p',
  },
  {
    name: 'generate --temperature negative',
    argv: (f) => ['generate', f.bin, '--prompt', 'hi', '--temperature', '-1'],
    names: () => '--temperature',
  },
  {
    name: 'generate --temperature NaN',
    argv: (f) => ['generate', f.bin, '--prompt', 'hi', '--temperature', 'NaN'],
    names: () => '--temperature',
  },
  {
    name: 'eval --doc-separator empty',
    argv: (f) => ['eval', f.bin, '--data', f.dev, '--doc-separator', ''],
    names: () => '--doc-separator',
  },
  {
    name: 'train --doc-separator blank',
    argv: (f, o) => [
      'train',
      f.bin,
      '--data',
      f.data,
      '--doc-separator',
      ' ',
      '--tokens',
      '1k',
      '--out',
      join(o, 't'),
    ],
    names: () => '--doc-separator',
  },
  {
    name: 'eval --batch-size in hex',
    argv: (f) => ['eval', f.bin, '--data', f.dev, '--batch-size', '0x10'],
    names: () => '--batch-size',
  },
  {
    name: "eval --limit '12abc'",
    argv: (f) => ['eval', f.bin, '--data', f.dev, '--limit', '12abc'],
    names: () => '--limit',
  },
  {
    name: 'generate --seed empty (not 0)',
    argv: (f) => ['generate', f.bin, '--prompt', 'hi', '--seed', ''],
    names: () => '--seed',
  },
  {
    name: "convert --out '' --force (the working directory: its files would be replaced)",
    argv: (f) => ['convert', f.bin, '--to', 'hf', '--out', '', '--force'],
    names: () => '--out "": is an empty path',
  },
  {
    name: "eval --seq-len ' 12' (a blank is not part of a number)",
    argv: (f) => ['eval', f.bin, '--data', f.dev, '--seq-len', ' 12'],
    names: () => '--seq-len',
  },
  {
    name: 'compress --data-aware with a Gram that is not symmetric',
    argv: (f, o) => [
      'compress',
      f.bin,
      ...svd,
      '--data-aware',
      '--stats',
      f.asymStats,
      '--out',
      join(o, 'm'),
    ],
    names: (f) => `${f.asymStats}: the Gram`,
  },
  {
    name: 'compress --method minitron with a NaN head importance',
    argv: (f, o) => [
      'compress',
      f.bin,
      '--method',
      'minitron',
      '--params',
      '0.6',
      '--stats',
      f.nanImportanceStats,
      '--out',
      join(o, 'm'),
    ],
    names: (f) =>
      `${f.nanImportanceStats}: statistic 'model.layers.0.self_attn.head_importance' is not finite`,
  },
  {
    // compress's calibration count is --calib-samples (its --seq-len belongs to the recovery)
    name: 'compress --method minitron calibrating on too little data',
    argv: (f, o) => [
      'compress',
      f.hf,
      '--method',
      'minitron',
      '--shape',
      'kv-heads=3',
      '--data',
      f.data,
      '--out',
      join(o, 'm'),
    ],
    names: (f) => `${f.data}: asked for 64 samples`,
    notSaying: /use --samples|--seq-len/,
  },
  {
    name: 'compress --method svd with neither --params nor --rank',
    argv: (f, o) => ['compress', f.bin, '--method', 'svd', '--out', join(o, 'm')],
    names: () => 'svd: --params: give either --params',
  },
  {
    name: 'compress --method plrd --recover-tokens without --data',
    argv: (f, o) => [
      'compress',
      f.bin,
      '--method',
      'plrd',
      '--schedule',
      '0.5',
      '--recover-tokens',
      '1k',
      '--out',
      join(o, 'm'),
    ],
    names: () => '--data: plrd trains',
  },
  {
    name: 'compress --min-lr above --lr',
    argv: (f, o) => [
      'compress',
      f.bin,
      '--method',
      'plrd',
      '--schedule',
      '0.5',
      '--recover-tokens',
      '1k',
      '--lr',
      '1e-3',
      '--min-lr',
      '1e-2',
      '--data',
      f.data,
      '--out',
      join(o, 'm'),
    ],
    names: () => '--min-lr 0.01: must not exceed --lr 0.001',
  },
  // flags that select what runs: named as the usage errors name them
  {
    name: 'eval --backend that does not exist',
    argv: (f) => ['eval', f.bin, '--data', f.dev, '--limit', '2', '--backend', 'foo'],
    names: () => '--backend foo: unknown backend',
  },
  {
    name: 'eval --device no backend runs on',
    argv: (f) => ['eval', f.bin, '--data', f.dev, '--limit', '2', '--device', 'tpu'],
    names: () => '--device tpu:',
  },
  {
    name: 'eval --field empty',
    argv: (f) => ['eval', f.bin, '--data', f.dev, '--field', ''],
    names: () => '--field',
  },
  // a method option's value judged against the model or another option: named by its flag, as the schema's are
  {
    name: 'compress --method svd --rank 1e12 (saves nothing anywhere)',
    argv: (f, o) => ['compress', f.bin, '--method', 'svd', '--rank', '1e12', '--out', join(o, 'm')],
    names: () => 'svd: --rank 1000000000000: saves nothing',
  },
  {
    name: 'compress --method svd --params 0.001 (rank 0 somewhere)',
    argv: (f, o) => ['compress', f.bin, '--method', 'svd', '--params', '0.001', '--out', join(o, 'm')],
    names: () => 'svd: --params 0.001: leaves layer',
  },
  {
    name: 'compress --method minitron --params 1e12 (not below the parent)',
    argv: (f, o) => [
      'compress',
      f.bin,
      '--method',
      'minitron',
      '--importance',
      'magnitude',
      '--params',
      '1e12',
      '--out',
      join(o, 'm'),
    ],
    names: () => 'minitron: --params: a budget of 1000000000000 parameters is not below',
  },
  {
    name: 'compress --method caldera --ft-rank above --rank',
    argv: (f, o) => [
      'compress',
      f.bin,
      '--method',
      'caldera',
      '--rank',
      '4',
      '--ft-rank',
      '5',
      '--out',
      join(o, 'm'),
    ],
    names: () => 'caldera: --ft-rank 5: exceeds --rank 4',
  },
  {
    name: 'compress --method ldlq --codebook e8p12 --bits 3',
    argv: (f, o) => [
      'compress',
      f.bin,
      '--method',
      'ldlq',
      '--codebook',
      'e8p12',
      '--bits',
      '3',
      '--out',
      join(o, 'm'),
    ],
    names: () => 'ldlq: --bits 3: the codebook',
  },
  {
    name: 'family --method svd --schedule with a size that leaves rank 0',
    argv: (f, o) => [
      'family',
      f.bin,
      '--method',
      'svd',
      '--schedule',
      '0.001',
      '--eval-data',
      f.dev,
      '--out',
      join(o, 'fam'),
    ],
    names: () => 'svd: --schedule 0.001: leaves layer',
  },
  {
    name: 'family --method caldera --schedule with a later budget below 2 bits (before the first member)',
    argv: (f, o) => [
      'family',
      f.bin,
      '--method',
      'caldera',
      '--schedule',
      '40,2',
      '--data',
      f.data,
      '--out',
      join(o, 'fam'),
    ],
    names: () => 'caldera: --schedule 2: bits per parameter are below Q at 2 bits',
  },
  {
    name: 'calibrate --samples 1e400',
    argv: (f, o) => [
      'calibrate',
      f.bin,
      '--data',
      f.data,
      '--samples',
      '1e400',
      '--seq-len',
      '16',
      '--out',
      join(o, 's.st'),
    ],
    names: () => '--samples',
  },

  // special files inside a data directory: refused by name, never waited on
  {
    name: 'eval --data a directory holding a FIFO',
    argv: (f) => ['eval', f.bin, '--data', f.fifoData],
    names: (f) => join(f.fifoData, 'b.txt'),
  },
  {
    name: 'train --data a directory holding a FIFO',
    argv: (f, o) => ['train', f.bin, '--data', f.fifoData, '--tokens', '1k', '--out', join(o, 't')],
    names: (f) => join(f.fifoData, 'b.txt'),
  },

  // malformed family records and recipes
  ...['a member dir that is a number', 'a negative parameter count', 'a negative perplexity'].map(
    (what, i): Case => ({
      name: `report of a family.json with ${what}`,
      argv: (f, o) => ['report', f.badFamilies[i]!, '--out', join(o, 'r.html')],
      names: (f) => f.badFamilies[i]!,
    }),
  ),
  {
    name: 'calibrate a config.json claiming 10^9 layers over a file of 5 (fails at once)',
    argv: (f, o) => ['calibrate', f.billionLayers, ...calib(f), '--out', join(o, 's.st')],
    names: (f) => join(f.billionLayers, 'model.safetensors'),
  },
  {
    name: 'generate with a config.json whose rope_parameters is a string',
    argv: (f) => ['generate', f.ropeString, '--prompt', 'hi', '--max-tokens', '2'],
    names: (f) => join(f.ropeString, 'config.json'),
  },
  {
    name: 'generate with a tokenizer.json merge of pieces not in the vocabulary',
    argv: (f) => ['generate', f.unknownMerge, '--prompt', 'hi', '--max-tokens', '2'],
    names: (f) => join(f.unknownMerge, 'tokenizer.json'),
  },
  {
    name: 'generate with a tokenizer_config.json that is a list',
    argv: (f) => ['generate', f.tokenizerConfigList, '--prompt', 'hi', '--max-tokens', '2'],
    names: (f) => f.tokenizerConfigList,
  },
  {
    name: 'eval with a tokenizer.json listing a vocabulary piece twice',
    argv: (f) => ['eval', f.tokenizerDupKey, '--data', f.dev, '--limit', '2'],
    names: (f) => `${join(f.tokenizerDupKey, 'tokenizer.json')}: the key 'model.vocab.<unk>' appears twice`,
  },
  {
    name: 'eval with a tokenizer larger than vocab_size (ids without an embedding row)',
    argv: (f) => ['eval', f.cutVocab, '--data', f.dev, '--limit', '2'],
    names: (f) =>
      `${join(f.cutVocab, 'tokenizer.json')}: tokenizer has 512 tokens, more than the 504 of the model's vocabulary (${join(f.cutVocab, 'config.json')})`,
  },
  {
    name: 'convert a padded vocabulary --to llama2c (run.c needs one tokenizer piece per row)',
    argv: (f, o) => ['convert', f.paddedVocab, '--to', 'llama2c', '--out', join(o, 'm.bin')],
    names: (_, o) => join(o, 'm.bin'),
  },
  ...[
    'a member dir out of its directory (../../../../etc)',
    'an absolute member dir (/etc)',
    'a member dir that is not there',
    'one member listed twice',
  ].map(
    (what, i): Case => ({
      name: `report of a family.json with ${what}`,
      argv: (f, o) => ['report', f.badFamilies[4 + i]!, '--out', join(o, 'r.html')],
      names: (f) => `${f.badFamilies[4 + i]!}: malformed family record: members[${i === 3 ? 1 : 0}].dir`,
    }),
  ),
  {
    name: 'report of a family.json naming a key twice',
    argv: (f, o) => ['report', f.badFamilies[3]!, '--out', join(o, 'r.html')],
    names: (f) => f.badFamilies[3]!,
  },
  {
    name: 'run a recipe with an empty data.docSeparator',
    argv: (f) => ['run', f.emptySeparatorRecipe],
    names: (f) => f.emptySeparatorRecipe,
  },
  {
    name: 'run a recipe with an unknown backend',
    argv: (f) => ['run', f.backendRecipe],
    names: (f) => `${f.backendRecipe}:`,
  },
  {
    name: 'run a recipe with two outputs to one directory (refused before any work)',
    argv: (f) => ['run', f.twoOutputsRecipe],
    names: (f) => `${f.twoOutputsRecipe}:`,
  },
  {
    name: 'run a recipe whose runDir is the recipe',
    argv: (f) => ['run', f.runDirRecipe],
    names: (f) => `${f.runDirRecipe}:`,
  },
  {
    name: 'run a recipe nested 100000 deep',
    argv: (f) => ['run', f.deepRecipe],
    names: (f) => f.deepRecipe,
  },
];

/** Cases drawn by fast-check over the fixtures' mutants (built once the fixtures exist). */
export function mutantCases(f: Fixtures): Case[] {
  return [
    ...f.truncatedBins.map((_, i) => ({
      name: `inspect a checkpoint cut at random (${i})`,
      argv: (g: Fixtures) => ['inspect', g.truncatedBins[i]!],
      names: (g: Fixtures) => g.truncatedBins[i]!,
    })),
    ...f.truncatedHf.map((_, i) => ({
      name: `eval model.safetensors cut at random (${i})`,
      argv: (g: Fixtures) => ['eval', g.truncatedHf[i]!, '--data', g.dev, '--limit', '2'],
      names: (g: Fixtures) => g.truncatedHf[i]!,
    })),
    ...f.configMutants.map((d, i) => ({
      name: `inspect config.json with an invalid field (${i}: ${mutation(d)})`,
      argv: (g: Fixtures) => ['inspect', g.configMutants[i]!],
      names: (g: Fixtures) => g.configMutants[i]!,
    })),
    ...f.tokenizerMutants.map((_, i) => ({
      name: `generate with a broken tokenizer.json (${i})`,
      argv: (g: Fixtures) => ['generate', g.tokenizerMutants[i]!, '--prompt', 'hi', '--max-tokens', '2'],
      names: (g: Fixtures) => join(g.tokenizerMutants[i]!, 'tokenizer.json'),
    })),
  ];
}

/** Which config field a mutant breaks (for the case's name). */
function mutation(dir: string): string {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  for (const k of [
    'hidden_size',
    'num_hidden_layers',
    'num_attention_heads',
    'intermediate_size',
    'vocab_size',
    'num_key_value_heads',
  ])
    if (!(k in c) || typeof c[k] !== 'number' || !(c[k] > 0) || !Number.isInteger(c[k]))
      return `${k} ${JSON.stringify(c[k])}`;
  return 'none';
}
