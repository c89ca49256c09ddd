import { join } from 'node:path';
import { type LlamaModel, loadModel, writeDirAtomic } from '@lineage/core';
import { type ExportResult, exportModelDir } from '@lineage/onnx';
import { type Command, Option } from 'commander';
import { defaultModel } from '../defaults.js';
import { formatBytes, log, printJson } from '../output.js';
import { checkNoOverlap, checkOutput, tokenizerInput } from '../output-policy.js';
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

/**
 * Writes `model` as `lineage export --to onnx|web` does (the directory appears atomically); also the recipe
 * output kind `export`.
 */
export async function writeExport(
  model: LlamaModel,
  out: string,
  o: { to: 'onnx' | 'web'; dtype: 'fp32' | 'fp16'; force?: boolean | undefined; from: string },
): Promise<ExportResult> {
  const options = { dtype: o.dtype, provenance: { from: o.from } };
  if (o.to === 'onnx') return exportModelDir(model, out, { ...options, overwrite: o.force ?? false });
  return writeDirAtomic(
    out,
    async (tmp) => {
      const e = await exportModelDir(model, join(tmp, 'model'), options);
      const page = await writeWebPage(tmp, `${model.config.architecture} model from ${o.from}`);
      return { ...e, files: [...page, ...e.files.map((f) => `model/${f}`)] };
    },
    { overwrite: o.force ?? false },
  );
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
    // the one output policy, before loading and building (writeDirAtomic checks again before its rename)
    const inputs = [
      { path, what: 'the model being exported' },
      { path: o.tokenizer, what: '--tokenizer' },
    ];
    checkOutput({ path: o.out, kind: 'dir', force: o.force, inputs });
    const { model } = await loadModel(path, { tokenizer: o.tokenizer, tokenizerOptional: true });
    checkNoOverlap(o.out, [tokenizerInput(model)]);
    if (!model.tokenizer) log('warning: no tokenizer found; the output will have none (pass --tokenizer)');
    const t0 = performance.now();
    const r = await writeExport(model, o.out, { to: o.to, dtype: o.dtype, force: o.force, from: path });
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
