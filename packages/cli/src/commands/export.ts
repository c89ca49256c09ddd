import { existsSync, realpathSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { LineageError, loadModel } from '@lineage/core';
import { exportModelDir } from '@lineage/onnx';
import { type Command, Option } from 'commander';
import { defaultModel } from '../defaults.js';
import { formatBytes, log, printJson } from '../output.js';
import { addJsonOption, addModelOptions } from './common.js';

interface ExportFlags {
  to: 'onnx';
  out: string;
  dtype: 'fp32' | 'fp16';
  force?: boolean;
  tokenizer?: string;
  json?: boolean;
}

/** A path with symlinks resolved as far as it exists (the output usually does not yet). */
function real(p: string): string {
  const abs = resolve(p);
  try {
    return realpathSync(abs);
  } catch {
    return abs;
  }
}

/** Refuses an output that is the input, holds it, or lies inside it. */
function checkNotInput(input: string, out: string): void {
  const [i, o] = [real(input), real(out)];
  if (i === o || i.startsWith(o + sep) || o.startsWith(i + sep))
    throw new LineageError(`--out ${out} would overwrite the model being exported (${input})`, out);
}

export function exportCommand(program: Command): void {
  const cmd = program
    .command('export')
    .description(
      'export a model (any layer kind, kept as itself) as one ONNX graph with a KV cache, in the directory layout transformers.js loads',
    )
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)')
    .addOption(new Option('--to <format>', 'export format').choices(['onnx']).makeOptionMandatory())
    .requiredOption('--out <dir>', 'output directory (config.json, tokenizer files, onnx/model.onnx)')
    .addOption(
      new Option('--dtype <dtype>', 'float weights stored as (compute is f32 either way)')
        .choices(['fp32', 'fp16'])
        .default('fp32'),
    )
    .option('--force', 'replace an existing output directory');
  addModelOptions(cmd);
  addJsonOption(cmd);
  cmd.action(async (modelArg: string | undefined, o: ExportFlags) => {
    const path = modelArg ?? defaultModel();
    checkNotInput(path, o.out);
    // Checked before loading and building (writeDirAtomic checks again before its rename).
    if (!o.force && existsSync(o.out))
      throw new LineageError('output exists (pass --force to replace it)', o.out);
    const { model } = await loadModel(path, { tokenizer: o.tokenizer, tokenizerOptional: true });
    if (!model.tokenizer) log('warning: no tokenizer found; the output will have none (pass --tokenizer)');
    const t0 = performance.now();
    const r = await exportModelDir(model, o.out, {
      dtype: o.dtype,
      overwrite: o.force ?? false,
      provenance: { from: path },
    });
    const { params, bytes } = model.stats();
    const seconds = (performance.now() - t0) / 1000;
    if (o.json)
      printJson({
        from: path,
        to: o.out,
        format: o.to,
        dtype: o.dtype,
        params,
        modelBytes: bytes,
        onnxBytes: r.onnxBytes,
        externalData: r.externalData,
        files: r.files,
        seconds,
      });
    else
      log(
        `wrote ${o.out} (onnx, ${o.dtype} weights; ${formatBytes(r.onnxBytes)} of ONNX for ${formatBytes(bytes)} of model${r.externalData ? ', external data' : ''})`,
      );
  });
}
