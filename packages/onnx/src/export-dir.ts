import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type LlamaModel, toHFConfig, writeDirAtomic, writeHFTokenizer } from '@lineage/core';
import type { WeightDType } from './exporters.js';
import type { SerializedModel } from './graph-builder.js';
import { buildLlamaGraph } from './llama-graph.js';

/** Past this many bytes of weights the model goes to ONNX external data (protobuf stops at 2 GiB). */
export const EXTERNAL_DATA_BYTES = 1.8 * 1024 ** 3;

export interface ExportOptions {
  dtype?: WeightDType;
  /** Replace an existing non-empty output directory. */
  overwrite?: boolean;
  /** Weights in `onnx/model.onnx_data` beside the graph: 'auto' (default) past EXTERNAL_DATA_BYTES. */
  externalData?: boolean | 'auto';
  /** Extra keys for config.json's `lineage_export` block (e.g. where the model came from). */
  provenance?: Record<string, unknown>;
}

export interface ExportResult {
  /** Bytes of onnx/model.onnx (and its external data, when any). */
  onnxBytes: number;
  externalData: boolean;
  files: string[];
}

/** Writes a serialised model to `path` (and its external data beside it); returns the bytes written. */
export async function writeOnnxModel(path: string, m: SerializedModel): Promise<number> {
  await writeFile(path, m.model);
  if (!m.external) return m.model.byteLength;
  const fh = await open(join(path, '..', m.external.location), 'w');
  try {
    for (const c of m.external.chunks) await fh.write(c);
  } finally {
    await fh.close();
  }
  return m.model.byteLength + m.external.bytes;
}

/**
 * Exports `model` as the directory transformers.js loads for a `LlamaForCausalLM`: config.json,
 * generation_config.json, tokenizer.json and tokenizer_config.json (as `lineage convert --to hf` writes
 * them), onnx/model.onnx with a KV cache (see buildLlamaGraph). The graph is built before anything is
 * written (an unexportable layer fails first); the directory appears atomically.
 */
export async function exportModelDir(
  model: LlamaModel,
  out: string,
  o: ExportOptions = {},
): Promise<ExportResult> {
  const { graph, opset, opsets, irVersion } = buildLlamaGraph(model, {
    kvCache: true,
    dtype: o.dtype ?? 'fp32',
  });
  const external =
    o.externalData === true ||
    ((o.externalData ?? 'auto') === 'auto' && graph.initializerBytes() > EXTERNAL_DATA_BYTES);
  const serialized = graph.serialize({
    opset,
    irVersion,
    opsets,
    ...(external ? { external: { location: 'model.onnx_data' } } : {}),
    metadata: { producer: 'lineage export' },
  });
  const config = toHFConfig(model.config, {
    torch_dtype: 'float32',
    use_cache: true,
    'transformers.js_config': {
      dtype: 'fp32',
      ...(external ? { use_external_data_format: { 'model.onnx': 1 } } : {}),
    },
    // Not `lineage` (core's loader reads that key of a checkpoint's config.json): this is no checkpoint.
    lineage_export: {
      format: 'onnx',
      weights: o.dtype ?? 'fp32',
      layers: model.layerKinds(),
      ...(model.provenance ? { provenance: model.provenance } : {}),
      ...(o.provenance ?? {}),
    },
  });
  let onnxBytes = 0;
  const files: string[] = [];
  await writeDirAtomic(
    out,
    async (tmp) => {
      await writeFile(join(tmp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
      const gen: Record<string, unknown> = {};
      if (model.config.bosTokenId !== undefined) gen.bos_token_id = model.config.bosTokenId;
      if (model.config.eosTokenId !== undefined) gen.eos_token_id = model.config.eosTokenId;
      await writeFile(join(tmp, 'generation_config.json'), `${JSON.stringify(gen, null, 2)}\n`);
      await writeHFTokenizer(model, tmp);
      await mkdir(join(tmp, 'onnx'));
      onnxBytes = await writeOnnxModel(join(tmp, 'onnx', 'model.onnx'), serialized);
      files.push('config.json', 'generation_config.json', 'onnx/model.onnx');
      if (external) files.push('onnx/model.onnx_data');
      if (model.tokenizer) files.push('tokenizer.json', 'tokenizer_config.json');
    },
    { overwrite: o.overwrite ?? false },
  );
  return { onnxBytes, externalData: external, files };
}
