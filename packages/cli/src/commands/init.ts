import { totalmem } from 'node:os';
import { LineageError, type LlamaConfig, loadModel, saveModel } from '@lineage/core';
import { initLike } from '@lineage/distill';
import { type Command, Option } from 'commander';
import { formatBytes, formatCount, log, printJson } from '../output.js';
import { checkNoOverlap, checkOutput, modelOutputKind, tokenizerInput } from '../output-policy.js';
import { addJsonOption, addModelOptions, parseFloatArg, parseIntArg, UsageError } from './common.js';

interface InitFlags {
  like: string;
  dim?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  hidden?: number;
  seed: number;
  std?: number;
  out: string;
  dtype?: 'f32' | 'f16' | 'bf16';
  force?: boolean;
  tokenizer?: string;
  json?: boolean;
}

/**
 * The shape arithmetic of `withShape`, checked with the flags' names (`--kv-heads 3: must divide --heads 8`):
 * a size not given is the parent's, and is called that.
 */
function checkShape(c: LlamaConfig, o: InitFlags): void {
  const dim = o.dim ?? c.hiddenSize;
  const heads = o.heads ?? c.numHeads;
  // as withShape: fewer heads than the parent's key/value heads take as many key/value heads
  const kv = o.kvHeads ?? (o.heads !== undefined ? Math.min(heads, c.numKvHeads) : c.numKvHeads);
  const headsText = o.heads !== undefined ? `--heads ${heads}` : `the parent's ${heads} heads`;
  if (o.dim !== undefined || o.heads !== undefined) {
    if (dim % heads !== 0)
      throw o.dim !== undefined
        ? new UsageError('--dim', dim, `must be a multiple of ${headsText}`)
        : new UsageError('--heads', heads, `must divide the parent's width ${dim} (or give --dim)`);
    const headDim = dim / heads;
    if (headDim % 2 !== 0)
      throw new UsageError(
        o.dim !== undefined ? '--dim' : '--heads',
        o.dim ?? heads,
        `gives heads of width ${dim}/${heads} = ${headDim}, which must be even (rotary embeddings)`,
      );
  }
  if (heads % kv !== 0)
    throw o.kvHeads !== undefined
      ? new UsageError('--kv-heads', kv, `must divide ${headsText}`)
      : new UsageError(
          '--heads',
          heads,
          `must be a multiple of the parent's ${kv} key/value heads (or give --kv-heads)`,
        );
}

/**
 * Refuses a shape whose weights this machine could not hold (before allocating them): f32 weights over half the
 * memory, or a tensor past what one typed array holds, as one line naming the options.
 */
function checkFits(c: LlamaConfig, o: InitFlags): void {
  const dim = o.dim ?? c.hiddenSize;
  const layers = o.layers ?? c.numLayers;
  const heads = o.heads ?? c.numHeads;
  const kv = o.kvHeads ?? c.numKvHeads;
  const hidden = o.hidden ?? c.intermediateSize;
  const headDim = dim / heads;
  const embedding = c.vocabSize * dim;
  const block = 2 * dim * dim + 2 * dim * kv * headDim + 3 * dim * hidden + 2 * dim;
  const params = embedding * (c.tieWordEmbeddings ? 1 : 2) + layers * block + dim;
  const largest = Math.max(embedding, dim * hidden, dim * dim);
  const memory = totalmem() / 2;
  if (params * 4 > memory || largest > 2 ** 31 - 1)
    throw new LineageError(
      `a model of dim ${dim}, ${layers} layers and FFN ${hidden} (--dim, --layers, --hidden) has ${formatCount(params)} params (${formatBytes(params * 4)} in f32), more than this machine can hold (${formatBytes(memory)}, half its memory)`,
      o.out,
    );
}

export function initCommand(program: Command): void {
  const cmd = program
    .command('init')
    .description(
      "a randomly initialised model of a chosen shape with a parent's tokenizer (the from-scratch baseline)",
    )
    .requiredOption(
      '--like <model>',
      'parent model: vocabulary, tokenizer, context, RoPE and norms come from it',
    )
    .option('--dim <n>', 'hidden size (default: the parent’s)', parseIntArg())
    .option('--layers <n>', 'decoder layers', parseIntArg())
    .option('--heads <n>', 'attention heads', parseIntArg())
    .option('--kv-heads <n>', 'key/value heads (grouped-query attention)', parseIntArg())
    .option('--hidden <n>', 'FFN (intermediate) size', parseIntArg())
    .option('--seed <n>', 'initialisation seed', parseIntArg(0), 0)
    .option('--std <x>', 'standard deviation of the weights (default 0.02)', parseFloatArg(0, 10))
    .requiredOption('--out <path>', 'output directory (Hugging Face) or .bin file (llama2.c)')
    .addOption(
      new Option('--dtype <dtype>', 'float type of the weights (hf only)').choices(['f32', 'f16', 'bf16']),
    )
    .option('--force', 'replace an existing output');
  addModelOptions(cmd);
  addJsonOption(cmd);
  cmd.action(async (o: InitFlags) => {
    const inputs = [
      { path: o.like, what: 'the parent model (--like)' },
      { path: o.tokenizer, what: 'the tokenizer' },
    ];
    checkOutput({ path: o.out, kind: modelOutputKind(o.out), force: o.force, inputs });
    const { model: parent } = await loadModel(o.like, { tokenizer: o.tokenizer });
    checkNoOverlap(o.out, [tokenizerInput(parent)]);
    checkShape(parent.config, o);
    checkFits(parent.config, o);
    const model = initLike(
      parent,
      {
        ...(o.dim ? { dim: o.dim } : {}),
        ...(o.layers ? { layers: o.layers } : {}),
        ...(o.heads ? { heads: o.heads } : {}),
        ...(o.kvHeads ? { kvHeads: o.kvHeads } : {}),
        ...(o.hidden ? { hidden: o.hidden } : {}),
      },
      { seed: o.seed, ...(o.std !== undefined ? { std: o.std } : {}) },
    );
    const format = modelOutputKind(o.out) === 'file' ? 'llama2c' : 'hf';
    await saveModel(model, o.out, {
      format,
      ...(o.dtype ? { dtype: o.dtype } : {}),
      overwrite: o.force ?? false,
      ...(format === 'hf'
        ? { provenance: { init: { like: o.like, seed: o.seed, std: o.std ?? 0.02 } } }
        : {}),
    });
    const c = model.config;
    const { params } = model.stats();
    const shape = {
      dim: c.hiddenSize,
      layers: c.numLayers,
      heads: c.numHeads,
      kvHeads: c.numKvHeads,
      hidden: c.intermediateSize,
      vocab: c.vocabSize,
    };
    if (o.json)
      printJson({
        out: o.out,
        like: o.like,
        params,
        parentParams: parent.stats().params,
        ...shape,
        seed: o.seed,
      });
    else
      log(
        `wrote ${o.out}: dim ${shape.dim}, ${shape.layers} layers, ${shape.heads} heads (${shape.kvHeads} kv), hidden ${shape.hidden}, vocab ${shape.vocab}; ${params} params (parent ${parent.stats().params})`,
      );
  });
}
