import { loadModel, saveModel } from '@lineage/core';
import { initLike } from '@lineage/distill';
import { type Command, Option } from 'commander';
import { log, printJson } from '../output.js';
import { checkNoOverlap, checkOutput, modelOutputKind, tokenizerInput } from '../output-policy.js';
import { addJsonOption, addModelOptions, parseFloatArg, parseIntArg } from './common.js';

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
