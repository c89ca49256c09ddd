import { LineageError, loadModel, saveModel } from '@lineage/core';
import { type Command, Option } from 'commander';
import { defaultModel } from '../defaults.js';
import { log, printJson } from '../output.js';
import { checkNoOverlap, checkOutput, tokenizerInput } from '../output-policy.js';
import { addJsonOption, addModelOptions } from './common.js';

interface ConvertFlags {
  to: 'hf' | 'llama2c';
  out: string;
  dtype?: 'f32' | 'f16' | 'bf16';
  force?: boolean;
  clamp?: boolean;
  dense?: boolean;
  tokenizer?: string;
  json?: boolean;
}

export function convertCommand(program: Command): void {
  const cmd = program
    .command('convert')
    .description(
      'convert between llama2.c .bin and Hugging Face directories (safetensors), losslessly in f32',
    )
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)')
    .addOption(new Option('--to <format>', 'output format').choices(['hf', 'llama2c']).makeOptionMandatory())
    .requiredOption('--out <path>', 'output directory (hf) or .bin file (llama2c)')
    .addOption(
      new Option('--dtype <dtype>', 'float type of dense weights (hf only)').choices(['f32', 'f16', 'bf16']),
    )
    .option(
      '--dense',
      'materialise factored/compressed layers as dense weights (for llama2.c or other tools)',
    )
    .option(
      '--clamp',
      'clamp weights beyond the range of --dtype f16 to ±65504, with a warning (default: refuse them)',
    )
    .option('--force', 'replace an existing output');
  addModelOptions(cmd);
  addJsonOption(cmd);
  cmd.action(async (modelArg: string | undefined, o: ConvertFlags) => {
    const path = modelArg ?? defaultModel();
    if (o.to === 'llama2c' && o.dtype && o.dtype !== 'f32') {
      throw new LineageError('the llama2.c format stores f32 weights only; drop --dtype or use --to hf');
    }
    const kind = o.to === 'llama2c' ? 'file' : 'dir';
    const inputs = [
      { path, what: 'the model' },
      { path: o.tokenizer, what: 'the tokenizer' },
    ];
    checkOutput({ path: o.out, kind, force: o.force, inputs });
    const loaded = await loadModel(path, { tokenizer: o.tokenizer, tokenizerOptional: true });
    checkNoOverlap(o.out, [tokenizerInput(loaded.model)]);
    const { format } = loaded;
    const model = o.dense ? loaded.model.densified() : loaded.model;
    if (!model.tokenizer) log('warning: no tokenizer found; the output will have none (pass --tokenizer)');
    await saveModel(model, o.out, {
      format: o.to,
      ...(o.dtype ? { dtype: o.dtype } : {}),
      overwrite: o.force ?? false,
      clamp: o.clamp ?? false,
      warn: log,
    });
    const { params, bytes } = model.stats();
    if (o.json)
      printJson({ from: path, fromFormat: format, to: o.out, format: o.to, dtype: o.dtype ?? null, params });
    else
      log(
        `wrote ${o.out} (${o.to}${o.dtype ? `, ${o.dtype}` : ''}; ${params} params, ${bytes} bytes in memory)`,
      );
  });
}
