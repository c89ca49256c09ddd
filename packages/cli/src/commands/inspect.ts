import { loadModel, paddingRows, toHFConfig } from '@lineage/core';
import type { Command } from 'commander';
import { defaultModel } from '../defaults.js';
import { formatBytes, formatCount, printJson, table } from '../output.js';
import { addJsonOption, addModelOptions } from './common.js';

export function inspectCommand(program: Command): void {
  const cmd = program
    .command('inspect')
    .description("show a model's configuration, parameters and stored bytes per layer")
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)');
  addModelOptions(cmd);
  addJsonOption(cmd);
  cmd.action(async (modelArg: string | undefined, o: { tokenizer?: string; json?: boolean }) => {
    const path = modelArg ?? defaultModel();
    const { model, format, tokenizerPath } = await loadModel(path, {
      tokenizer: o.tokenizer,
      tokenizerOptional: true,
    });
    const stats = model.stats();
    const kinds = model.layerKinds();
    // 'low_rank r=16': a kind's settings (e.g. the rank) beside its name
    const kindLabel = (name: string, kind: string) => {
      const meta = kinds[name]?.meta;
      if (!meta || typeof meta !== 'object' || Array.isArray(meta)) return kind;
      const { rank, bits, groupSize, hadamard, codebook, qCodebook } = meta as Record<string, unknown>;
      // 'qlr r=4 e8p12': the rank, and Q's codebook where it is not the scalar grid
      if (typeof rank === 'number')
        return `${kind} r=${rank}${typeof qCodebook === 'string' ? ` ${qCodebook}` : ''}`;
      // 'quantized 2b g64 had', 'quantized 2b e8p12 had': bits, group size or codebook, and incoherence
      if (typeof bits === 'number')
        return `${kind} ${bits}b${typeof groupSize === 'number' && groupSize > 0 ? ` g${groupSize}` : ''}${typeof codebook === 'string' ? ` ${codebook}` : ''}${hadamard ? ' had' : ''}`;
      return kind;
    };
    // bits per parameter: bytes stored × 8 / the dense weight count (out·in) of the layer, and of the decoder's
    // linears as a whole (the block linears: embedding and head excluded)
    const bitsOf = (bytes: number, shape: readonly number[]) => (bytes * 8) / (shape[0]! * shape[1]!);
    const decoder = stats.layers.filter((l) => l.name.startsWith('model.layers.'));
    const decoderBytes = decoder.reduce((a, l) => a + l.bytes, 0);
    const decoderWeights = decoder.reduce((a, l) => a + l.shape[0]! * l.shape[1]!, 0);
    const bitsPerParam = decoderWeights ? (decoderBytes * 8) / decoderWeights : null;
    const config = toHFConfig(model.config);
    const tokenizer = model.tokenizer
      ? {
          path: tokenizerPath,
          vocabSize: model.tokenizer.vocabSize,
          paddingRows: paddingRows(model.tokenizer, model.config.vocabSize),
        }
      : null;
    if (o.json) {
      printJson({
        model: path,
        format,
        params: stats.params,
        bytes: stats.bytes,
        bitsPerParam,
        decoderLinears: { bytes: decoderBytes, weights: decoderWeights },
        layers: stats.layers.map((l) => ({
          ...l,
          bitsPerParam: bitsOf(l.bytes, l.shape),
          ...(kinds[l.name] ? { meta: kinds[l.name]!.meta } : {}),
        })),
        config,
        tokenizer,
        provenance: model.provenance ?? null,
      });
      return;
    }
    const c = model.config;
    process.stdout.write(
      [
        `${path} (${format})`,
        `  ${c.architecture}: dim ${c.hiddenSize}, ${c.numLayers} layers, ${c.numHeads} heads (${c.numKvHeads} kv), ffn ${c.intermediateSize}, vocab ${c.vocabSize}, context ${c.maxPositions}${c.tieWordEmbeddings ? ', tied head' : ''}`,
        `  params ${formatCount(stats.params)} (${stats.params}), stored ${formatBytes(stats.bytes)}`,
        ...(bitsPerParam !== null
          ? [
              `  decoder linears: ${bitsPerParam.toFixed(3)} bits/param (${decoderBytes} bytes for ${decoderWeights} weights)`,
            ]
          : []),
        `  tokenizer: ${tokenizer ? `${tokenizer.path} (${tokenizer.vocabSize} tokens${tokenizer.paddingRows ? `; vocab padded by ${tokenizer.paddingRows} rows, never generated` : ''})` : 'none found'}`,
        ...(model.provenance?.method
          ? [
              `  made by: ${String(model.provenance.method)}${typeof model.provenance.fraction === 'number' ? ` to ${model.provenance.fraction} of the decomposable parameters` : ''}`,
            ]
          : []),
        '',
        table(
          ['layer', 'kind', 'shape', 'params', 'bytes', 'bits/param'],
          stats.layers.map((l) => [
            l.name,
            kindLabel(l.name, l.kind),
            `${l.shape[0]}×${l.shape[1]}`,
            l.params,
            l.bytes,
            bitsOf(l.bytes, l.shape).toFixed(3),
          ]),
        ),
        '',
      ].join('\n'),
    );
  });
}
