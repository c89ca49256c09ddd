import { existsSync, realpathSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { LineageError, loadModel, writeDirAtomic } from '@lineage/core';
import { exportModelDir } from '@lineage/onnx';
import { type Command, Option } from 'commander';
import { defaultModel } from '../defaults.js';
import { formatBytes, log, printJson } from '../output.js';
import { addJsonOption, addModelOptions } from './common.js';
import { writeWebPage } from './web-page.js';

interface ExportFlags {
  to: 'onnx' | 'web';
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
      'export a model (any layer kind, kept as itself) as one ONNX graph with a KV cache, in the directory layout transformers.js loads; --to web adds a static page that generates in the browser',
    )
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)')
    .addOption(
      new Option(
        '--to <format>',
        'onnx: the transformers.js directory; web: index.html + vendor/ (transformers.js, onnxruntime-web) + model/ (the onnx export), served by any static server',
      )
        .choices(['onnx', 'web'])
        .makeOptionMandatory(),
    )
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
    const options = { dtype: o.dtype, provenance: { from: path } };
    const r =
      o.to === 'onnx'
        ? await exportModelDir(model, o.out, { ...options, overwrite: o.force ?? false })
        : await writeDirAtomic(
            o.out,
            async (tmp) => {
              const e = await exportModelDir(model, join(tmp, 'model'), options);
              const page = await writeWebPage(tmp, `${model.config.architecture} model from ${path}`);
              return { ...e, files: [...page, ...e.files.map((f) => `model/${f}`)] };
            },
            { overwrite: o.force ?? false },
          );
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
    else {
      if (o.to === 'web') log(`serve it with any static server, e.g. python3 -m http.server -d ${o.out}`);
      log(
        `wrote ${o.out} (${o.to === 'web' ? 'web page + onnx' : 'onnx'}, ${o.dtype} weights; ${formatBytes(r.onnxBytes)} of ONNX for ${formatBytes(bytes)} of model${r.externalData ? ', external data' : ''})`,
      );
    }
  });
}
